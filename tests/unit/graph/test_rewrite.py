"""ONNX rewrites: every rewrite verified against the original on onnxruntime, positive and negative cases."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qc.errors import ConfigError, DataError
from qc.graph.lint import lint
from qc.graph.rewrite import RewriteResult, fix_model, random_inputs, run_onnx, save_fixed
from qc.graph.view import view_from_onnx
from tests.unit.graph import models as gm


def ops_of(model: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in model.graph.node if n.op_type != "Constant"]


def assert_equivalent(original: onnx.ModelProto, result: RewriteResult, *, tol: float = 1e-4) -> None:
    """Independent check: original vs fixed on fresh random inputs (fed through result.feed)."""
    feeds = random_inputs(original, count=2, seed=123)
    ref = run_onnx(original, feeds)
    got = run_onnx(result.model, [result.feed(f) for f in feeds])
    for r, g in zip(ref, got, strict=True):
        assert r.keys() == g.keys()
        for k in r:
            np.testing.assert_allclose(g[k], r[k], rtol=tol, atol=tol)


def lint_rule(model: onnx.ModelProto, rule: str) -> list[str]:
    return [f.node for f in lint(view_from_onnx(model), rules=[rule])]


# ----------------------------------------------------------------------------- div
@pytest.mark.parametrize("constant_node", [False, True])
def test_constant_div_becomes_mul(constant_node: bool) -> None:
    model = gm.div_model(constant_node=constant_node)
    res = fix_model(model, ["div"])
    assert [(a.rule, a.node) for a in res.applied] == [("div", "div")]
    assert ops_of(res.model) == ["Mul", "Relu"]
    assert res.unsafe == []
    assert res.max_abs_diff["div"] < 1e-5
    assert lint_rule(res.model, "div") == []
    assert_equivalent(model, res)


def test_div_by_tensor_is_not_rewritten() -> None:
    model = gm.div_model(constant_divisor=False)
    res = fix_model(model, ["div"])
    assert res.applied == []
    assert res.unsafe == []
    assert ops_of(res.model) == ["Div", "Relu"]


def test_integer_div_is_refused() -> None:
    res = fix_model(gm.int_div_model(), ["div"])
    assert res.applied == []
    assert res.unsafe
    assert res.unsafe[0][0] == "div"
    assert "integer" in res.unsafe[0][1]
    assert ops_of(res.model) == ["Div"]


def test_rewrite_that_fails_the_check_is_rolled_back() -> None:
    # x/3 and x*(1/3) differ in the last bit: with zero tolerance every instance fails and is rolled back.
    model = gm.multi_div_model(3)
    res = fix_model(model, ["div"], rtol=0.0, atol=0.0)
    assert res.applied == []
    assert [r for r, _ in res.unsafe] == ["div", "div", "div"]
    assert all("rolled back" in why and "differs by up to" in why for _, why in res.unsafe)
    assert ops_of(res.model) == ["Div", "Div", "Div"]
    assert "div" not in res.max_abs_diff


# ----------------------------------------------------------------------------- foldable eltwise
@pytest.mark.parametrize(
    "ops", [["add", "mul"], ["sub", "mul"], ["mul", "add"], ["mul", "sub"], ["add"], ["mul"], ["rsub", "mul"]]
)
def test_fold_before_unpadded_conv(ops: list[str]) -> None:
    model = gm.fold_before_model(ops)
    res = fix_model(model, ["foldable-eltwise"])
    assert [a.rule for a in res.applied] == ["foldable-eltwise"]
    assert ops_of(res.model) == ["Conv"]
    assert lint_rule(res.model, "foldable-eltwise") == []
    assert_equivalent(model, res)


@pytest.mark.parametrize("ops", [["mul", "add"], ["add", "mul"], ["mul"], ["add"], ["sub"], ["rsub", "mul"]])
def test_fold_after_conv(ops: list[str]) -> None:
    model = gm.fold_after_model(ops)
    res = fix_model(model, ["foldable-eltwise"])
    assert ops_of(res.model) == ["Conv"]
    assert res.model.graph.output[0].name == "y"
    assert lint_rule(res.model, "foldable-eltwise") == []
    assert_equivalent(model, res)


def test_fold_into_conv_without_bias_adds_one() -> None:
    model = gm.fold_after_model(["add"], with_bias=False)
    res = fix_model(model, ["foldable-eltwise"])
    (conv,) = res.model.graph.node
    assert len(conv.input) == 3
    assert_equivalent(model, res)


def test_fold_before_grouped_conv() -> None:
    model = gm.fold_before_model(["sub", "mul"], c_in=4, c_out=8, group=2)
    res = fix_model(model, ["foldable-eltwise"])
    assert ops_of(res.model) == ["Conv"]
    assert_equivalent(model, res)


def test_fold_with_constant_node_weights() -> None:
    model = gm.fold_after_model(["mul", "add"], constant_nodes=True)
    res = fix_model(model, ["foldable-eltwise"])
    assert [n.op_type for n in res.model.graph.node] == ["Conv"]  # unused Constant nodes are dropped too
    assert_equivalent(model, res)


def test_add_before_padded_conv_is_refused() -> None:
    model = gm.fold_before_model(["add"], pads=(1, 1, 1, 1))
    res = fix_model(model, ["foldable-eltwise"])
    assert res.applied == []
    assert ops_of(res.model) == ["Add", "Conv"]
    ((rule, why),) = res.unsafe
    assert rule == "foldable-eltwise"
    assert "padded" in why
    assert "borders" in why
    assert_equivalent(model, res)


def test_add_before_padded_conv_really_is_not_exact() -> None:
    """The refusal is justified: folding the Add into the bias anyway changes the border outputs."""
    from qc.graph.match import fold_chains
    from qc.graph.rewrite.editor import Editor  # white-box: force the unsafe fold
    from qc.graph.rewrite.fold import apply_fold

    model = gm.fold_before_model(["add"], pads=(1, 1, 1, 1))
    view = view_from_onnx(model)
    unpadded = gm.fold_before_model(["add"])
    chain = fold_chains(view_from_onnx(unpadded))[0][0]
    forced = onnx.ModelProto()
    forced.CopyFrom(model)
    ed = Editor(forced)
    assert apply_fold(ed, view, chain) is None
    forced = ed.finish()
    feeds = random_inputs(model, count=1)
    ref, got = run_onnx(model, feeds)[0]["y"], run_onnx(forced, feeds)[0]["y"]
    interior = np.abs(ref - got)[:, :, 1:-1, 1:-1].max()
    border = np.abs(ref - got)[:, :, 0, :].max()
    assert interior < 1e-5
    assert border > 1e-2


def test_mul_before_padded_conv_folds_and_add_stays() -> None:
    model = gm.fold_before_model(["add", "mul"], pads=(1, 1, 1, 1))
    res = fix_model(model, ["foldable-eltwise"])
    assert ops_of(res.model) == ["Add", "Conv"]
    assert [a.node for a in res.applied] == ["mul1"]
    assert any("add0" in why for _, why in res.unsafe)
    assert_equivalent(model, res)


@pytest.mark.parametrize("shape_kind", ["111w", "c"])
def test_non_per_channel_mul_is_not_folded(shape_kind: str) -> None:
    model = gm.fold_after_model(["mul"], shape_kind=shape_kind)
    res = fix_model(model, ["foldable-eltwise"])
    assert res.applied == []
    assert ops_of(res.model) == ["Conv", "Mul"]


def test_shared_intermediate_is_not_folded() -> None:
    res = fix_model(gm.fold_shared_intermediate_model(), ["foldable-eltwise"])
    assert res.applied == []


def test_mul_between_convs_folds_once() -> None:
    model = gm.conv_mul_conv_model()
    res = fix_model(model, ["foldable-eltwise"])
    assert ops_of(res.model) == ["Conv", "Conv"]
    assert len(res.applied) == 1
    assert_equivalent(model, res)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    side=st.sampled_from(["before", "after"]),
    ops=st.lists(st.sampled_from(["add", "sub", "mul", "rsub"]), min_size=1, max_size=3),
    channels=st.integers(1, 6),
    shape_kind=st.sampled_from(["scalar", "c11", "1c11"]),
    seed=st.integers(0, 2**16),
    magnitude=st.floats(0.01, 100.0),
)
def test_random_per_channel_constants_fold_exactly(
    side: str, ops: Sequence[str], channels: int, shape_kind: str, seed: int, magnitude: float
) -> None:
    rng = np.random.default_rng(seed)
    shape = {"scalar": (), "c11": (channels, 1, 1), "1c11": (1, channels, 1, 1)}[shape_kind]
    values = [(rng.standard_normal(shape) * magnitude).astype(np.float32) for _ in ops]
    if side == "before":
        model = gm.fold_before_model(ops, c_in=channels, c_out=5, values=values)
    else:
        model = gm.fold_after_model(ops, c_out=channels, values=values)
    # "Exact" up to float32 rounding: tolerance relative to the output range (folding reassociates sums).
    scale = max(float(np.abs(v).max()) for v in run_onnx(model, random_inputs(model))[0].values())
    res = fix_model(model, ["foldable-eltwise"], rtol=1e-5, atol=1e-5 * max(1.0, scale))
    assert res.unsafe == []
    assert ops_of(res.model) == ["Conv"]
    assert lint_rule(res.model, "foldable-eltwise") == []


# ----------------------------------------------------------------------------- conv stride
@pytest.mark.parametrize(
    ("strides", "kept", "steps"),
    [((1, 2), 1, [2]), ((2, 1), 1, [2]), ((4, 4), 2, [2, 2]), ((2, 6), 2, [3]), ((3, 6), 3, [2])],
)
def test_odd_stride_becomes_fast_stride_plus_slice(strides: Sequence[int], kept: int, steps: list[int]) -> None:
    model = gm.conv_model(strides=strides, size=17, width=23)
    res = fix_model(model, ["conv-stride"])
    assert ops_of(res.model) == ["Conv", "Slice", "Relu"]
    conv = res.model.graph.node[0]
    assert next(list(a.ints) for a in conv.attribute if a.name == "strides") == [kept, kept]
    assert res.max_abs_diff["conv-stride"] == 0.0
    slice_steps = next(i for i in res.model.graph.initializer if i.name.endswith("slice_steps"))
    assert list(onnx.numpy_helper.to_array(slice_steps)) == steps
    assert lint_rule(res.model, "conv-stride") == []
    assert_equivalent(model, res, tol=0.0)


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER", "VALID"])
def test_stride_rewrite_keeps_auto_pad_semantics(auto_pad: str) -> None:
    model = gm.conv_model(strides=(2, 4), size=17, width=19, auto_pad=auto_pad)
    res = fix_model(model, ["conv-stride"])
    assert len(res.applied) == 1
    assert_equivalent(model, res, tol=0.0)


def test_fast_strides_are_left_alone() -> None:
    res = fix_model(gm.conv_model(strides=(2, 2)), ["conv-stride"])
    assert res.applied == []
    assert ops_of(res.model) == ["Conv", "Relu"]


def test_stride_with_constant_node_weights() -> None:
    model = gm.conv_model(strides=(1, 2), constant_nodes=True)
    res = fix_model(model, ["conv-stride"])
    assert len(res.applied) == 1
    assert_equivalent(model, res, tol=0.0)


# ----------------------------------------------------------------------------- input channel swap
@pytest.mark.parametrize("kind", ["split", "slices", "gather", "reverse"])
@pytest.mark.parametrize("normalize", [False, True])
def test_channel_swap_moves_into_conv_weights(kind: str, normalize: bool) -> None:
    model = gm.channel_swap_model(kind, normalize=normalize)
    res = fix_model(model, ["input-channel-swap"])
    (applied,) = res.applied
    assert applied.input_permutation is None
    assert "same data" in applied.note
    ops = ops_of(res.model)
    assert ops == (["Sub", "Mul", "Conv"] if normalize else ["Conv"])
    assert lint_rule(res.model, "input-channel-swap") == []
    assert_equivalent(model, res)  # same inputs as the original


def test_channel_swap_weights_mode_with_constant_nodes_and_second_input_reader() -> None:
    model = gm.channel_swap_model("split", normalize=True, constant_nodes=True, second_consumer=True)
    res = fix_model(model, ["input-channel-swap"])
    assert ops_of(res.model) == ["Sub", "Mul", "Conv", "ReduceMean"]
    assert_equivalent(model, res)


def test_channel_swap_input_mode_requires_the_other_channel_order() -> None:
    model = gm.channel_swap_model("split", normalize=True)
    res = fix_model(model, ["input-channel-swap"], channel_swap="input")
    (applied,) = res.applied
    assert applied.input_permutation is not None
    assert applied.input_permutation.perm == (2, 1, 0)
    assert "must now feed" in applied.note
    assert ops_of(res.model) == ["Sub", "Mul", "Conv"]
    assert_equivalent(model, res)  # result.feed() permutes the channels
    feeds = random_inputs(model, count=1)
    ref = run_onnx(model, feeds)[0]["y"]
    unpermuted = run_onnx(res.model, feeds)[0]["y"]
    assert np.abs(ref - unpermuted).max() > 1e-2  # the caller really must feed the other order


def test_channel_swap_input_mode_refuses_when_input_has_other_readers() -> None:
    model = gm.channel_swap_model("split", second_consumer=True)
    res = fix_model(model, ["input-channel-swap"], channel_swap="input")
    assert res.applied == []
    assert res.unsafe
    assert "mean_x" in res.unsafe[0][1]


def test_channel_swap_weights_mode_refuses_non_conv_consumer() -> None:
    from onnx import helper

    inits = {"split": np.array([1, 1, 1], np.int64)}
    nodes = [
        helper.make_node("Split", ["x", "split"], ["s0", "s1", "s2"], name="split", axis=1),
        helper.make_node("Concat", ["s2", "s1", "s0"], ["sw"], name="concat", axis=1),
        helper.make_node("Softmax", ["sw"], ["y"], name="softmax", axis=1),
    ]
    model = gm.make_model(nodes, [gm.vinfo("x", [1, 3, 4, 4])], [gm.vinfo("y", [1, 3, 4, 4])], inits)
    res = fix_model(model, ["input-channel-swap"])
    assert res.applied == []
    assert "Softmax" in res.unsafe[0][1]
    assert "channel_swap='input'" in res.unsafe[0][1]
    res_input = fix_model(model, ["input-channel-swap"], channel_swap="input")
    assert ops_of(res_input.model) == ["Softmax"]
    assert_equivalent(model, res_input)


# ----------------------------------------------------------------------------- driver
def test_all_rules_together_on_a_mixed_model() -> None:
    model = gm.big_model(blocks=6)
    res = fix_model(model)
    rules = {a.rule for a in res.applied}
    assert rules == {"div", "foldable-eltwise", "conv-stride"}
    assert res.unsafe == []
    view = view_from_onnx(res.model)
    assert [f for f in lint(view) if f.rule in {"div", "foldable-eltwise", "conv-stride"}] == []
    assert_equivalent(model, res)


def test_input_model_is_not_modified() -> None:
    model = gm.fold_after_model(["mul"])
    before = model.SerializeToString()
    fix_model(model)
    assert model.SerializeToString() == before


def test_explicit_check_inputs_are_used_and_validated() -> None:
    model = gm.div_model()
    x = np.ones((1, 4, 8, 8), np.float32)
    res = fix_model(model, ["div"], check_inputs=[{"x": x}])
    assert len(res.applied) == 1
    with pytest.raises(DataError, match="lacks model input"):
        fix_model(model, ["div"], check_inputs=[{"z": x}])
    with pytest.raises(DataError):
        fix_model(model, ["div"], check_inputs=[])


def test_rule_ids_are_checked() -> None:
    with pytest.raises(ConfigError):
        fix_model(gm.div_model(), ["divide"])
    res = fix_model(gm.matmul_model(), ["matmul"])
    assert res.unsafe == [("matmul", "no automatic rewrite exists for rule 'matmul'; fix the model by hand")]


def test_save_fixed_writes_model_and_sidecar(tmp_path: Path) -> None:
    res = fix_model(gm.channel_swap_model("split"), ["input-channel-swap"], channel_swap="input")
    path = save_fixed(res, tmp_path / "out" / "fixed.onnx")
    onnx.checker.check_model(onnx.load(str(path)))
    info = json.loads(Path(f"{path}.rewrites.json").read_text())
    assert info["applied"][0]["rule"] == "input-channel-swap"
    assert info["applied"][0]["input_permutation"]["perm"] == [2, 1, 0]
    assert "input-channel-swap" in info["max_abs_diff"]
