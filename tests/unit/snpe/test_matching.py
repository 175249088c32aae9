"""The name and layout matcher between ONNX tensors and DLC tensors (qc.compare.matching.match_layout)."""

from __future__ import annotations

import pytest

from qc.compare.matching import (
    NHWC_TO_NCHW,
    TENSOR_MAP_COLUMNS,
    LayoutMatch,
    layout_permutations,
    match_layout,
    match_qdq,
    normalise_tensor_name,
    permutation_fits,
    tensor_map_rows,
)
from qc.runners.base import GraphTensors, TensorInfo

Row = tuple[str, str, tuple[int | str, ...] | None]


def graph(
    rows: list[Row], *, inputs: dict[str, tuple[int | str, ...]] | None = None, dtype: str = "float32"
) -> GraphTensors:
    tensors = tuple(TensorInfo(i, name, op, f"node_{i}", shape, dtype) for i, (name, op, shape) in enumerate(rows))
    return GraphTensors(inputs=inputs or {}, outputs=(), tensors=tensors)


def by_ref(matches: list[LayoutMatch]) -> dict[str, LayoutMatch]:
    return {m.reference.name: m for m in matches}


# ------------------------------------------------------------------------------------------------ names


@pytest.mark.parametrize(
    ("name", "normalised"),
    [
        ("/model.24/Reshape_1_output_0", "model_24_Reshape_1"),
        ("_model_24_Reshape_1", "model_24_Reshape_1"),
        ("/backbone/stem/conv/Conv_output_0", "backbone_stem_conv_Conv"),
        ("backbone.stem.weight", "backbone_stem_weight"),
        ("a__b___c", "a_b_c"),
        ("output1_yolov6r2", "output1_yolov6r2"),
        ("/x/_output_0", "x"),
    ],
)
def test_normalised_names(name: str, normalised: str) -> None:
    assert normalise_tensor_name(name) == normalised


def test_exact_name_and_nhwc_permutation_from_the_shapes() -> None:
    ref = graph([("/head/Conv_output_0", "Conv", (1, 85, 18, 32))])
    dlc = graph([("/head/Conv_output_0", "Conv2d", (1, 18, 32, 85))])
    m = match_layout(ref, dlc)[0]
    assert (m.target, m.how, m.permutation, m.layout) == ("/head/Conv_output_0", "name", NHWC_TO_NCHW, "shape")
    assert m.target_shape == (1, 18, 32, 85)


def test_normalised_name_when_the_converter_renamed_the_tensor() -> None:
    ref = graph([("/model.24/Reshape_1_output_0", "Reshape", (1, 19200, 85))])
    dlc = graph([("_model_24_Reshape_1", "Reshape", (1, 19200, 85))])
    m = match_layout(ref, dlc)[0]
    assert (m.target, m.how, m.permutation) == ("_model_24_Reshape_1", "normalised", (0, 1, 2))


def test_exact_name_wins_over_a_normalised_one() -> None:
    ref = graph([("a.b", "Relu", (4, 5)), ("a_b", "Relu", (4, 5))])
    dlc = graph([("a_b", "Relu", (4, 5))])
    rows = by_ref(match_layout(ref, dlc))
    assert rows["a_b"].target == "a_b"
    assert rows["a_b"].how == "name"
    assert rows["a.b"].target is None  # its only normalised candidate is taken by the exact match
    assert "no target tensor" in (rows["a.b"].reason or "")


def test_two_candidates_for_one_name_are_reported_not_guessed() -> None:
    ref = graph([("x/y", "Relu", (3, 7))])
    dlc = graph([("x.y", "Relu", (3, 7)), ("_x_y", "Relu", (3, 7))])
    m = match_layout(ref, dlc)[0]
    assert m.target is None
    assert m.reason == "ambiguous name: target tensors '_x_y', 'x.y' all normalise to 'x_y'"


def test_two_reference_tensors_claiming_one_target_tensor_are_reported() -> None:
    ref = graph([("p/q", "Relu", (3, 7)), ("p.q", "Relu", (3, 7))])
    dlc = graph([("p_q", "Relu", (3, 7))])
    rows = match_layout(ref, dlc)
    assert [r.target for r in rows] == [None, None]
    assert all("reference tensors 'p/q', 'p.q' all match target tensor 'p_q'" in (r.reason or "") for r in rows)


def test_missing_tensor_and_non_float_tensor() -> None:
    ref = graph([("gone", "Relu", (2, 3))])
    ints = graph([("shape", "Shape", (4,))], dtype="int64")
    dlc = graph([("other", "Relu", (2, 3))])
    assert match_layout(ref, dlc)[0].reason == "no target tensor of this name or of normalised name 'gone'"
    assert match_layout(ints, dlc)[0].reason == "not compared: dtype int64"


# ------------------------------------------------------------------------------------------------ layouts


def test_other_permutations_and_size_one_axes() -> None:
    ref = graph([("a", "Transpose", (1, 85, 8400)), ("b", "ReduceMax", (1, 1, 36, 64)), ("c", "Relu", (2, 3, 5))])
    dlc = graph([("a", "Transpose", (1, 8400, 85)), ("b", "ReduceMax", (1, 36, 64, 1)), ("c", "Relu", (5, 2, 3))])
    rows = by_ref(match_layout(ref, dlc))
    assert rows["a"].permutation == (0, 2, 1)
    assert rows["b"].permutation == NHWC_TO_NCHW  # unit axes may go anywhere: the data is the same
    assert rows["b"].layout == "shape"
    assert rows["c"].permutation == (1, 2, 0)


def test_two_equal_dims_without_evidence_are_unmatched_with_the_reason() -> None:
    ref = graph([("/x/Reshape_output_0", "Reshape", (1, 16, 16, 24))])
    dlc = graph([("/x/Reshape_output_0", "Reshape", (1, 16, 24, 16))])
    m = match_layout(ref, dlc)[0]
    assert m.target is None
    assert m.permutation is None
    assert m.reason == (
        "ambiguous layout: reference 1x16x16x24 vs target '/x/Reshape_output_0' 1x16x24x16 fits permutations "
        "(0, 1, 3, 2) and (0, 3, 1, 2) (equal dims 16) and no layout evidence decides"
    )


def test_equal_dims_decided_by_op_layouts_then_propagated() -> None:
    """ONNX Conv is NCHW and QNN Conv2d NHWC by definition; a Relu keeps its input's axis order."""
    ref = graph([("conv", "Conv", (1, 16, 16, 24)), ("relu", "Relu", (1, 16, 16, 24))])
    dlc = graph([("conv", "Conv2d", (1, 16, 24, 16)), ("relu", "Relu", (1, 16, 24, 16))])
    rows = by_ref(match_layout(ref, dlc, target_inputs={"relu": ["conv"]}))
    assert (rows["conv"].permutation, rows["conv"].layout) == (NHWC_TO_NCHW, "op")
    assert (rows["relu"].permutation, rows["relu"].layout) == (NHWC_TO_NCHW, "propagated")
    no_inputs = by_ref(match_layout(ref, dlc))  # without the layer inputs nothing propagates
    assert no_inputs["relu"].target is None


def test_a_square_input_is_decided_only_by_the_given_layout() -> None:
    ref = graph([("images", "Input", (1, 3, 416, 416))], inputs={"images": (1, 3, 416, 416)})
    dlc = graph([("images", "Input", (1, 416, 416, 3))], inputs={"images": (1, 416, 416, 3)})
    assert match_layout(ref, dlc)[0].target is None
    m = match_layout(ref, dlc, known={"images": NHWC_TO_NCHW})[0]
    assert (m.permutation, m.layout) == (NHWC_TO_NCHW, "given")
    wrong = match_layout(ref, dlc, known={"images": (0, 1, 2, 3)})[0]  # evidence that does not fit is ignored
    assert wrong.target is None


def test_rank_and_shape_mismatches() -> None:
    ref = graph([("r", "Relu", (1, 4, 5)), ("s", "Relu", (1, 4, 5))])
    dlc = graph([("r", "Relu", (1, 4, 5, 1)), ("s", "Relu", (1, 4, 6))])
    rows = by_ref(match_layout(ref, dlc))
    assert rows["r"].reason == "rank differs: reference 1x4x5 vs target 'r' 1x4x5x1"
    assert rows["s"].reason == (
        "shape differs: reference 1x4x5 vs target 's' 1x4x6 (no axis permutation maps one onto the other)"
    )


def test_unknown_shapes_are_not_guessed() -> None:
    ref = graph([("u", "Relu", None)])
    dlc = graph([("u", "Relu", (2, 3))])
    assert match_layout(ref, dlc)[0].reason == "reference shape unknown; cannot decide the axis order"


def test_symbolic_dims_match_any_target_dim() -> None:
    assert layout_permutations(("N", 3, 32, 48), (1, 32, 48, 3)) == [NHWC_TO_NCHW]
    assert len(layout_permutations(("N", "C", 32, 48), (1, 32, 48, 3))) == 2  # N and C could swap: ambiguous


def test_layout_permutations_and_fits() -> None:
    assert layout_permutations((2, 3), (3, 2)) == [(1, 0)]
    assert layout_permutations((2, 3), (2, 4)) == []
    assert layout_permutations((1, 1, 1, 1, 1, 1, 1, 1, 9), (9, 1, 1, 1, 1, 1, 1, 1, 1)) == [
        (1, 2, 3, 4, 5, 6, 7, 8, 0)
    ]
    assert layout_permutations((4, 4, 4), (4, 4, 4), limit=10) == [
        (0, 1, 2),
        (0, 2, 1),
        (1, 0, 2),
        (1, 2, 0),
        (2, 0, 1),
        (2, 1, 0),
    ]
    assert permutation_fits((0, 3, 1, 2), (1, 3, 4, 5), (1, 4, 5, 3))
    assert not permutation_fits((0, 1, 2, 3), (1, 3, 4, 5), (1, 4, 5, 3))
    assert not permutation_fits((0, 0, 1, 2), (1, 3, 4, 5), (1, 4, 5, 3))


def test_tensor_map_rows() -> None:
    ref = graph([("a", "Conv", (1, 85, 18, 32)), ("b", "Reshape", (8, 8, 6))])
    dlc = graph([("a", "Conv2d", (1, 18, 32, 85)), ("b", "Reshape", (8, 8, 6))])
    rows = tensor_map_rows(match_layout(ref, dlc))
    assert tuple(rows[0]) == TENSOR_MAP_COLUMNS
    assert rows[0] == {
        "reference": "a",
        "reference_shape": "1x85x18x32",
        "target": "a",
        "target_shape": "1x18x32x85",
        "how": "name",
        "permutation": "0,3,1,2",
        "layout": "shape",
        "reason": "",
    }
    assert rows[1]["target"] == ""
    assert rows[1]["reason"].startswith("ambiguous layout")


def test_match_qdq_is_unchanged() -> None:
    ref = graph([("x", "Conv", (1, 4)), ("y", "Relu", (1, 4))])
    tgt = GraphTensors(
        inputs={},
        outputs=(),
        tensors=(
            TensorInfo(0, "x_DequantizeLinear_Output", "DequantizeLinear", "dq", (1, 4), "float32"),
            TensorInfo(1, "y", "Relu", "r", (1, 4), "float32"),
        ),
        dequantized={"x": "x_DequantizeLinear_Output"},
    )
    rows = match_qdq(ref, tgt)
    assert [(r.target, r.how) for r in rows] == [("x_DequantizeLinear_Output", "qdq"), ("y", "name")]
