"""The one timing helper every peer goes through."""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable, NamedTuple


class Timing(NamedTuple):
    """Wall-clock seconds of a blocking call: its first call, then `repeats` after warm-up."""

    first_s: float
    median_s: float
    min_s: float
    repeats: int

    @property
    def compile_s(self) -> float:
        """First call minus steady state: the compile time of a jitted call."""
        return max(self.first_s - self.median_s, 0.0)


def seconds(call: Callable[[], Any]) -> float:
    """Wall-clock seconds of one call (which must block until its result is ready)."""
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def time_calls(call: Callable[[], Any], repeats: int, warmup: int = 1) -> Timing:
    """Times `call` (blocking, no arguments): the first call, `warmup` untimed, `repeats` timed."""
    first = seconds(call)
    for _ in range(warmup):
        call()
    times = [seconds(call) for _ in range(max(repeats, 1))]
    return Timing(first, statistics.median(times), min(times), len(times))
