"""``predict``: a model's latency on a calibrated device, from its analysis (meta device) and the device profile:
its layers grouped into the runtime's kernels (``fusion``), each priced by its kind's model or, flagged, by the
roofline, and the whole-model correction on top (docs/predict.md, "How it works").
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mbcost.predict import cache
from mbcost.predict.cache import CachedAnalysis
from mbcost.predict.fusion import kernels_of
from mbcost.predict.kinds import fallback_kind, group_of
from mbcost.predict.profile import DeviceProfile, ProfileError, ProfileKey, load_profile, profile_dir, profile_path

__all__ = ["PREDICTED_RUNTIMES", "LayerPrediction", "Prediction", "analysis_of", "cached_key", "current_key",
           "find_profile", "predict", "predict_cost"]

#: The runtimes a profile can be calibrated for (``mbcost calibrate --runtime``).
PREDICTED_RUNTIMES: tuple[str, ...] = ("eager", "onnxruntime")

#: A roofline-priced kernel's interval: the roofline is a lower bound, real ops run slower.
ROOFLINE_INTERVAL = (0.5, 4.0)


@dataclass(frozen=True)
class LayerPrediction:
    """One kernel's predicted time (seconds): ``layers`` are the analysed layers it stands for (several when the
    runtime fuses them); ``roofline``: its kind had no fitted model, so the roofline priced it."""

    name: str
    kind: str
    layers: tuple[str, ...]
    seconds: float
    low_s: float
    high_s: float
    roofline: bool

    @property
    def predicted_ms(self) -> float:
        return self.seconds * 1e3


@dataclass(frozen=True)
class Prediction:
    """A model's predicted latency (seconds) on one calibrated device.

    ``forced``: the profile was given explicitly and its key differs from this machine's (``mismatch`` says how).
    ``roofline_kinds``: the kinds priced by the roofline (no fitted model), flagged."""

    model: str
    inputs: str
    key: ProfileKey
    seconds: float
    low_s: float
    high_s: float
    layers: tuple[LayerPrediction, ...]
    macs: int
    profile: str | None
    forced: bool = False
    mismatch: tuple[str, ...] = ()
    roofline_kinds: tuple[str, ...] = ()

    @property
    def predicted_ms(self) -> float:
        return self.seconds * 1e3

    @property
    def interval_ms(self) -> tuple[float, float]:
        return (self.low_s * 1e3, self.high_s * 1e3)


def current_key(device: str = "cpu", runtime: str = "eager", precision: str = "float32",
                threads: int | None = None) -> ProfileKey:
    """This machine's profile key for the request (threads default: torch's current setting)."""
    import torch

    from mbcost.bench.devices import check_threads, resolve_device
    from mbcost.bench.runtimes import get_runtime

    dev = resolve_device(device)
    adapter = get_runtime(runtime)
    return ProfileKey(device=dev.type, device_name=dev.name, runtime=adapter.name, precision=precision,
                      threads=check_threads(threads), torch=torch.__version__, runtime_version=adapter.version())


def cached_key(device: str = "cpu", runtime: str = "eager", precision: str = "float32",
               threads: int | None = None) -> ProfileKey | None:
    """``current_key`` without importing torch (``mbcost.predict.cache``), for the CPU; ``None`` when a part is
    not known that way (another device, torch's default thread count not learned yet, a bad thread count: the
    caller then asks ``current_key``, which also refuses what is wrong)."""
    from mbcost.bench.devices import cpu_info
    from mbcost.bench.runtimes import RUNTIMES
    from mbcost.host import usable_cpus
    from mbcost.predict.cache import default_threads, torch_version

    adapter = RUNTIMES.get(runtime)
    torch = torch_version()
    if (device or "").strip().lower() != "cpu" or adapter is None or torch is None:
        return None
    if threads is None:
        threads = default_threads()
    if not isinstance(threads, int) or not 1 <= threads <= usable_cpus():
        return None
    return ProfileKey(device="cpu", device_name=cpu_info()[0], runtime=adapter.name, precision=precision,
                      threads=threads, torch=torch, runtime_version=torch if adapter.dist == "torch" else
                      adapter.version())


def _command(key: ProfileKey) -> str:
    return (f"mbcost calibrate --device {key.device} --runtime {key.runtime} --precision {key.precision} "
            f"--threads {key.threads}")


def find_profile(key: ProfileKey, path: Path | str | None = None) -> tuple[DeviceProfile, tuple[str, ...]]:
    """The profile for ``key``: from ``path`` when given (a mismatch is accepted and returned), else from the
    cache, where a profile made under another key is refused naming both.

    Raises:
        ProfileError: none for this device (naming ``mbcost calibrate``), a mismatch, or a corrupt file.
    """
    if path is not None:
        profile = load_profile(path)
        return profile, tuple(profile.key.differences(key))
    default = profile_path(key)
    if not default.exists():
        others = sorted(p.name for p in profile_dir().glob(f"{key.device}-*.json")) if profile_dir().is_dir() else []
        seen = f" (profiles here: {', '.join(others)})" if others else ""
        raise ProfileError(f"no device profile for {key.label()}{seen}: run {_command(key)} (or pass --profile FILE)")
    profile = load_profile(default)
    diff = profile.key.differences(key)
    if diff:
        raise ProfileError(f"device profile {default} was made for {profile.key.label()}, not this {key.label()} "
                           f"({'; '.join(diff)}): run {_command(key)}, or pass --profile FILE to use it anyway")
    return profile, ()


def predict_cost(cost: Any, profile: DeviceProfile, *, key: ProfileKey | None = None,
                 mismatch: tuple[str, ...] = (), forced: bool = False) -> Prediction:
    """Price an analysed model (a ``ModelCost``, or what ``analysis_of`` read of one) with ``profile``."""
    analysis = cost if isinstance(cost, CachedAnalysis) else _read(cost)
    corr = profile.correction
    roof = profile.roofline
    out: list[LayerPrediction] = []
    flagged: list[str] = []
    for k in kernels_of(analysis.layers, profile.key.runtime):
        model = profile.kernels.get(k.kind) or profile.kernels.get(fallback_kind(k.kind) or "")
        roofline = model is None
        if model is None:
            raw, (low, high) = roof.seconds(k.macs, k.bytes_moved), ROOFLINE_INTERVAL
            flagged.append(k.kind)
        else:
            raw, low, high = model.seconds(k.features), model.low, model.high
        s = corr.multiplier(group_of(k.kind)) * raw + corr.per_call_s
        out.append(LayerPrediction(k.name, k.kind, k.layers, s, s * low, s * high, roofline))
    total = sum(p.seconds for p in out)
    if corr.models >= 3:
        low_s, high_s = total * corr.low, total * corr.high
    else:
        low_s, high_s = sum(p.low_s for p in out), sum(p.high_s for p in out)
    return Prediction(model=analysis.name, inputs=analysis.inputs, key=key or profile.key, seconds=total,
                      low_s=min(low_s, total), high_s=max(high_s, total), layers=tuple(out),
                      macs=analysis.macs, profile=profile.path, forced=forced, mismatch=mismatch,
                      roofline_kinds=tuple(dict.fromkeys(flagged)))


def predict(model: Any, inputs: Any = None, batch: int = 1, *, device: str = "cpu", runtime: str = "eager",
            precision: str = "float32", threads: int | None = None, profile: Path | str | DeviceProfile | None = None,
            num_classes: int = 1000) -> Prediction:
    """Predict ``model``'s latency on this device, without running it.

    Args:
        model: a model spec (``v2``, ``torchvision:resnet18``, ``timm:NAME``, ``pkg.mod:factory``) or an
            ``nn.Module``.
        inputs: its input, any form ``mbcost.analyze`` takes (``224``, ``1x3x160x160``...).
        batch: batch size.
        device, runtime, precision, threads: which calibrated profile to use (threads default: torch's setting).
        profile: a profile file (or a loaded one) to use instead of the cache's; a profile made for another
            machine setup is then accepted, and the result says so (``forced``, ``mismatch``).

    Returns:
        A ``Prediction``: total and per-kernel seconds with intervals.

    Raises:
        ProfileError: no profile for this device (run ``mbcost calibrate``), one made elsewhere, or a corrupt one.
    """
    if precision != "float32":
        raise ProfileError(f"prediction covers --precision float32 (got {precision})")
    if runtime not in PREDICTED_RUNTIMES:
        from mbcost.bench.runtimes import get_runtime

        get_runtime(runtime)  # an unknown name fails naming the runtimes
        raise ProfileError(f"prediction covers --runtime {' and '.join(PREDICTED_RUNTIMES)} (got {runtime})")
    # Without torch imported yet, the key is read without it (and torch's thread count is still its default if
    # this call imports it); with torch there, its current setting is the default.
    fresh = "torch" not in sys.modules
    key = (cached_key(device, runtime, precision, threads) if fresh else None) or \
        current_key(device, runtime, precision, threads)
    if fresh and threads is None and "torch" in sys.modules:
        cache.remember_threads(key.threads)  # read from the torch this call imported: its default
    if isinstance(profile, DeviceProfile):
        prof, mismatch = profile, tuple(profile.key.differences(key))
    else:
        prof, mismatch = find_profile(key, profile)
    analysis = analysis_of(model, inputs, batch, num_classes)
    return predict_cost(analysis, prof, key=key, mismatch=mismatch, forced=bool(mismatch))


def analysis_of(model: Any, inputs: Any = None, batch: int = 1, num_classes: int = 1000) -> CachedAnalysis:
    """What prediction reads of ``model``'s analysis: from the analysis cache (no torch) when it holds it, else
    from ``mbcost.analyze`` on the meta device, then kept in the cache when the model can be (a named spec)."""
    entry = cache.cache_key(model, inputs, batch, num_classes)
    found = cache.load(entry)
    if found is not None:
        return found
    from mbcost.cost.analyze import analyze

    analysis = _read(analyze(model, inputs, batch, num_classes=num_classes, execute="auto"))
    cache.store(entry, analysis)
    return analysis


def _read(cost: Any) -> CachedAnalysis:
    """What prediction reads of a ``ModelCost``."""
    label = ", ".join(i.label for i in cost.inputs) or "x".join(map(str, cost.input))
    return CachedAnalysis(cost.label, label, int(cost.macs), tuple(cost.layers))
