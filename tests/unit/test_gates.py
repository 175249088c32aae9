"""Gate verdicts on constructed results: messages name the tensor, the value and the threshold."""

from __future__ import annotations

import math

from qc import gates
from qc.compare.layerwise import Comparison, LayerRow, OutputRow
from qc.compare.metrics import MetricSummary
from qc.config import Thresholds, ThresholdValues
from qc.eval.accuracy import AccuracyResult
from qc.eval.coco import CocoScores


def _m(cos: float, sqnr: float = 30.0, undefined: str | None = None) -> MetricSummary:
    return MetricSummary(cos, cos, sqnr, sqnr, 0.0, 0.0, 2, undefined)


def _comparison() -> Comparison:
    return Comparison(
        model="m",
        images=2,
        layers=[
            LayerRow(0, "a", "Conv", "1x2", "a_dq", _m(0.999)),
            LayerRow(1, "b", "Relu", "1x2", "b_dq", _m(0.95)),
            LayerRow(2, "c", "Sigmoid", "1x2", "c_dq", _m(0.90)),
        ],
        outputs=[
            OutputRow("out", "out", None, "1x6", _m(0.999, 40)),
            OutputRow("out[scores]", "out", "scores", "1x2", _m(math.nan, math.nan, "the target tensor is all zeros")),
        ],
    )


def test_layer_gate_names_first_and_worst_layers() -> None:
    result = gates.layer_cosine(_comparison(), Thresholds(layer_cosine=0.98))
    assert not result.passed
    assert "2 of 3 layers below" in result.message
    assert "first in topological order: b (Relu, #1)" in result.message
    assert "c (Sigmoid, #2): cosine 0.9000 < threshold 0.9800" in result.message
    assert result.metrics["worst_layer"] == "c"


def test_layer_gate_overrides_per_tensor() -> None:
    t = Thresholds(
        layer_cosine=0.98, overrides={"b": ThresholdValues(layer_cosine=0.9), "c": ThresholdValues(layer_cosine=0.85)}
    )
    assert gates.layer_cosine(_comparison(), t).passed


def test_output_gates_fail_on_an_undefined_slice() -> None:
    result = gates.output_cosine(_comparison(), Thresholds())
    assert not result.passed
    assert "out[scores]: metric undefined: the target tensor is all zeros" in result.message
    sqnr = gates.output_sqnr(_comparison(), Thresholds(output_sqnr_db=20))
    assert not sqnr.passed


def test_no_layers_or_outputs_is_a_failure_not_a_pass() -> None:
    empty = Comparison(model="m", images=0)
    assert not gates.layer_cosine(empty, Thresholds()).passed
    assert not gates.output_cosine(empty, Thresholds()).passed


def _scores(ap: float, ap50: float) -> CocoScores:
    return CocoScores(ap, ap50, ap, ap, num_detections=10)


def test_map_drop_message_gives_both_aps_drop_and_budget() -> None:
    acc = AccuracyResult(5, True, _scores(0.40, 0.60), _scores(0.30, 0.58), _scores(0.8, 0.9))
    result = gates.map_drop("m", acc, Thresholds(max_map_drop=0.04))
    assert not result.passed
    assert "reference AP 0.4000, target AP 0.3000, drop 0.1000, budget 0.0400" in result.message
    assert gates.map_drop("m", acc, Thresholds(max_map50_drop=0.04), key="ap50").passed


def test_map_drop_fails_when_a_side_has_no_detections_or_no_labels() -> None:
    empty = CocoScores.flagged_empty("no detections on the 5 evaluated image(s).")
    acc = AccuracyResult(5, True, _scores(0.4, 0.6), empty, empty)
    result = gates.map_drop("m", acc, Thresholds())
    assert not result.passed
    assert "the target yields no usable detections" in result.message
    unlabelled = AccuracyResult(5, False, None, None, _scores(0.9, 0.95))
    assert "has no labels" in gates.map_drop("m", unlabelled, Thresholds()).message
    assert not gates.agreement_ap("m", acc, Thresholds()).passed
    assert gates.agreement_ap("m", unlabelled, Thresholds(min_agreement_ap=0.5)).passed
