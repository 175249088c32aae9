"""GraphView construction from ONNX and the QNN name/attribute mapping for the DLC adapter."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

from qc.errors import ModelError
from qc.graph.lint import lint
from qc.graph.view import (
    Node,
    assign_node_names,
    canonical_attrs,
    canonical_op,
    graph_view,
    view_from_onnx,
)
from tests.unit.graph import models as gm


def test_view_lists_nodes_inputs_outputs_constants_and_inferred_shapes() -> None:
    view = view_from_onnx(gm.fold_after_model(["mul", "add"]))
    assert [n.op_type for n in view.nodes] == ["Conv", "Mul", "Add"]
    assert view.inputs == ["x"]  # initializers are not runtime inputs
    assert view.outputs == ["y"]
    assert {"w", "b", "k0", "k1"} <= set(view.constants)
    assert view.shape("c") == (1, 8, 8, 8)  # intermediate: from shape inference
    assert view.shape("w") == (8, 4, 3, 3)
    assert view.dim("c", 1) == 8
    conv = view.node("conv")
    assert conv.attrs["pads"] == [1, 1, 1, 1]
    assert conv.attrs["strides"] == [1, 1]


def test_producer_and_consumers() -> None:
    view = view_from_onnx(gm.fold_shared_intermediate_model())
    assert view.producer("c") is view.node("conv")
    assert [n.name for n in view.consumers("c")] == ["mul", "relu"]
    assert view.producer("x") is None
    assert view.producer("w") is None
    assert view.single_consumer("c") is None
    assert view.single_consumer("x") is view.node("conv")
    assert view.is_graph_output("y")
    assert not view.is_graph_output("c")


def test_constant_node_weights_become_constants_and_lint_the_same() -> None:
    as_init = gm.fold_after_model(["mul", "add"])
    as_const = gm.fold_after_model(["mul", "add"], constant_nodes=True)
    assert any(n.op_type == "Constant" for n in as_const.graph.node)
    view = view_from_onnx(as_const)
    assert all(n.op_type != "Constant" for n in view.nodes)
    np.testing.assert_array_equal(view.constants["w"], view_from_onnx(as_init).constants["w"])
    got = [(f.rule, f.node) for f in lint(view)]
    assert got == [(f.rule, f.node) for f in lint(view_from_onnx(as_init))]
    assert ("foldable-eltwise", "mul0") in got


def test_identity_of_constant_is_constant() -> None:
    nodes = [
        helper.make_node("Identity", ["d"], ["d2"], name="ident"),
        helper.make_node("Div", ["x", "d2"], ["y"], name="div"),
    ]
    model = gm.make_model(nodes, [gm.vinfo("x", [2])], [gm.vinfo("y", [2])], {"d": np.array([2.0], np.float32)})
    view = view_from_onnx(model)
    assert view.is_constant("d2")
    assert [n.name for n in view.nodes] == ["div"]


def test_unnamed_nodes_get_unique_deterministic_names() -> None:
    nodes = [
        helper.make_node("Relu", ["x"], ["a"]),
        helper.make_node("Relu", ["a"], ["b"], name="r"),
        helper.make_node("Relu", ["b"], ["c"], name="r"),
        helper.make_node("Relu", ["c"], ["y"], name="Relu_0"),
    ]
    model = gm.make_model(nodes, [gm.vinfo("x", [2])], [gm.vinfo("y", [2])])
    names = assign_node_names(model.graph.node)
    assert len(set(names)) == 4
    assert names[1] == "r"
    assert names[3] == "Relu_0"
    assert names == assign_node_names(model.graph.node)
    assert [n.name for n in view_from_onnx(model).nodes] == names


def test_unsorted_graph_is_sorted_topologically() -> None:
    nodes = [
        helper.make_node("Relu", ["a"], ["y"], name="second"),
        helper.make_node("Relu", ["x"], ["a"], name="first"),
    ]
    graph = helper.make_graph(nodes, "g", [gm.vinfo("x", [2])], [gm.vinfo("y", [2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", gm.OPSET)])
    view = view_from_onnx(model)
    assert [n.name for n in view.nodes] == ["first", "second"]
    assert view.index("first") == 0


def test_symbolic_dims_are_kept_as_names() -> None:
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="relu")]
    model = gm.make_model(nodes, [gm.vinfo("x", ["N", 3])], [gm.vinfo("y", ["N", 3])])
    view = view_from_onnx(model)
    assert view.shape("x") == ("N", 3)
    assert view.dim("x", 0) is None
    assert view.dim("x", -1) == 3


def test_view_from_onnx_rejects_non_models() -> None:
    with pytest.raises(ModelError):
        view_from_onnx(onnx.GraphProto())


@pytest.mark.parametrize(
    ("qnn_type", "params", "expected"),
    [
        ("Eltwise_Binary", {"operation": "2"}, "Div"),
        ("Eltwise_Binary", {"operation": "0"}, "Add"),
        ("Eltwise_Binary", {"operation": "13"}, "Mul"),
        ("Eltwise_Binary", {"operation": "18"}, "Sub"),
        ("ElementWiseBinary", {"operation": "ElementWiseDivide"}, "Div"),
        ("Eltwise_Binary", {"operation": "DIVIDE"}, "Div"),
        ("ElementWiseDivide", {}, "Div"),
        ("ElementWiseUnary", {"operation": "15"}, "Sqrt"),
        ("ElementWiseNeuron", {"operation": "4"}, "Relu"),
        ("Conv2d", {}, "Conv"),
        ("DepthWiseConv2d", {}, "Conv"),
        ("TransposeConv2d", {}, "ConvTranspose"),
        ("FullyConnected", {}, "Gemm"),
        ("MatMul", {}, "MatMul"),
        ("Concat", {"axis": "3"}, "Concat"),
        ("StridedSlice", {}, "Slice"),
        ("Split", {}, "Split"),
        ("Transpose", {}, "Transpose"),
        ("Reshape", {}, "Reshape"),
        ("PoolMax2d", {}, "MaxPool"),
        ("SomethingNew", {}, "SomethingNew"),
        ("Eltwise_Binary", {"operation": "99"}, "Eltwise_Binary:99"),
    ],
)
def test_canonical_op(qnn_type: str, params: dict[str, str], expected: str) -> None:
    assert canonical_op(qnn_type, params) == expected


def test_canonical_attrs() -> None:
    attrs = canonical_attrs(
        "Conv2d", {"stride": "[1, 2]", "pad_amount": "[[1, 1], [2, 2]]", "group": "2", "dilation": "[1, 1]"}
    )
    assert attrs == {"strides": [1, 2], "pads": [1, 2, 1, 2], "group": 2, "dilations": [1, 1]}
    assert canonical_attrs("Concat", {"axis": "3", "mode": "foo"}) == {"axis": 3, "mode": "foo"}


def test_dlc_style_view_lints_with_nhwc_channel_axis() -> None:
    """What a DLC adapter would build: QNN names mapped, NHWC shapes, static tensors as (NaN) constants."""
    rows = [
        ("conv", "Conv2d", {"stride": "[1, 2]", "pad_amount": "[[1, 1], [1, 1]]"}, ["x", "w", "b"], ["c"]),
        ("scale", "Eltwise_Binary", {"operation": "13"}, ["c", "k"], ["m"]),
        ("div", "Eltwise_Binary", {"operation": "2"}, ["m", "d"], ["y"]),
    ]
    nodes = [Node(n, canonical_op(t, p), i, o, canonical_attrs(t, p)) for n, t, p, i, o in rows]
    nan = np.float32(np.nan)
    constants = {
        "w": np.full((3, 3, 3, 64), nan),  # HWIO: not used for channel counts in NHWC views
        "b": np.full((64,), nan),
        "k": np.full((64,), nan),
        "d": np.full((1,), nan),
    }
    shapes = {"x": (1, 32, 32, 3), "c": (1, 32, 16, 64), "m": (1, 32, 16, 64), "y": (1, 32, 16, 64)}
    view = graph_view(nodes, inputs=["x"], outputs=["y"], constants=constants, shapes=shapes, channel_axis=-1)
    got = {(f.rule, f.node) for f in lint(view)}
    assert got == {("conv-stride", "conv"), ("foldable-eltwise", "scale"), ("div", "div")}
