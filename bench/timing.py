"""The timing helpers every peer goes through."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple


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


def time_round_robin(
    calls: Mapping[str, Callable[[], Any]], first_s: Mapping[str, float], repeats: int, warmup: int = 1
) -> dict[str, Timing]:
    """Times blocking, argument-free calls whose first call took `first_s`: `warmup` untimed
    rounds, then `repeats` timed rounds of one call each, so that changing load on the machine
    falls on every call alike."""
    for _ in range(warmup):
        for call in calls.values():
            call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(max(repeats, 1)):
        for name, call in calls.items():
            times[name].append(seconds(call))
    return {name: Timing(first_s[name], statistics.median(ts), min(ts), len(ts)) for name, ts in times.items()}


def time_calls(call: Callable[[], Any], repeats: int, warmup: int = 1) -> Timing:
    """Times one blocking, argument-free call: its first call, `warmup` untimed, `repeats` timed."""
    first = seconds(call)
    return time_round_robin({"call": call}, {"call": first}, repeats, warmup)["call"]
