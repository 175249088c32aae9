"""The per-tensor metric kernel (all four metrics, one fused numba pass) against a naive numpy version, 8M floats, and
its speed as a fraction of a plain ``np.dot`` over the same bytes, measured side by side in one run.

Run: ``pytest tests/perf/test_metrics_perf.py -p no:cacheprovider --benchmark-only``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from qc.compare.metrics import PairStats, pair_stats, pair_stats_naive

pytestmark = pytest.mark.perf

N = 8 * 1024 * 1024
RATIO_ROUNDS = 41
RATIO_FLOOR = 0.5
"""Issue 16 asks for 50% of np.dot. The numpy kernel (three BLAS dots, a subtraction, min and max per block) reached
~0.40; the fused kernel (qc.compare._kernel: each element read once, all four reductions vectorized) measures
~0.85-0.9 (median of CPU-time ratios, 8M floats), so the floor is the issue's target itself."""


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal(N, dtype=np.float32)
    y = x + rng.standard_normal(N, dtype=np.float32) * np.float32(0.05)
    return x, y


@pytest.mark.parametrize("kernel", [pair_stats, pair_stats_naive], ids=["fused-one-pass", "naive-numpy"])
def test_metric_kernel_throughput(
    benchmark: BenchmarkFixture, pair: tuple[np.ndarray, np.ndarray], kernel: Callable[..., PairStats]
) -> None:
    x, y = pair
    result = benchmark(kernel, x, y)
    assert result.undefined is None
    assert 0.99 < result.cosine <= 1.0
    if benchmark.stats is not None:  # None under --benchmark-disable
        benchmark.extra_info["GB_per_s"] = round(2 * x.nbytes / benchmark.stats.stats.mean / 1e9, 2)


def test_metric_kernel_ratio_to_np_dot(benchmark: BenchmarkFixture, pair: tuple[np.ndarray, np.ndarray]) -> None:
    """Each round times ``np.dot(x, y)`` then ``pair_stats(x, y)`` on the same 64 MB, back to back.

    The ratio is the median of the per-round ratios of process CPU time (all threads: a BLAS may use several), which
    a preemption on a busy machine does not inflate; wall-clock figures are recorded beside it.
    """
    x, y = pair
    cpu: list[tuple[int, int]] = []
    wall: list[tuple[int, int]] = []

    def side_by_side() -> None:
        c0, w0 = time.process_time_ns(), time.perf_counter_ns()
        np.dot(x, y)
        c1, w1 = time.process_time_ns(), time.perf_counter_ns()
        pair_stats(x, y)
        c2, w2 = time.process_time_ns(), time.perf_counter_ns()
        cpu.append((c1 - c0, c2 - c1))
        wall.append((w1 - w0, w2 - w1))

    benchmark.pedantic(side_by_side, rounds=RATIO_ROUNDS, iterations=1, warmup_rounds=2)  # type: ignore[no-untyped-call]
    cpu_ratio = statistics.median(d / k for d, k in cpu if d > 0 and k > 0)
    wall_ratio = statistics.median(d / k for d, k in wall)
    size = 2 * x.nbytes
    benchmark.extra_info.update(
        ratio_cpu=round(cpu_ratio, 3),
        ratio_wall=round(wall_ratio, 3),
        dot_GB_per_s_wall=round(size / min(d for d, _ in wall), 2),
        kernel_GB_per_s_wall=round(size / min(k for _, k in wall), 2),
    )
    print(f"\nmetric kernel / np.dot over the same bytes: {cpu_ratio:.3f} (CPU time), {wall_ratio:.3f} (wall)")
    assert cpu_ratio >= RATIO_FLOOR, (
        f"the metric kernel runs at {cpu_ratio:.1%} of np.dot over the same bytes (CPU time; wall {wall_ratio:.1%}); "
        f"expected at least {RATIO_FLOOR:.0%}"
    )
