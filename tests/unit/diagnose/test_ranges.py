"""Range evidence on constructed tensors: known clipping, ideal rounding noise, too-wide ranges, values below a step."""

from __future__ import annotations

import numpy as np
import pytest

from qc.config import Slice
from qc.diagnose.qdq import Quantizer, activation_quantizers
from qc.diagnose.ranges import IDEAL_RMSE_STEPS, RangeAccumulator, RangeObserver
from tests.unit.diagnose.conftest import TinyQdq


def _quantizer(scale: float | list[float], zp: int | list[int] = 0, *, axis: int | None = None) -> Quantizer:
    s = np.asarray(scale, np.float32)
    z = np.asarray(zp, np.uint8)
    return Quantizer("t", "t", "t_q", "t_dq", s, z, axis, "uint8", 0, 255, 8)


def test_uniform_values_inside_the_range_give_ideal_rounding_noise() -> None:
    acc = RangeAccumulator(_quantizer(0.1))
    rng = np.random.default_rng(0)
    for _ in range(3):
        acc.add(rng.uniform(0.0, 25.5, (1, 8, 32, 32)).astype(np.float32))
    ev = acc.evidence("t")
    assert ev.clipped_share == 0.0
    assert ev.rmse_steps == pytest.approx(IDEAL_RMSE_STEPS, abs=0.01)
    assert ev.representable_min == 0.0
    assert ev.representable_max == pytest.approx(25.5)
    assert ev.levels_used == pytest.approx(255, abs=1)
    assert ev.flags == ()


def test_known_clipping_is_measured_and_flagged() -> None:
    acc = RangeAccumulator(_quantizer(0.1))
    x = np.full((1, 4, 10, 10), 10.0, np.float32)
    x[0, 0, :, :] = 40.0  # a quarter of the values, 14.5 above the top of the range (25.5)
    acc.add(x)
    ev = acc.evidence("t")
    assert ev.clipped_share == pytest.approx(0.25)
    assert ev.rmse_steps == pytest.approx(np.sqrt(0.25 * 145.0**2), rel=1e-3)
    assert ev.flags == ("clipping",)
    assert "25.00% of values fall outside the representable range [0, 25.5]" in ev.findings[0]
    assert "t (8-bit uint8, step 0.1)" in ev.findings[0]


def test_a_range_far_wider_than_the_values_is_flagged() -> None:
    acc = RangeAccumulator(_quantizer(1.0))
    acc.add(np.linspace(0.0, 5.0, 1000, dtype=np.float32).reshape(1, 10, 100))
    ev = acc.evidence("t")
    assert ev.levels_used == pytest.approx(5.0)
    assert "range too wide" in ev.flags


def test_boxes_and_scores_in_one_scale_leave_the_scores_below_one_step() -> None:
    """The yolo_decoded signature: pixel boxes and 0..1 scores quantized with one 8-bit scale (step 2.5)."""
    rng = np.random.default_rng(1)
    x = np.empty((1, 50, 10), np.float32)
    x[..., :4] = rng.uniform(0.0, 416.0, (1, 50, 4))
    x[..., 4:] = rng.uniform(0.0, 1.0, (1, 50, 6))
    acc = RangeAccumulator(_quantizer(640.0 / 255.0), {"scores": Slice(axis=-1, start=4)})
    acc.add(x)
    ev = acc.evidence("decoded")
    assert ev.channel_axis == 2
    assert (ev.channels_below_step, ev.channels) == (6, 10)
    assert ev.below_step_first == (4, 5, 6, 7, 8, 9)
    assert "values below one step" in ev.flags
    (scores,) = ev.slices
    assert scores.peak_steps < 1.0
    assert scores.zeroed_share == 1.0  # every score is below half a step (1.25): all quantize to 0
    assert any("decoded[scores]: values in [" in f and "of one quantization step" in f for f in ev.findings)


def test_per_channel_scales_broadcast_on_their_axis() -> None:
    q = _quantizer([0.1, 1.0], [0, 10], axis=1)
    x = np.array([[[0.04, 0.26], [3.4, 300.0]]], np.float32)  # (1, 2, 2)
    fq = q.fake_quant(x)
    np.testing.assert_allclose(fq, [[[0.0, 0.3], [3.0, 245.0]]], atol=1e-6)
    low, high = q.bounds(3)
    assert low.shape == (1, 2, 1)
    np.testing.assert_allclose(high.reshape(-1), [25.5, 245.0])
    acc = RangeAccumulator(q)
    acc.add(x)
    ev = acc.evidence("t")
    assert ev.clipped_share == pytest.approx(0.25)
    assert ev.representable_min == pytest.approx(-10.0)
    assert ev.representable_max == pytest.approx(245.0)


def test_observer_reads_quantizers_from_the_qdq_model(tiny_qdq: TinyQdq) -> None:
    import onnx

    from qc.runners.ort import OrtRunner

    target = onnx.load(str(tiny_qdq.target))
    reference = OrtRunner("reference", tiny_qdq.reference)
    qs = {q.reference: q for q in activation_quantizers(target, reference.graph().names(), "tiny") if q.reference}
    assert qs["pred"].tensor == "pred_QuantizeLinear_Input"
    assert (qs["pred"].bits, qs["pred"].qmin, qs["pred"].qmax, qs["pred"].dtype) == (8, 0, 255, "uint8")
    observer = RangeObserver(qs, {"pred": {"scores": Slice(axis=1, start=4)}})
    for seed in range(3):
        observer(reference.run_all(tiny_qdq.feed(seed)))
    evidence = observer.evidence()
    pred = evidence["pred"]
    assert pred.values == 3 * 6 * 16 * 16
    assert "values below one step" in pred.flags
    assert pred.slices[0].peak_steps < 1.0
    assert set(observer.observed) >= {"images", "relu1", "pred"}
