"""Fitting: non-negative least squares in relative terms, the kernel models and the whole-model correction.

A kernel model prices one kind: ``seconds = coef . features``, every coefficient >= 0, fitted on the *relative*
error (each row divided by its measured time, so a 20 us op counts as much as a 20 ms one), then refitted without
the samples a load spike slowed down (``TRIM``); its interval is the quantiles of ``measured / predicted`` under
k-fold cross-validation. (A gradient-boosted tree on the residual did not lower the cross-validated error on the
shared VM.) The correction, ``model_s = sum_g m_g * kernel_s_g + per_call_s * layers`` over ``kinds.group_of``'s
groups, is chosen among simpler variants by leave-one-out error. numpy only; the numbers are plain floats.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Correction", "KernelModel", "fit_correction", "fit_kernel", "nnls", "ratio_quantiles"]

#: The lower and upper quantile of ``measured / predicted`` that bound an interval.
INTERVAL_QUANTILES = (0.1, 0.9)


def nnls(a: Sequence[Sequence[float]], b: Sequence[float], *, iterations: int = 200) -> list[float]:
    """``argmin_x ||A x - b||`` subject to ``x >= 0`` (Lawson and Hanson's active-set method).

    Columns are scaled to unit norm first, so features in bytes and in calls can share one system.

    Example:
        >>> [round(v, 6) for v in nnls([[1, 0], [0, 1], [1, 1]], [1, -1, 1])]   # the negative one is clamped to 0
        [1.0, 0.0]
    """
    import numpy as np

    a_ = np.asarray(a, dtype=float)
    b_ = np.asarray(b, dtype=float)
    if a_.ndim != 2 or a_.shape[0] != b_.shape[0]:
        raise ValueError("nnls needs an m x n matrix and m values")
    norms = np.linalg.norm(a_, axis=0)
    norms[norms == 0] = 1.0
    a_ = a_ / norms
    n = a_.shape[1]
    x = np.zeros(n)
    passive = np.zeros(n, dtype=bool)
    tol = 1e-12 * max(1.0, float(np.abs(a_).max(initial=0.0)))
    for _ in range(iterations):
        w = a_.T @ (b_ - a_ @ x)
        candidates = np.where(~passive & (w > tol))[0]
        if candidates.size == 0:
            break
        passive[candidates[np.argmax(w[candidates])]] = True
        while True:
            z = np.zeros(n)
            z[passive] = np.linalg.lstsq(a_[:, passive], b_, rcond=None)[0]
            if np.all(z[passive] > 0):
                x = z
                break
            neg = passive & (z <= 0)
            alpha = np.min(x[neg] / (x[neg] - z[neg]))
            x = x + alpha * (z - x)
            passive &= x > tol
            x[~passive] = 0.0
    return [float(v) for v in x / norms]


def ratio_quantiles(ratios: Sequence[float]) -> tuple[float, float]:
    """The ``INTERVAL_QUANTILES`` of ``measured / predicted`` ratios ((1, 1) when there are none).

    Example:
        >>> ratio_quantiles([0.9, 1.0, 1.1])
        (0.92, 1.08)
    """
    if not ratios:
        return (1.0, 1.0)
    import numpy as np

    low, high = np.quantile(ratios, INTERVAL_QUANTILES)
    return (round(float(low), 12), round(float(high), 12))


def _ratios(coef: Sequence[float], rows: Sequence[Sequence[float]], seconds: Sequence[float]) -> list[float]:
    """``measured / predicted`` of each row that ``coef`` predicts a positive time for."""
    return [t / p for row, t in zip(rows, seconds, strict=True) if (p := _dot(coef, row)) > 0]


def _errors(ratios: Sequence[float]) -> tuple[float, float, float]:
    """The interval (``ratio_quantiles``) and the mean absolute relative error of ``ratios``."""
    mape = sum(abs(1 / r - 1) for r in ratios) / len(ratios) if ratios else math.inf
    return (*ratio_quantiles(ratios), mape)


def _relative_fit(rows: Sequence[Sequence[float]], seconds: Sequence[float]) -> list[float]:
    """NNLS of ``rows @ coef ~ seconds`` in relative terms (each row divided by its time)."""
    scaled = [[v / t for v in row] for row, t in zip(rows, seconds, strict=True)]
    return nnls(scaled, [1.0] * len(seconds))


def _dot(coef: Sequence[float], row: Sequence[float]) -> float:
    return sum(c * v for c, v in zip(coef, row, strict=True))


#: A sample measured slower than this many times the median measured / predicted ratio is left out of the refit:
#: a load spike on a shared machine only ever slows a measurement down, and one spike moves a least-squares fit.
TRIM = 2.0


def _trimmed_fit(rows: Sequence[Sequence[float]], seconds: Sequence[float]) -> list[float]:
    """``_relative_fit``, refitted once without the samples slower than ``TRIM`` x the median ratio.

    (Measured on the shared 2-core VM under load: 5-fold CV error of every kind's model went down or stayed,
    e.g. pointwise conv 28.9% -> 28.0%, softmax 24.7% -> 23.0%, and the share within 10% up by 5-20 points.)"""
    coef = _relative_fit(rows, seconds)
    ratios = [t / p if (p := _dot(coef, r)) > 0 else 1.0 for r, t in zip(rows, seconds, strict=True)]
    median = statistics.median(ratios)
    keep = [i for i, x in enumerate(ratios) if x <= TRIM * median]
    if len(keep) == len(rows) or len(keep) < len(rows[0]):
        return coef
    return _relative_fit([rows[i] for i in keep], [seconds[i] for i in keep])


@dataclass(frozen=True)
class KernelModel:
    """One kind's fitted model: ``seconds = coef . features``; ``low``/``high``: quantiles of measured /
    predicted under cross-validation; ``mape``: its mean absolute relative error; ``samples``: how many."""

    kind: str
    coef: tuple[float, ...]
    low: float
    high: float
    mape: float
    samples: int

    def seconds(self, feats: Sequence[float]) -> float:
        """The predicted seconds of one call with ``feats`` (``kinds.FEATURES``).

        Example:
            >>> KernelModel("relu", (2e-6, 0.0, 0.0, 1e-10, 0.0, 0.0), 0.9, 1.1, 0.05, 10).seconds(
            ...     (1, 0, 0, 1e6, 0, 0))   # 2 us + 1e6 bytes at 10 GB/s = 102 us
            0.000102
        """
        return round(_dot(self.coef, feats), 15)


def fit_kernel(kind: str, rows: Sequence[Sequence[float]], seconds: Sequence[float], *, folds: int = 5) -> KernelModel:
    """Fit one kind's model to samples (``rows``: features, ``seconds``: measured), with k-fold CV error."""
    if not rows:
        raise ValueError(f"no samples to fit {kind}")
    coef = _trimmed_fit(rows, seconds)
    n = len(rows)
    if n < 2 * folds:
        return KernelModel(kind, tuple(coef), *_errors(_ratios(coef, rows, seconds)), n)
    ratios: list[float] = []
    for k in range(folds):
        train = [i for i in range(n) if i % folds != k]
        held = [i for i in range(n) if i % folds == k]
        c = _trimmed_fit([rows[i] for i in train], [seconds[i] for i in train])
        ratios += _ratios(c, [rows[i] for i in held], [seconds[i] for i in held])
    return KernelModel(kind, tuple(coef), *_errors(ratios), n)


#: The correction's variants, simplest first: which kernel-time groups get a multiplier of their own.
VARIANTS: dict[str, tuple[str, ...]] = {
    "scale": ("all",),
    "scale+per_call": ("all", "per_call"),
    "groups+per_call": ("compute", "dwconv", "memory", "per_call"),
}


@dataclass(frozen=True)
class Correction:
    """Whole-model correction: ``model_s = sum(multipliers[g] * kernel_s[g]) + per_call_s * calls``.

    ``multipliers`` has ``all`` (one for every group) or one per group (``compute``, ``dwconv``, ``memory``);
    ``low``/``high`` the quantiles of measured / predicted over left-out calibration models, ``mape`` their
    mean absolute relative error; ``models`` how many models it was fitted on."""

    variant: str
    multipliers: dict[str, float]
    per_call_s: float
    low: float
    high: float
    mape: float
    models: int

    def multiplier(self, group: str) -> float:
        return self.multipliers.get(group, self.multipliers.get("all", 1.0))

    def seconds(self, kernel_s: dict[str, float], calls: int) -> float:
        """A whole model's predicted seconds from its kernel seconds by group and its number of calls."""
        return sum(self.multiplier(g) * s for g, s in kernel_s.items()) + self.per_call_s * calls


IDENTITY = Correction("none", {"all": 1.0}, 0.0, 1.0, 1.0, math.inf, 0)


def _design(variant: str, kernel_s: dict[str, float], calls: int) -> list[float]:
    cells = {"all": sum(kernel_s.values()), "per_call": float(calls)}
    return [cells[col] if col in cells else kernel_s.get(col, 0.0) for col in VARIANTS[variant]]


def _correction(variant: str, coef: Sequence[float]) -> tuple[dict[str, float], float]:
    cols = VARIANTS[variant]
    mult = {c: v for c, v in zip(cols, coef, strict=True) if c != "per_call"}
    return mult, (coef[cols.index("per_call")] if "per_call" in cols else 0.0)


def fit_correction(models: Sequence[tuple[dict[str, float], int, float]]) -> Correction:
    """The correction from calibration models, each ``(kernel seconds by group, calls, measured seconds)``.

    Every variant with fewer parameters than half the models is fitted; the one with the lowest leave-one-out
    error wins (one model: its own ratio as the multiplier; none: the identity)."""
    if not models:
        return IDENTITY
    best: Correction | None = None
    for variant, cols in VARIANTS.items():
        if len(cols) > 1 and len(cols) * 2 > len(models):
            continue
        rows = [_design(variant, k, c) for k, c, _ in models]
        times = [t for _, _, t in models]
        coef = _relative_fit(rows, times)
        ratios: list[float] = []
        if len(models) >= 3:  # leave-one-out
            for i in range(len(models)):
                c = _relative_fit(rows[:i] + rows[i + 1:], times[:i] + times[i + 1:])
                ratios += _ratios(c, rows[i:i + 1], times[i:i + 1])
        mult, per_call = _correction(variant, coef)
        cand = Correction(variant, mult, per_call, *_errors(ratios or _ratios(coef, rows, times)), len(models))
        if best is None or cand.mape < best.mape - 1e-9:
            best = cand
    assert best is not None
    return best
