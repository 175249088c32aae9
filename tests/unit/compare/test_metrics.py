"""The blocked one-pass metric kernel against the float64 reference, undefined cases, and the accumulator."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from qc.compare._kernel import BLOCK
from qc.compare.metrics import MetricAccumulator, PairStats, pair_stats, pair_stats_naive


def test_known_values() -> None:
    x = np.array([3.0, 4.0], dtype=np.float32)
    y = np.array([3.0, 3.0], dtype=np.float32)
    s = pair_stats(x, y)
    assert s.cosine == pytest.approx(21 / (5 * math.sqrt(18)))
    assert s.sqnr_db == pytest.approx(20 * math.log10(5 / 1))
    assert s.mse == pytest.approx(0.5)
    assert s.max_abs == pytest.approx(1.0)
    assert s.undefined is None


@pytest.mark.parametrize(
    "x",
    [
        np.linspace(-1, 1, 1000, dtype=np.float32),
        np.zeros(1000, np.float32),  # both all zeros: identical, a perfect match
        np.array([0.0, -0.0, 0.0], np.float32),
        np.full(3 * BLOCK + 5, 7.5, np.float32),  # many blocks, one value
        np.array([1e-30, -1e-35], np.float32),  # squares underflow in float32
        np.array([3e38, -3e38], np.float32),  # squares overflow in float32
    ],
    ids=["ramp", "zeros", "signed-zeros", "constant", "tiny", "huge"],
)
def test_identical_tensors_are_a_perfect_match_whatever_their_values(x: np.ndarray) -> None:
    """The identity rule: equal finite tensors give cosine 1, SQNR +inf, MSE 0, max abs 0, never 'undefined'."""
    for kernel in (pair_stats, pair_stats_naive):
        s = kernel(x, x.copy())
        assert s == PairStats(1.0, math.inf, 0.0, 0.0, None), kernel.__name__


def test_one_side_all_zeros_or_non_finite_stays_undefined_even_when_equal() -> None:
    nan = np.array([math.nan, 1.0], np.float32)
    assert pair_stats(nan, nan.copy()).undefined == "NaN or Inf in the reference tensor"
    assert pair_stats(np.zeros(4, np.float32), np.array([0, 0, 0, 1e-3], np.float32)).undefined == (
        "the reference tensor is all zeros"
    )


@pytest.mark.parametrize(
    ("x", "y", "reason"),
    [
        ([0.0, 0.0], [1.0, 2.0], "the reference tensor is all zeros"),
        ([1.0, 2.0], [0.0, 0.0], "the target tensor is all zeros"),
        ([math.nan, 1.0], [1.0, 1.0], "NaN or Inf in the reference tensor"),
        ([1.0, 1.0], [1.0, math.inf], "NaN or Inf in the target tensor"),
    ],
)
def test_undefined_metrics_carry_a_reason(x: list[float], y: list[float], reason: str) -> None:
    s = pair_stats(np.array(x, np.float32), np.array(y, np.float32))
    assert s.undefined == reason
    assert math.isnan(s.cosine)
    assert pair_stats_naive(np.array(x), np.array(y)).undefined == reason


def test_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="shape mismatch"):
        pair_stats(np.zeros((2, 3), np.float32), np.zeros((3, 2), np.float32))


def test_large_tensor_spanning_many_blocks_matches_float64() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal(5 * BLOCK + 17).astype(np.float32) * 100
    y = x + rng.standard_normal(x.size).astype(np.float32)
    fast, slow = pair_stats(x, y), pair_stats_naive(x, y)
    assert fast.cosine == pytest.approx(slow.cosine, abs=1e-6)
    assert fast.sqnr_db == pytest.approx(slow.sqnr_db, abs=1e-3)
    assert fast.mse == pytest.approx(slow.mse, rel=1e-4)
    assert fast.max_abs == pytest.approx(slow.max_abs, rel=1e-6)


@pytest.mark.parametrize("scale", [1.0, 1e-3, 1e3])
def test_exact_at_60_db(scale: float) -> None:
    """Float32 sums per block, float64 across blocks: SQNR within 0.01 dB of float64 at 60 dB (issue 16)."""
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((1 << 20) + 3) * scale).astype(np.float32)
    y = (x + rng.standard_normal(x.size) * (scale * 1e-3)).astype(np.float32)
    fast, slow = pair_stats(x, y), pair_stats_naive(x, y)
    assert slow.sqnr_db == pytest.approx(60.0, abs=0.1)
    assert abs(fast.sqnr_db - slow.sqnr_db) < 0.01
    assert fast.cosine == pytest.approx(slow.cosine, abs=1e-7)
    assert fast.mse == pytest.approx(slow.mse, rel=1e-3)
    assert fast.max_abs == slow.max_abs


@pytest.mark.parametrize("size", [1, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 7])
@pytest.mark.parametrize("where", ["first", "middle", "last"])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_max_abs_is_exact_wherever_the_largest_difference_sits(size: int, where: str, sign: float) -> None:
    """The kernel's max|x-y| (an integer max on the sign-cleared bits) equals numpy's, in a block or in the tail,
    for a positive or a negative difference."""
    rng = np.random.default_rng(size)
    x = rng.standard_normal(size).astype(np.float32)
    y = x + rng.uniform(-0.01, 0.01, size).astype(np.float32)
    at = {"first": 0, "middle": size // 2, "last": size - 1}[where]
    y[at] = x[at] - np.float32(sign * 0.75)
    fast = pair_stats(x, y)
    assert fast.max_abs == float(np.max(np.abs(x - y)))  # the float32 difference, as the kernel rounds it
    assert fast.max_abs == pytest.approx(pair_stats_naive(x, y).max_abs, rel=1e-7)


def test_non_contiguous_and_float64_inputs_are_read_as_float32() -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((64, 96)).astype(np.float64)
    y = x + 0.01
    fast = pair_stats(x.T, y.T)  # a transposed view: copied contiguous before the kernel
    slow = pair_stats_naive(x.T, y.T)
    assert fast.sqnr_db == pytest.approx(slow.sqnr_db, abs=1e-3)
    assert fast.max_abs == pytest.approx(slow.max_abs, abs=1e-6)  # float32 rounding of values up to ~4


def test_huge_values_fall_back_to_float64() -> None:
    x = np.full(10, 1e30, np.float32)
    s = pair_stats(x, x * np.float32(0.5))
    assert s.undefined is None
    assert s.cosine == pytest.approx(1.0)
    assert s.sqnr_db == pytest.approx(20 * math.log10(2))


@settings(max_examples=60, deadline=None)
@example(np.array([1e-45], np.float32), 0.0)  # subnormal: its float32 square underflows to zero
@example(np.array([0.00585938] + [0.0] * 63, np.float32), 1.0)  # norms 1,400x apart: <x,y> must not be derived
@given(
    hnp.arrays(np.float32, st.integers(1, 300), elements=st.floats(-1e3, 1e3, width=32)),
    st.floats(0.0, 1.0),
)
def test_kernel_agrees_with_naive(x: np.ndarray, noise: float) -> None:
    y = (x * np.float32(1 - noise) + np.float32(noise)).astype(np.float32)
    fast, slow = pair_stats(x, y), pair_stats_naive(x, y)
    assert fast.undefined == slow.undefined
    if slow.undefined is None:
        assert fast.cosine == pytest.approx(slow.cosine, abs=1e-5)
        assert fast.max_abs == pytest.approx(slow.max_abs, rel=1e-5, abs=1e-6)
        if math.isfinite(slow.sqnr_db) and slow.sqnr_db < 100:
            assert fast.sqnr_db == pytest.approx(slow.sqnr_db, abs=0.05)


def test_accumulator_mean_min_and_worst_image() -> None:
    acc = MetricAccumulator()
    acc.add(PairStats(0.9, 20.0, 1.0, 2.0), image_id=1)
    acc.add(PairStats(0.7, 10.0, 3.0, 5.0), image_id=2)
    s = acc.summary()
    assert s.cosine_mean == pytest.approx(0.8)
    assert s.cosine_min == pytest.approx(0.7)
    assert s.sqnr_db_mean == pytest.approx(15.0)
    assert s.sqnr_db_min == pytest.approx(10.0)
    assert s.mse_mean == pytest.approx(2.0)
    assert s.max_abs == 5.0
    assert s.worst_image == 2
    assert s.undefined is None


def test_accumulator_keeps_the_first_undefined_reason() -> None:
    acc = MetricAccumulator()
    acc.add(PairStats(0.9, 20.0, 1.0, 2.0), image_id=1)
    acc.add(PairStats(math.nan, math.nan, math.nan, 0.0, "the target tensor is all zeros"), image_id=7)
    s = acc.summary()
    assert s.undefined is not None
    assert "the target tensor is all zeros (image 7)" in s.undefined
    assert "1 of 2" in s.undefined
    assert MetricAccumulator().summary().undefined == "no images were compared"
