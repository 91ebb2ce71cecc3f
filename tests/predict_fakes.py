"""Fakes for the prediction tests (tests/ is on sys.path): a hand-made device profile and a fake kernel timer.

The fake timer prices an item from its features with known coefficients (``TRUE_COEF``), and a whole model as
``TRUE_SCALE`` times its kernels plus ``TRUE_PER_CALL`` per kernel, so a fit can be checked against the numbers
it should recover. Nothing reads real time.
"""

from __future__ import annotations

from collections.abc import Sequence

from mbcost.predict.fit import Correction, KernelModel
from mbcost.predict.items import TimedItem
from mbcost.predict.profile import DeviceProfile, ProfileKey, Roofline

#: seconds = 2 us per call + 0.1 ns per MAC + 0.05 ns per activation byte (20 GB/s); no other term.
TRUE_COEF = (2e-6, 1e-10, 0.0, 5e-11, 0.0, 0.0)
TRUE_SCALE = 1.5
TRUE_PER_CALL = 3e-6


def true_seconds(features: Sequence[float]) -> float:
    return sum(c * f for c, f in zip(TRUE_COEF, features, strict=True))


class FakeTimer:
    """``time_fn`` for ``calibrate``: exact times from features; raises ``KeyboardInterrupt`` on call
    ``interrupt_at`` (1-based); counts its calls."""

    def __init__(self, interrupt_at: int | None = None) -> None:
        self.calls = 0
        self.interrupt_at = interrupt_at

    def __call__(self, items: Sequence[TimedItem]) -> list[float]:
        self.calls += 1
        if self.interrupt_at is not None and self.calls >= self.interrupt_at:
            raise KeyboardInterrupt
        out = []
        for it in items:
            if it.is_model:
                out.append(TRUE_SCALE * sum(true_seconds(f) for _, f in it.kernels) + TRUE_PER_CALL * len(it.kernels))
            else:
                out.append(true_seconds(it.features))
        return out


class StepClock:
    """A clock that advances ``step`` seconds each time it is read: a budget of B s lasts about B / step reads."""

    def __init__(self, step: float) -> None:
        self.now = 0.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def key(**changes: object) -> ProfileKey:
    base = dict(device="cpu", device_name="Test CPU 9000", runtime="eager", precision="float32", threads=1,
                torch="2.0.0", runtime_version="2.0.0")
    return ProfileKey(**{**base, **changes})  # type: ignore[arg-type]


def hand_profile(k: ProfileKey | None = None, *, conv_only: bool = False) -> DeviceProfile:
    """A profile with round numbers: every conv costs 1 us + 1 ns per MAC; activations 0.5 us + 0.1 ns per byte;
    the correction doubles kernel time and adds 1 us per kernel; the roofline: 100 GFLOP/s, 10 GB/s, 1 us."""
    kernels = {"conv": KernelModel("conv", (1e-6, 1e-9, 0, 0, 0, 0), 0.9, 1.2, 0.05, 20)}
    if not conv_only:
        kernels["activation"] = KernelModel("activation", (5e-7, 0, 0, 1e-10, 0, 0), 0.8, 1.25, 0.1, 20)
    return DeviceProfile(key=k or key(), kernels=kernels,
                         correction=Correction("scale+per_call", {"all": 2.0}, 1e-6, 0.95, 1.1, 0.04, 8),
                         roofline=Roofline(100.0, 10.0, 1e-6), created="2026-01-01T00:00:00Z", budget_s=60.0,
                         elapsed_s=60.0)
