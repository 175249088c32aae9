"""Origins from synthetic local rows (earliest bad layers, followers, inherited error) and the patterns table."""

from __future__ import annotations

import math

import pytest

from qc.compare.metrics import MetricSummary
from qc.config import Thresholds, ThresholdValues
from qc.diagnose.local import ChannelSummary, LocalRow
from qc.diagnose.origins import GraphInfo, add_sensitive, find_origins, pattern_of, sqnr_for_cosine
from qc.diagnose.ranges import RangeEvidence
from qc.diagnose.report import pattern_rows, patterns_csv


def _m(cosine: float, sqnr: float, undefined: str | None = None) -> MetricSummary:
    return MetricSummary(cosine, cosine, sqnr, sqnr, 0.0, 0.0, 2, undefined)


def _ev(tensor: str, scale: float, lo: float, hi: float, flags: tuple[str, ...] = ()) -> RangeEvidence:
    return RangeEvidence(
        tensor=tensor,
        target_tensor=tensor,
        bits=8,
        dtype="uint8",
        qmin=0,
        qmax=255,
        scale=[scale],
        zero_point=[0],
        axis=None,
        representable_min=0.0,
        representable_max=255 * scale,
        observed_min=lo,
        observed_max=hi,
        values=100,
        clipped_share=0.0,
        rmse_steps=0.29,
        levels_used=(hi - lo) / scale,
        level_share=(hi - lo) / scale / 255,
        zeroed_share=0.0,
        flags=flags,
        findings=tuple(f"{tensor}: {f}" for f in flags),
    )


GRAPH = GraphInfo(
    node={t: f"n_{t}" for t in ("conv", "boxes", "scores", "concat", "flat", "out")},
    op_type={
        "x": "Input",
        "conv": "Conv",
        "boxes": "Mul",
        "scores": "Sigmoid",
        "concat": "Concat",
        "flat": "Reshape",
        "out": "Conv",
    },
    inputs={
        "x": (),
        "conv": ("x",),
        "boxes": ("conv",),
        "scores": ("conv",),
        "concat": ("boxes", "scores"),
        "flat": ("concat",),
        "out": ("flat",),
    },
    index={"x": 0, "conv": 1, "boxes": 2, "scores": 3, "concat": 4, "flat": 5, "out": 6},
)


def _row(tensor: str, cosine: float, sqnr: float, channels: ChannelSummary | None = None) -> LocalRow:
    return LocalRow(GRAPH.index[tensor], tensor, GRAPH.op_type[tensor], tensor, True, _m(cosine, sqnr), {}, channels)


def test_the_mixing_concat_is_the_origin_and_its_reshape_a_follower() -> None:
    collapsed = ChannelSummary(
        axis=1,
        channels=6,
        live=6,
        sqnr_db_median=20.0,
        sqnr_db_p10=0.0,
        sqnr_db_min=0.0,
        collapsed=2,
        collapsed_first=(4, 5),
    )
    rows = [
        _row("conv", 0.9995, 32.0),
        _row("boxes", 0.9999, 40.0),
        _row("scores", 0.9999, 38.0),
        _row("concat", 0.9999, 40.0, collapsed),
        _row("flat", 0.9999, 40.0, collapsed),
        _row("out", 0.9999, 35.0),
    ]
    ranges = {
        "concat": _ev("concat", 2.5, 0.0, 400.0, ("values below one step",)),
        "flat": _ev("flat", 2.5, 0.0, 400.0, ("values below one step",)),
        "boxes": _ev("boxes", 1.6, 0.0, 400.0),
        "scores": _ev("scores", 1 / 255, 0.0, 1.0),
    }
    observed = {"boxes": (0.0, 400.0, 400.0), "scores": (0.0, 1.0, 1.0)}
    accumulated = {"conv": (0.95, 10.0), "concat": (0.99, 20.0), "out": (0.9, 9.0)}
    origins, notes = find_origins("m", rows, accumulated, ranges, observed, GRAPH, Thresholds())
    assert [o.tensor for o in origins] == ["concat"]
    (concat,) = origins
    assert concat.severity == "collapse"
    assert concat.followers == ("flat",)
    assert concat.pattern == "Concat of mixed ranges"
    assert concat.node == "n_concat"
    assert any("2 of 6 channels on axis 1 (e.g. 4, 5)" in r for r in concat.reasons)
    assert any("concat: values below one step" in r for r in concat.reasons)
    assert concat.cosine == 0.99
    # conv and out fail the accumulated threshold (0.98) with a fine local error: inherited, named in a note
    assert notes
    assert "2 layer(s)" in notes[0]
    assert "inherited" in notes[0]


def test_a_layer_clearly_worse_than_its_inputs_and_below_the_sqnr_bar_is_an_origin() -> None:
    rows = [_row("conv", 0.9999, 45.0), _row("boxes", 0.995, 18.0), _row("scores", 0.9999, 40.0)]
    origins, _ = find_origins("m", rows, {}, {}, {}, GRAPH, Thresholds())
    assert [(o.tensor, o.severity) for o in origins] == [("boxes", "worse than inputs")]
    assert "27.0 dB below its inputs' (45.0 dB" in origins[0].reasons[0]


def test_an_undefined_slice_is_a_collapse_and_counts_as_zero_db() -> None:
    row = LocalRow(
        4, "concat", "Concat", "concat", True, _m(0.9999, 40.0), {"obj": _m(math.nan, math.nan, "target all zeros")}
    )
    assert row.worst_sqnr_db() == 0.0
    origins, _ = find_origins("m", [row], {}, {}, {}, GRAPH, Thresholds())
    assert origins[0].severity == "collapse"
    assert "concat[obj] fed reference inputs: local cosine undefined (target all zeros)" in origins[0].reasons[0]


def test_sensitive_layers_join_the_origins_in_topological_order() -> None:
    rows = [_row("conv", 0.9995, 28.0), _row("out", 0.9999, 35.0)]
    origins = add_sensitive(
        [],
        rows,
        [("n_out", "out", 25.0, "y"), ("n_conv", "conv", 14.2, "y[classes]")],
        {},
        {},
        {},
        GRAPH,
        Thresholds(),
    )
    assert [(o.tensor, o.severity) for o in origins] == [("conv", "sensitive")]
    assert "pulls y[classes] down to 14.2 dB (output SQNR threshold 20.0 dB)" in origins[0].reasons[0]


def test_sigmoid_after_a_coarse_input_quantizer() -> None:
    ranges = {"conv": _ev("conv", 0.12, -24.0, 7.0), "scores": _ev("scores", 1 / 255, 0.0, 1.0)}
    assert pattern_of("scores", GRAPH, ranges, {}) == "Sigmoid after a wide Conv"
    assert sqnr_for_cosine(0.98) == pytest.approx(10 * math.log10(25))


def test_patterns_table_groups_op_types_across_models_worst_first() -> None:
    rows = pattern_rows(
        [
            ("a", [("c1", "Concat", "Concat of mixed ranges", 0.0), ("k", "Conv", "", 30.0)]),
            (
                "b",
                [("c2", "Concat", "Concat of mixed ranges", 4.0), ("k", "Conv", "", 26.0), ("f", "Relu", "", math.inf)],
            ),
        ]
    )
    assert [(r.op_type, r.pattern, r.count, r.models) for r in rows] == [
        ("Concat", "Concat of mixed ranges", 2, 2),
        ("Conv", "-", 2, 2),
        ("Relu", "-", 1, 1),
    ]
    assert rows[0].mean_sqnr_db_local == 2.0
    assert rows[0].min_sqnr_db_local == 0.0
    assert rows[0].worst_tensor == "a:c1"
    text = patterns_csv(rows)
    assert text.splitlines()[0] == "op_type,pattern,count,models,mean_sqnr_db_local,min_sqnr_db_local,worst_tensor"


def test_a_per_tensor_threshold_of_zero_is_applied_not_replaced_by_the_default() -> None:
    rows = [_row("conv", 0.9995, 32.0), _row("out", 0.9999, 35.0)]
    accumulated = {"conv": (0.95, 10.0), "out": (0.9, 9.0)}
    zero = Thresholds(overrides={"conv": ThresholdValues(layer_cosine=0.0), "out": ThresholdValues(layer_cosine=0.0)})
    _, notes = find_origins("m", rows, accumulated, {}, {}, GRAPH, zero)
    assert not any("inherited" in n for n in notes)
    _, default_notes = find_origins("m", rows, accumulated, {}, {}, GRAPH, Thresholds())
    assert any("2 layer(s)" in n and "inherited" in n for n in default_notes)
