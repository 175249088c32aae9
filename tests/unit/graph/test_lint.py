"""Lint rules: one positive and one negative model per rule, plus the driver (profile, order, gates)."""

from __future__ import annotations

from collections.abc import Sequence

import onnx
import pytest

from qc.errors import ConfigError
from qc.graph.lint import RULES, Finding, Severity, filter_findings, lint, max_severity, normalize_layer_name
from qc.graph.view import view_from_onnx
from tests.unit.graph import models as gm


def run(model: onnx.ModelProto, rule: str) -> list[Finding]:
    return lint(view_from_onnx(model), rules=[rule])


# ----------------------------------------------------------------------------- div
def test_div_by_constant_is_error() -> None:
    (f,) = run(gm.div_model(), "div")
    assert (f.rule, f.severity, f.node, f.op_type) == ("div", Severity.ERROR, "div", "Div")
    assert "reciprocal" in f.fix


def test_div_by_constant_node_is_error() -> None:
    (f,) = run(gm.div_model(constant_node=True), "div")
    assert f.severity is Severity.ERROR


def test_div_by_tensor_is_warning() -> None:
    (f,) = run(gm.div_model(constant_divisor=False), "div")
    assert f.severity is Severity.WARNING


def test_no_div_no_finding() -> None:
    assert run(gm.fold_after_model(["mul"]), "div") == []


# ----------------------------------------------------------------------------- matmul
def test_matmul_and_gemm_are_errors() -> None:
    found = run(gm.matmul_model(), "matmul")
    assert [(f.node, f.severity) for f in found] == [("matmul", Severity.ERROR), ("gemm", Severity.ERROR)]
    assert "7 FPS" in found[0].why


def test_conv_model_has_no_matmul() -> None:
    assert run(gm.conv_model(), "matmul") == []


# ----------------------------------------------------------------------------- conv stride
@pytest.mark.parametrize(("strides", "flagged"), [((1, 2), True), ((4, 4), True), ((2, 1), True)])
def test_odd_strides_are_errors(strides: Sequence[int], flagged: bool) -> None:
    found = run(gm.conv_model(strides=strides), "conv-stride")
    assert [f.severity for f in found] == ([Severity.ERROR] if flagged else [])


@pytest.mark.parametrize("strides", [(1, 1), (2, 2), (3, 3)])
def test_uniform_fast_strides_are_fine(strides: Sequence[int]) -> None:
    assert run(gm.conv_model(strides=strides), "conv-stride") == []


# ----------------------------------------------------------------------------- input channel swap
@pytest.mark.parametrize("kind", ["split", "slices", "gather", "reverse"])
def test_input_channel_swap_is_error(kind: str) -> None:
    (f,) = run(gm.channel_swap_model(kind), "input-channel-swap")
    assert f.severity is Severity.ERROR
    assert "[2, 1, 0]" in f.what
    assert f.node in {"concat", "gather", "reverse"}


def test_split_concat_in_the_same_order_is_not_a_swap() -> None:
    assert run(gm.channel_swap_model("split", order=(0, 1, 2)), "input-channel-swap") == []
    assert run(gm.channel_swap_model("gather", order=(0, 1, 2)), "input-channel-swap") == []


def test_swap_inside_the_graph_is_not_an_input_swap() -> None:
    from onnx import helper

    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("Split", ["r"], ["s0", "s1", "s2"], name="split", axis=1, num_outputs=3),
        helper.make_node("Concat", ["s2", "s1", "s0"], ["y"], name="concat", axis=1),
    ]
    model = gm.make_model(nodes, [gm.vinfo("x", [1, 3, 4, 4])], [gm.vinfo("y", [1, 3, 4, 4])], opset=18)
    assert run(model, "input-channel-swap") == []


def test_split_with_num_outputs_is_understood() -> None:
    from onnx import helper

    nodes = [
        helper.make_node("Split", ["x"], ["s0", "s1", "s2"], name="split", axis=1, num_outputs=3),
        helper.make_node("Concat", ["s2", "s1", "s0"], ["y"], name="concat", axis=1),
    ]
    model = gm.make_model(nodes, [gm.vinfo("x", [1, 3, 4, 4])], [gm.vinfo("y", [1, 3, 4, 4])], opset=18)
    (f,) = run(model, "input-channel-swap")
    assert f.nodes == ("split", "concat")


# ----------------------------------------------------------------------------- foldable eltwise
@pytest.mark.parametrize(
    ("ops", "nodes"),
    [
        (["add", "mul"], ("add0", "mul1")),
        (["sub", "mul"], ("sub0", "mul1")),
        (["mul", "add"], ("mul0", "add1")),
        (["mul"], ("mul0",)),
        (["add"], ("add0",)),
    ],
)
def test_eltwise_before_conv_is_foldable(ops: list[str], nodes: tuple[str, ...]) -> None:
    (f,) = run(gm.fold_before_model(ops), "foldable-eltwise")
    assert f.severity is Severity.WARNING
    assert f.nodes == nodes
    assert f.what.endswith("fold into Conv 'conv'.")


@pytest.mark.parametrize(
    ("ops", "nodes"), [(["mul", "add"], ("mul0", "add1")), (["mul"], ("mul0",)), (["add"], ("add0",))]
)
def test_eltwise_after_conv_is_foldable(ops: list[str], nodes: tuple[str, ...]) -> None:
    (f,) = run(gm.fold_after_model(ops), "foldable-eltwise")
    assert f.nodes == nodes
    assert f.what.startswith("Conv -> ")


@pytest.mark.parametrize("shape_kind", ["scalar", "c11", "1c11"])
def test_scalar_and_per_channel_shapes_fold(shape_kind: str) -> None:
    assert len(run(gm.fold_after_model(["mul"], shape_kind=shape_kind), "foldable-eltwise")) == 1


@pytest.mark.parametrize("shape_kind", ["111w", "c"])
def test_non_per_channel_shapes_do_not_fold(shape_kind: str) -> None:
    assert run(gm.fold_after_model(["mul"], shape_kind=shape_kind), "foldable-eltwise") == []
    assert run(gm.fold_before_model(["mul"], shape_kind=shape_kind, c_in=8), "foldable-eltwise") == []


def test_intermediate_with_another_consumer_does_not_fold() -> None:
    assert run(gm.fold_shared_intermediate_model(), "foldable-eltwise") == []


def test_add_before_padded_conv_is_not_reported_but_mul_is() -> None:
    assert run(gm.fold_before_model(["add"], pads=(1, 1, 1, 1)), "foldable-eltwise") == []
    (f,) = run(gm.fold_before_model(["add", "mul"], pads=(1, 1, 1, 1)), "foldable-eltwise")
    assert f.nodes == ("mul1",)


def test_mul_between_two_convs_is_reported_once() -> None:
    (f,) = run(gm.conv_mul_conv_model(), "foldable-eltwise")
    assert f.what.startswith("Conv -> Mul")
    assert "'conv1'" in f.what


# ----------------------------------------------------------------------------- transpose/reshape chains
def test_chain_of_two_different_layout_ops_is_info() -> None:
    (f,) = run(gm.reshape_chain_model(["Reshape", "Transpose"]), "transpose-reshape-chain")
    assert f.severity is Severity.INFO
    assert f.nodes == ("reshape0", "transpose1")


@pytest.mark.parametrize("kinds", [["Transpose", "Transpose"], ["Reshape", "Transpose", "Reshape"]])
def test_collapsible_or_long_chain_is_warning(kinds: list[str]) -> None:
    (f,) = run(gm.reshape_chain_model(kinds), "transpose-reshape-chain")
    assert f.severity is Severity.WARNING


def test_single_layout_op_is_fine() -> None:
    assert run(gm.reshape_chain_model(["Transpose"]), "transpose-reshape-chain") == []


# ----------------------------------------------------------------------------- channels
def test_conv_channels_not_multiple_of_32_is_info() -> None:
    (f,) = run(gm.conv_model(c_out=48), "channels-multiple-32")
    assert f.severity is Severity.INFO
    assert "48" in f.what
    assert "64" in f.fix


@pytest.mark.parametrize(
    ("c_out", "advice"), [(8, "use 32 channels."), (31, "use 32 channels."), (48, "use 64 (or 32) channels.")]
)
def test_conv_channels_advice_names_each_choice_once(c_out: int, advice: str) -> None:
    (f,) = run(gm.conv_model(c_out=c_out), "channels-multiple-32")
    assert f.fix == f"Where the architecture allows, {advice}"


def test_conv_channels_multiple_of_32_is_fine() -> None:
    assert run(gm.conv_model(c_out=64), "channels-multiple-32") == []


# ----------------------------------------------------------------------------- driver
def test_lint_orders_worst_first_and_runs_every_rule() -> None:
    found = lint(view_from_onnx(gm.conv_model(strides=(1, 2), c_out=8)))
    assert [f.rule for f in found] == ["conv-stride", "channels-multiple-32"]
    assert set(RULES) == {
        "div",
        "matmul",
        "conv-stride",
        "input-channel-swap",
        "foldable-eltwise",
        "transpose-reshape-chain",
        "channels-multiple-32",
    }


def test_profile_fills_time_share_with_exact_and_loose_names() -> None:
    view = view_from_onnx(gm.fold_before_model(["add", "mul"]))
    found = lint(view, profile={"add0": 0.2, "MUL1:0 (cycles)": 0.1, "conv": 0.5}, rules=["foldable-eltwise"])
    assert found[0].time_share == pytest.approx(0.3)
    assert lint(view, rules=["foldable-eltwise"])[0].time_share is None
    assert lint(view, profile={"other": 1.0}, rules=["foldable-eltwise"])[0].time_share is None


def test_profile_orders_within_a_severity() -> None:
    view = view_from_onnx(gm.multi_div_model(3))
    found = lint(view, profile={"div0": 0.1, "div2": 0.3}, rules=["div"])
    assert [f.node for f in found] == ["div2", "div0", "div1"]


def test_normalize_layer_name() -> None:
    assert normalize_layer_name("/model.24/Concat_3") == "model_24_concat_3"
    assert normalize_layer_name("_model_24_Concat_3:0 (cycles)") == "model_24_concat_3"
    assert normalize_layer_name("/model.0/conv/Conv_output_0") == "model_0_conv_conv"


def test_max_severity_and_severity_order() -> None:
    assert Severity.INFO < Severity.WARNING < Severity.ERROR
    assert max(Severity.ERROR, Severity.INFO) is Severity.ERROR
    assert max_severity([]) is None
    found = lint(view_from_onnx(gm.conv_model(strides=(1, 2))))
    assert max_severity(found) is Severity.ERROR
    assert max_severity(filter_findings(found, allow=["conv-stride"])) is Severity.INFO


def test_filter_findings_by_rule_and_severity() -> None:
    found = lint(view_from_onnx(gm.conv_model(strides=(1, 2))))
    assert [f.rule for f in filter_findings(found, min_severity="warning")] == ["conv-stride"]
    assert filter_findings(found, allow=["conv-stride"], min_severity=Severity.WARNING) == []


def test_unknown_rule_ids_raise() -> None:
    view = view_from_onnx(gm.conv_model())
    with pytest.raises(ConfigError, match="conv-strides"):
        lint(view, rules=["conv-strides"])
    with pytest.raises(ConfigError):
        filter_findings([], allow=["nope"])
    with pytest.raises(ConfigError):
        filter_findings([], min_severity="fatal")
