"""A model compared against itself passes every layer; input-independent tensors are found by graph reachability
and listed apart (not gated), on real onnxruntime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from qc import gates
from qc.compare.layerwise import compare_stream, input_independent_tensors
from qc.compare.matching import match_qdq
from qc.config import Thresholds
from qc.report.tables import write_comparison
from qc.runners.ort import OrtRunner

INDEPENDENT = {"grid_shape", "zeros_like_input", "ones", "grid", "anchors"}


def decode_like_model(path: Path) -> Path:
    """A YOLOv8-style decode in miniature: ConstantOfShape zeros (from Shape of the input and from a constant
    shape), a CumSum grid and anchors that depend on nothing but constants, next to input-dependent layers, one of
    which is all zeros on every image (Mul by 0): identical on both sides, but it depends on the input."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    zero = numpy_helper.from_array(np.zeros(1, np.float32))
    one = numpy_helper.from_array(np.ones(1, np.float32))
    nodes = [
        helper.make_node("Shape", ["images"], ["grid_shape"], name="shape"),
        helper.make_node("ConstantOfShape", ["grid_shape"], ["zeros_like_input"], name="zeros_like", value=zero),
        helper.make_node("Add", ["images", "zeros_like_input"], ["shifted"], name="add_zeros"),
        helper.make_node("Conv", ["shifted", "w"], ["conv"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["relu"], name="relu"),
        helper.make_node("Mul", ["relu", "zero"], ["masked"], name="mask"),
        helper.make_node("Add", ["relu", "masked"], ["pred"], name="add_masked"),
        helper.make_node("ConstantOfShape", ["anchor_shape"], ["ones"], name="ones", value=one),
        helper.make_node("CumSum", ["ones", "axis"], ["grid"], name="cumsum"),
        helper.make_node("Mul", ["grid", "stride"], ["anchors"], name="anchors"),
    ]
    inits = [
        w,
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
        numpy_helper.from_array(np.array([1, 4, 8, 8], np.int64), "anchor_shape"),
        numpy_helper.from_array(np.array(3, np.int64), "axis"),
        numpy_helper.from_array(np.array(8.0, np.float32), "stride"),
    ]
    graph = helper.make_graph(
        nodes,
        "decode_like",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 8, 8])],
        [
            helper.make_tensor_value_info("pred", TensorProto.FLOAT, [1, 4, 8, 8]),
            helper.make_tensor_value_info("anchors", TensorProto.FLOAT, [1, 4, 8, 8]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def _feeds(count: int) -> list[tuple[int, dict[str, np.ndarray]]]:
    rng = np.random.default_rng(1)
    return [(i, {"images": rng.standard_normal((1, 3, 8, 8)).astype(np.float32)}) for i in range(count)]


def test_graph_reachability_finds_input_independent_tensors(tmp_path: Path) -> None:
    model = onnx.load(str(decode_like_model(tmp_path / "m.onnx")))
    found = input_independent_tensors(model)
    assert found >= INDEPENDENT
    assert not {"images", "shifted", "conv", "relu", "masked", "pred"} & found


def test_outer_scope_reads_of_subgraphs_count() -> None:
    then = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["t"])], "then", [], [helper.make_tensor_value_info("t", 1, [1])]
    )
    other = helper.make_graph(
        [helper.make_node("Identity", ["c"], ["e"])], "else", [], [helper.make_tensor_value_info("e", 1, [1])]
    )
    graph = helper.make_graph(
        [
            helper.make_node("If", ["flag"], ["uses_x"], then_branch=then, else_branch=other),
            helper.make_node("If", ["flag"], ["only_c"], then_branch=other, else_branch=other),
        ],
        "g",
        [helper.make_tensor_value_info("x", 1, [1])],
        [helper.make_tensor_value_info("uses_x", 1, [1])],
        [numpy_helper.from_array(np.array([1.0], np.float32), "c"), numpy_helper.from_array(np.array(True), "flag")],
    )
    found = input_independent_tensors(helper.make_model(graph))
    assert "only_c" in found
    assert "uses_x" not in found


def test_a_model_compared_against_itself_passes_every_layer(tmp_path: Path) -> None:
    path = decode_like_model(tmp_path / "m.onnx")
    reference, target = OrtRunner("reference", path), OrtRunner("target", path)
    matches = match_qdq(reference.graph(), target.graph())
    result = compare_stream("self", reference, target, matches, _feeds(3), {})
    by_tensor = {row.tensor: row for row in result.layers}
    assert {"zeros_like_input", "masked", "relu", "anchors"} <= set(by_tensor)
    for row in result.layers:  # the identity rule: every layer a perfect match, all-zero ones included
        assert row.metrics.undefined is None, row.tensor
        assert row.metrics.cosine_mean == 1.0, row.tensor
        assert row.metrics.sqnr_db_mean == float("inf"), row.tensor
        assert row.metrics.mse_mean == 0.0, row.tensor
    independent = {row.tensor for row in result.input_independent_layers()}
    assert independent == INDEPENDENT & set(by_tensor)
    assert "zeros_like_input" in independent
    assert not by_tensor["masked"].input_independent  # all zeros too, but it depends on the input
    assert any("input-independent" in note for note in result.notes)
    thresholds = Thresholds(layer_cosine=0.999, output_cosine=0.999, output_sqnr_db=100)
    for gate in (gates.layer_cosine, gates.output_cosine, gates.output_sqnr):
        verdict = gate(result, thresholds)
        assert verdict.passed, verdict.message
    assert gates.layer_cosine(result, thresholds).metrics["layers_compared"] == len(result.layers) - len(independent)
    write_comparison(result, tmp_path / "report")
    header, *rows = (tmp_path / "report" / "layers.csv").read_text().splitlines()
    assert header.split(",")[-1] == "input_independent"
    flags = {row.split(",")[1]: row.split(",")[-1] for row in rows}
    assert flags["zeros_like_input"] == "true"
    assert flags["relu"] == "false"


def test_a_constant_that_differs_from_the_target_is_not_gated(tmp_path: Path) -> None:
    """A quantized or re-exported target may round a constant differently: listed, not a layer failure."""
    path = decode_like_model(tmp_path / "m.onnx")
    model = onnx.load(str(path))
    for init in model.graph.initializer:
        if init.name == "stride":
            init.CopyFrom(numpy_helper.from_array(np.array(-8.0, np.float32), "stride"))
    onnx.save(model, str(tmp_path / "t.onnx"))
    reference, target = OrtRunner("reference", path), OrtRunner("target", tmp_path / "t.onnx")
    result = compare_stream("c", reference, target, match_qdq(reference.graph(), target.graph()), _feeds(2), {})
    anchors = next(row for row in result.layers if row.tensor == "anchors")
    assert anchors.input_independent
    assert anchors.metrics.cosine_mean < 0
    assert gates.layer_cosine(result, Thresholds(layer_cosine=0.99)).passed


def test_one_image_is_enough_for_graph_independence_but_values_must_agree(tmp_path: Path) -> None:
    """A Shape-derived tensor is input-independent only if its value is the same on every image (a dynamic input
    size would change it); with a fixed size it is."""
    path = decode_like_model(tmp_path / "m.onnx")
    reference, target = OrtRunner("reference", path), OrtRunner("target", path)
    result = compare_stream("one", reference, target, match_qdq(reference.graph(), target.graph()), _feeds(1), {})
    assert "zeros_like_input" in {row.tensor for row in result.input_independent_layers()}
