"""Linear time, measured in the run itself: how much longer an input 8 times as large takes."""

from __future__ import annotations

import time
from collections.abc import Callable

GROWTH = 8


def time_ratio(work: Callable[[int], object], size: int, repeats: int = 5) -> float:
    """The time of `work(GROWTH * size)` over that of `work(size)`, each the best of `repeats` runs.

    Linear work gives about 8, quadratic about 64: a bound such as 30 tells them apart whatever the
    machine's speed, since both times are taken in the same run.
    """
    return _best(work, GROWTH * size, repeats) / max(_best(work, size, repeats), 1e-6)


def _best(work: Callable[[int], object], size: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work(size)
        times.append(time.perf_counter() - start)
    return min(times)
