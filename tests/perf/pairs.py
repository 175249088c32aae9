"""Old against new, side by side: interleaved best-of-N timing, the speed-up in the benchmark JSON, and a floor.

A perf benchmark that only records times lets a regression pass silently. Each pair here is timed in the same
test, alternately (old, new, new, old, ...) so that a load spike of the shared machine hits both sides of a round.
The speed-up is the median over rounds of ``old / new`` of the two adjacent runs (a spike spoils one round, not the
estimate); the best run of each side is kept for the record. Both are stored in the benchmark's ``extra_info`` (so
they land in ``--benchmark-json``), and the speed-up must reach a floor chosen with a margin for noise below the
documented or measured figure: ratios, never absolute times.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Pair:
    """Best-of-N seconds of each side and the per-round ratios ``old / new``."""

    old_s: float
    new_s: float
    ratios: tuple[float, ...]

    @property
    def rounds(self) -> int:
        return len(self.ratios)

    @property
    def speedup(self) -> float:
        """How many times faster the new side is (below 1: slower): the median of the per-round ratios."""
        return statistics.median(self.ratios)


def time_pair(
    old: Callable[[], Any],
    new: Callable[[], Any],
    *,
    rounds: int,
    warmup: int = 1,
    setup: Callable[[], Any] | None = None,
) -> Pair:
    """Run both sides ``warmup`` times, then ``rounds`` times each, alternating which goes first; ``setup`` runs
    before every call, untimed (e.g. an empty destination folder)."""
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, found {rounds}")
    for _ in range(warmup):
        for fn in (old, new):
            if setup is not None:
                setup()
            fn()
    olds: list[float] = []
    news: list[float] = []
    for i in range(rounds):
        order = ((old, olds), (new, news)) if i % 2 == 0 else ((new, news), (old, olds))
        for fn, out in order:
            if setup is not None:
                setup()
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    ratios = tuple(o / n if n > 0 else math.inf for o, n in zip(olds, news, strict=True))
    return Pair(min(olds), min(news), ratios)


def check_speedup(benchmark: Any, pair: Pair, floor: float, what: str) -> None:
    """Record the pair in the benchmark's extra_info, then fail when the speed-up is below ``floor``."""
    benchmark.extra_info.update(
        {
            "old_best_s": round(pair.old_s, 6),
            "new_best_s": round(pair.new_s, 6),
            "speedup": round(pair.speedup, 3),
            "speedup_floor": floor,
            "pair_rounds": pair.rounds,
        }
    )
    assert pair.speedup >= floor, (
        f"{what}: the new side is {pair.speedup:.2f}x as fast as the old one, below the floor of {floor}x "
        f"(median of {pair.rounds} interleaved rounds; best runs: old {pair.old_s * 1e3:.2f} ms, "
        f"new {pair.new_s * 1e3:.2f} ms)"
    )
