"""The per-tensor metric kernel (all four metrics, one blocked pass) against a naive numpy version, 8M floats."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from qc.compare.metrics import PairStats, pair_stats, pair_stats_naive

N = 8 * 1024 * 1024


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal(N, dtype=np.float32)
    y = x + rng.standard_normal(N, dtype=np.float32) * np.float32(0.05)
    return x, y


@pytest.mark.parametrize("kernel", [pair_stats, pair_stats_naive], ids=["blocked-one-pass", "naive-numpy"])
def test_metric_kernel_throughput(
    benchmark: BenchmarkFixture, pair: tuple[np.ndarray, np.ndarray], kernel: Callable[..., PairStats]
) -> None:
    x, y = pair
    result = benchmark(kernel, x, y)
    assert result.undefined is None
    assert 0.99 < result.cosine <= 1.0
    if benchmark.stats is not None:  # None under --benchmark-disable
        benchmark.extra_info["GB_per_s"] = round(2 * x.nbytes / benchmark.stats.stats.mean / 1e9, 2)
