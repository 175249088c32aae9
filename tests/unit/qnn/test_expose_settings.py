"""Activation exposure on QDQ graphs, the exposure measure, and the qnn-htp settings model (no HTP needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from qc.errors import MetricError, ModelError
from qc.qnn.expose import activation_dequant_outputs, expose_activations, max_abs_change
from qc.qnn.settings import RVC4_HTP_ARCH, RVC4_SOC_MODEL, QnnHtpTarget


def _qdq_model(activation: str | None = None) -> Any:
    """x -> Q -> DQ -> Conv(W: DQ of an initializer, B: Constant -> DQ) -> Q -> DQ [-> activation -> Q -> DQ] -> y."""
    from onnx import TensorProto, helper, numpy_helper

    inits = [
        numpy_helper.from_array(np.array(0.1, np.float32), "s"),
        numpy_helper.from_array(np.array(0, np.uint8), "z"),
        numpy_helper.from_array(np.ones((2, 1, 1, 1), np.int8), "Wq"),
        numpy_helper.from_array(np.array(0, np.int8), "wz"),
    ]
    bias = helper.make_tensor("bq", TensorProto.INT32, [2], [1, 2])
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"], name="xq"),
        helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"], name="xd"),
        helper.make_node("DequantizeLinear", ["Wq", "s", "wz"], ["Wd"], name="Wd"),
        helper.make_node("Constant", [], ["bqc"], name="bconst", value=bias),
        helper.make_node("DequantizeLinear", ["bqc", "s"], ["Bd"], name="Bd"),
        helper.make_node("Conv", ["xd", "Wd", "Bd"], ["c"], name="conv"),
        helper.make_node("QuantizeLinear", ["c", "s", "z"], ["cq"], name="cq"),
        helper.make_node("DequantizeLinear", ["cq", "s", "z"], ["cd" if activation else "y"], name="cd"),
    ]
    if activation:
        nodes += [
            helper.make_node(activation, ["cd"], ["a"], name="act"),
            helper.make_node("QuantizeLinear", ["a", "s", "z"], ["aq"], name="aq"),
            helper.make_node("DequantizeLinear", ["aq", "s", "z"], ["y"], name="yd"),
        ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_only_activation_dequant_outputs_are_selected() -> None:
    # weights (initializer) and Constant inputs stay hidden; the graph output "y" is already an output
    assert activation_dequant_outputs(_qdq_model()) == ["xd"]


@pytest.mark.parametrize(("activation", "fused"), [("LeakyRelu", True), ("Relu", True), ("Sigmoid", False)])
def test_inputs_of_fused_activations_are_skipped_unless_asked(activation: str, fused: bool) -> None:
    model = _qdq_model(activation)
    assert activation_dequant_outputs(model) == (["xd"] if fused else ["xd", "cd"])
    assert activation_dequant_outputs(model, skip_fused=False) == ["xd", "cd"]


def test_exposed_model_runs_and_keeps_the_final_output(tmp_path: Path) -> None:
    import onnx
    import onnxruntime as ort

    src = tmp_path / "qdq.onnx"
    onnx.save(_qdq_model(), str(src))
    out = tmp_path / "exposed.onnx"
    assert expose_activations(src, out) == ["xd"]
    feeds = {"x": np.linspace(0, 1, 16, dtype=np.float32).reshape(1, 1, 4, 4)}
    base = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    exposed = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [o.name for o in exposed.get_outputs()] == ["y", "xd"]
    y0 = base.run(None, feeds)[0]
    y1, xd = exposed.run(None, feeds)
    assert max_abs_change({"y": y0}, {"y": y1, "xd": xd}) == 0.0
    np.testing.assert_allclose(xd, np.round(feeds["x"] / 0.1) * 0.1, atol=1e-6)


def test_a_float_model_has_nothing_to_expose(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    src = tmp_path / "float.onnx"
    onnx.save(helper.make_model(graph), str(src))
    with pytest.raises(ModelError, match=r"float\.onnx: no DequantizeLinear node with an activation input"):
        expose_activations(src, tmp_path / "out.onnx")


def test_max_abs_change_measures_and_refuses_mismatches() -> None:
    a = {"y": np.array([1.0, 2.0], np.float32)}
    assert max_abs_change(a, {"y": np.array([1.0, 2.5], np.float32)}) == pytest.approx(0.5)
    with pytest.raises(MetricError, match=r"lacks the final output\(s\) \['y'\]"):
        max_abs_change(a, {})
    with pytest.raises(MetricError, match="shape"):
        max_abs_change(a, {"y": np.zeros(3, np.float32)})
    with pytest.raises(MetricError, match="non-finite"):
        max_abs_change(a, {"y": np.array([np.nan, 2.0], np.float32)})


def test_settings_default_to_the_rvc4_and_carry_the_quantization_settings() -> None:
    target = QnnHtpTarget(kind="qnn-htp", activation_bitwidth=16, float_downstream_of=("head",))
    assert (target.htp_arch, target.soc_model) == (RVC4_HTP_ARCH, RVC4_SOC_MODEL) == (73, 66)
    assert target.precision == "quantized"
    assert target.profiling == "detailed"
    assert target.activation_bitwidth == 16
    assert target.float_downstream_of == ("head",)


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"htp_arch": 70}, "htp_arch"),
        ({"soc_model": 0}, "soc_model"),
        ({"precision": "int4"}, "precision"),
        ({"runtime": "dsp"}, "runtime"),
    ],
)
def test_settings_reject_bad_values(fields: dict[str, Any], where: str) -> None:
    with pytest.raises(ValidationError, match=where):
        QnnHtpTarget(kind="qnn-htp", **fields)
