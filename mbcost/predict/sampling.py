"""Adaptive sampling: which grid points calibration times next.

Each kind first gets ``FIRST_SAMPLES`` x its weight of random points (``grid.GRID_KINDS``); then each batch
goes to the kinds whose cross-validated error (scaled by their weight, shrunk as they gather samples) is
worst, at neighbours of the points their model predicts worst, as nn-Meter's adaptive sampling does.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

from mbcost.predict.fit import fit_kernel
from mbcost.predict.grid import GRID_KINDS, GridPoint, mutate, sample_point

__all__ = ["BATCH", "FIRST_SAMPLES", "next_points"]

#: Samples of each kind before adaptive sampling starts (times ``GRID_KINDS``' weight).
FIRST_SAMPLES = 6
#: Grid points timed together (interleaved): a larger batch spreads each point's rounds over more time.
BATCH = 16


def next_points(kernel_samples: Sequence[dict[str, Any]], rng: random.Random) -> list[GridPoint]:
    """The next batch: kinds short of their first samples first; then the worst-fitted kinds, near their worst
    points."""
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for s in kernel_samples:
        by_kind.setdefault(s["kind"], []).append(s)
    short = [k for k, w in GRID_KINDS.items() if len(by_kind.get(k, ())) < FIRST_SAMPLES * w]
    if short:
        return [sample_point(short[i % len(short)], rng) for i in range(BATCH)]
    scores = {}
    worst: dict[str, dict[str, Any]] = {}
    for kind, ss in by_kind.items():
        if kind not in GRID_KINDS:
            continue
        model = fit_kernel(kind, [tuple(s["features"]) for s in ss], [s["seconds"] for s in ss])
        errs = [abs(math.log(max(model.seconds(s["features"]), 1e-12) / s["seconds"])) for s in ss]
        scores[kind] = model.mape * math.sqrt(GRID_KINDS[kind]) / math.sqrt(len(ss))
        worst[kind] = ss[max(range(len(ss)), key=errs.__getitem__)]
    ranked = sorted(scores, key=lambda k: -scores[k])[:BATCH // 2] or list(GRID_KINDS)
    points = []
    for i in range(BATCH):
        kind = ranked[i % len(ranked)]
        if rng.random() < 0.6:
            points.append(mutate(GridPoint.from_dict(worst[kind]["point"]), rng))
        else:
            points.append(sample_point(kind, rng))
    return points
