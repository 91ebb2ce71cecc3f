"""Device profiles: what calibration fitted for one (device, runtime, precision, threads), as versioned JSON in
``profile_dir()``, with the timed samples in a JSON Lines file beside it (docs/predict.md, "The profile"). A
profile whose key differs from this machine's is refused unless forced. No torch import here: ``mbcost predict``
reads a profile on its fast path.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mbcost.errors import UsageError
from mbcost.predict.fit import Correction, KernelModel
from mbcost.predict.kinds import FEATURES

__all__ = [
    "PROFILE_VERSION", "DeviceProfile", "ProfileError", "ProfileKey", "Roofline", "append_sample", "load_profile",
    "profile_dir", "profile_path", "read_samples", "samples_path", "save_profile",
]

#: Bumped when the file's layout changes; an older file is refused as stale (recalibrate).
PROFILE_VERSION = 1


class ProfileError(UsageError):
    """A device profile is missing, unreadable, from another schema, or made on another machine setup."""


@dataclass(frozen=True)
class ProfileKey:
    """What a profile is valid for: the same CPU (or GPU) model, threads, runtime, precision and versions."""

    device: str
    device_name: str
    runtime: str
    precision: str
    threads: int
    torch: str
    runtime_version: str

    @property
    def stem(self) -> str:
        """The profile's file name without suffix: ``cpu-eager-float32-t1``."""
        return f"{self.device}-{self.runtime}-{self.precision}-t{self.threads}"

    def label(self) -> str:
        return (f"{self.device_name}, {self.threads} thread{'s' if self.threads != 1 else ''}, {self.runtime} "
                f"{self.runtime_version}, {self.precision}, torch {self.torch}")

    def differences(self, other: ProfileKey) -> list[str]:
        """``field: this vs other`` for each field that differs."""
        return [f"{name} {getattr(self, name)!r} vs {getattr(other, name)!r}" for name in self.__dataclass_fields__
                if getattr(self, name) != getattr(other, name)]


@dataclass(frozen=True)
class Roofline:
    """The device's measured peaks and smallest fixed cost per op: prices a kind with no fitted model."""

    peak_gflops: float
    peak_gbps: float
    per_call_s: float

    def seconds(self, macs: float, nbytes: float) -> float:
        """``per_call + max(2 macs / peak compute, bytes / peak bandwidth)``.

        Example:
            >>> Roofline(100.0, 10.0, 1e-6).seconds(macs=5e7, nbytes=1e6)   # max(1 ms, 0.1 ms) + 1 us
            0.001001
        """
        return round(self.per_call_s + max(2 * macs / (self.peak_gflops * 1e9), nbytes / (self.peak_gbps * 1e9)), 15)


@dataclass(frozen=True)
class DeviceProfile:
    """A calibrated device: kernel models by kind, the whole-model correction, the roofline, and the
    calibration models' measured and kernel-predicted times (for the MACs baseline and reports)."""

    key: ProfileKey
    kernels: dict[str, KernelModel]
    correction: Correction
    roofline: Roofline
    created: str
    budget_s: float
    elapsed_s: float
    calibration_models: dict[str, dict[str, float]] = field(default_factory=dict)
    path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        fields = asdict(self)
        del fields["path"]
        return {"version": PROFILE_VERSION, "key": fields.pop("key"), "features": list(FEATURES), **fields}

    @classmethod
    def from_dict(cls, data: Any, path: str | None = None) -> DeviceProfile:
        """Raises ``ProfileError`` (one line) on anything that is not a profile of this version."""
        where = f" {path}" if path else ""
        if not isinstance(data, dict):
            raise ProfileError(f"corrupt device profile{where}: not a JSON object")
        if data.get("version") != PROFILE_VERSION:
            raise ProfileError(f"device profile{where} has version {data.get('version')!r}, this mbcost reads "
                               f"{PROFILE_VERSION}: run mbcost calibrate again")
        try:
            if list(data["features"]) != list(FEATURES):
                raise ProfileError(f"device profile{where} was fitted on other features: run mbcost calibrate again")
            kernels = {}
            for k, m in data["kernels"].items():
                model = KernelModel(**{**m, "coef": tuple(float(c) for c in m["coef"])})
                if len(model.coef) != len(FEATURES) or not all(math.isfinite(c) and c >= 0 for c in model.coef):
                    raise ValueError(f"bad coefficients for {k}")
                kernels[k] = model
            corr = Correction(**data["correction"])
            roof = Roofline(**data["roofline"])
            if roof.peak_gflops <= 0 or roof.peak_gbps <= 0:
                raise ValueError("non-positive peaks")
            return cls(key=ProfileKey(**data["key"]), kernels=kernels, correction=corr, roofline=roof,
                       created=str(data["created"]), budget_s=float(data["budget_s"]),
                       elapsed_s=float(data["elapsed_s"]), calibration_models=dict(data.get("calibration_models", {})),
                       path=path)
        except ProfileError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ProfileError(f"corrupt device profile{where}: {type(exc).__name__}: {exc}") from None


def profile_dir() -> Path:
    """``$MBCOST_PROFILE_DIR`` when set, else ``$XDG_CACHE_HOME/mbcost/profiles`` (``~/.cache/mbcost/profiles``
    by default)."""
    from mbcost.io import cache_dir

    return cache_dir("profiles", "MBCOST_PROFILE_DIR")


def profile_path(key: ProfileKey) -> Path:
    return profile_dir() / f"{key.stem}.json"


def samples_path(key: ProfileKey) -> Path:
    return profile_dir() / f"{key.stem}.samples.jsonl"


def save_profile(profile: DeviceProfile, path: Path | None = None) -> Path:
    """Write ``profile`` atomically (a temporary file renamed over the old one); returns the path."""
    from mbcost.io import write_text_atomic

    path = Path(path or profile_path(profile.key))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(profile.to_dict(), indent=1, sort_keys=True, allow_nan=False) + "\n")
    return path


def load_profile(path: Path | str) -> DeviceProfile:
    """Read a profile; ``ProfileError`` (one line) when it is missing or corrupt."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProfileError(f"no device profile at {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"cannot read device profile {path}: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProfileError(f"corrupt device profile {path}: {exc.msg} at line {exc.lineno}") from None
    return DeviceProfile.from_dict(data, str(path))


def append_sample(path: Path, sample: dict[str, Any]) -> None:
    """Append one sample as a JSON line (the file is created on the first)."""
    from mbcost.io import append_text

    path.parent.mkdir(parents=True, exist_ok=True)
    append_text(path, json.dumps(sample, sort_keys=True, allow_nan=False) + "\n")


def read_samples(path: Path, key: ProfileKey) -> list[dict[str, Any]]:
    """The samples of ``path`` taken under ``key``; a torn last line (an interrupted write) is skipped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ProfileError(f"cannot read calibration samples {path}: {exc}") from None
    out = []
    want = asdict(key)
    for line in lines:
        try:
            sample = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(sample, dict) and sample.get("key") == want:
            out.append(sample)
    return out
