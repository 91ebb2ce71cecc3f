"""Timing many small calls on a drifting machine: interleaved rounds in a fresh shuffled order each, a round's
figure the median of a few blocks, the result the lowest of the rounds' medians (docs/predict.md, "Timing").
The timer is ``torch.utils.benchmark.Timer`` with an injectable clock (tests pass a seeded fake).
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Callable, Sequence
from typing import Any

from mbcost.bench.timer import Clock, benchmark_timer, device_clock

__all__ = ["time_interleaved"]


def time_interleaved(calls: Sequence[Callable[[], Any]], *, rounds: int = 3, blocks: int = 3,
                     min_block_s: float = 0.002, max_block_calls: int = 2000, threads: int = 1,
                     clock: Clock | None = None, seed: int = 0) -> list[float]:
    """Seconds per call of each of ``calls`` (prepared; under ``torch.inference_mode`` if needed): the lowest of
    ``rounds`` interleaved rounds' figures (each call once per round, order shuffled with ``seed``), a round's figure
    the median of ``blocks`` timed blocks, a block repeating the call for about ``min_block_s`` (at most
    ``max_block_calls`` calls), at ``threads`` intra-op threads, on ``clock`` (default: the real device clock)."""
    Timer = benchmark_timer()
    clock = clock or device_clock("cpu")
    timers = [Timer(stmt="fn()", globals={"fn": fn}, timer=clock, num_threads=threads) for fn in calls]
    numbers = []
    for fn in calls:  # a warm-up call (first-call costs), then one to size the block
        fn()
        start = clock()
        fn()
        rough = clock() - start
        numbers.append(max(1, min(max_block_calls, math.ceil(min_block_s / rough) if rough > 0 else max_block_calls)))
    per_round: list[list[list[float]]] = [[] for _ in calls]
    order = list(range(len(calls)))
    rng = random.Random(seed)
    for _ in range(rounds):
        rng.shuffle(order)
        for i in order:
            per_round[i].append([timers[i].timeit(numbers[i]).mean for _ in range(blocks)])
    return [min(statistics.median(r) for r in rounds) for rounds in per_round]
