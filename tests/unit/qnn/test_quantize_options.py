"""The QNN EP's quantizer overrides computed from qc's SNPE-named settings (onnxruntime CPU only)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qc.config import QuantSettings
from qc.errors import ConfigError
from qc.qnn.quantize import qnn_extra_options, quantize_htp


def _model() -> Any:
    """x -> Conv -> Sigmoid -> s ; Conv -> Add(s) -> y."""
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((2, 2, 1, 1), np.float32), "W")
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["c"], name="conv"),
        helper.make_node("Sigmoid", ["c"], ["s"], name="sigmoid"),
        helper.make_node("Add", ["c", "s"], ["y"], name="add"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_eight_bit_needs_no_tensor_override_but_qnn_quantizer_options() -> None:
    extra = qnn_extra_options(_model(), QuantSettings(), "demo")
    assert extra["TensorQuantOverrides"] == {}
    assert extra["DedicatedQDQPair"] is False
    assert extra["MinimumRealRange"] == pytest.approx(1e-4)
    assert "UseQDQContribOps" not in extra


def test_int16_tensors_get_conversions_and_contrib_ops_below_opset_21() -> None:
    from onnxruntime.quantization import QuantType

    extra = qnn_extra_options(_model(), QuantSettings(int16_tensors=("c",)), "demo")
    overrides = extra["TensorQuantOverrides"]
    assert overrides["c"][0]["quant_type"] == QuantType.QUInt16
    assert extra["UseQDQContribOps"] is True


def test_sixteen_bit_sigmoid_gets_the_fixed_encoding_htp_requires() -> None:
    from onnxruntime.quantization import QuantType

    extra = qnn_extra_options(_model(), QuantSettings(activation_bitwidth=16), "demo")
    (override,) = extra["TensorQuantOverrides"]["s"]
    assert override["quant_type"] == QuantType.QUInt16
    assert float(override["scale"]) == pytest.approx(1 / 65536)
    assert int(override["zero_point"]) == 0
    assert extra["UseQDQContribOps"] is True


def test_float_nodes_are_left_out_and_bad_names_are_config_errors() -> None:
    extra = qnn_extra_options(_model(), QuantSettings(activation_bitwidth=16, float_nodes=("sigmoid",)), "demo")
    assert "s" not in extra["TensorQuantOverrides"]
    with pytest.raises(ConfigError, match=r"demo: target\.float_nodes: no node named 'nope'"):
        qnn_extra_options(_model(), QuantSettings(float_nodes=("nope",)), "demo")


def _gelu_model(path: Path) -> Path:
    """x -> Relu -> Erf-based GELU (Div, Erf, Add, Mul, Mul): the pattern QNN preprocessing fuses into Gelu."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits = [
        numpy_helper.from_array(np.array(1.4142135, np.float32), "sqrt2"),
        numpy_helper.from_array(np.array(1.0, np.float32), "one"),
        numpy_helper.from_array(np.array(0.5, np.float32), "half"),
    ]
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("Div", ["r", "sqrt2"], ["d"], name="div"),
        helper.make_node("Erf", ["d"], ["e"], name="erf"),
        helper.make_node("Add", ["e", "one"], ["a"], name="add"),
        helper.make_node("Mul", ["r", "a"], ["m"], name="mul"),
        helper.make_node("Mul", ["m", "half"], ["y"], name="mul_half"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _calibration(n: int) -> Iterator[dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    for _ in range(n):
        yield {"x": rng.standard_normal((1, 8)).astype(np.float32)}


def test_qnn_preprocessing_is_opt_in_and_fuses_gelu(tmp_path: Path) -> None:
    import onnx

    reference = _gelu_model(tmp_path / "gelu.onnx")
    plain, fused = tmp_path / "plain.onnx", tmp_path / "fused.onnx"
    assert quantize_htp(reference, QuantSettings(), _calibration(3), plain, "gelu") == 3
    assert quantize_htp(reference, QuantSettings(), _calibration(3), fused, "gelu", preprocess=True) == 3
    assert "Erf" in {n.op_type for n in onnx.load(str(plain)).graph.node}
    assert "Gelu" in {n.op_type for n in onnx.load(str(fused)).graph.node}


def test_names_fused_by_preprocessing_are_explained(tmp_path: Path) -> None:
    reference = _gelu_model(tmp_path / "gelu.onnx")
    settings = QuantSettings(float_nodes=("erf",))
    with pytest.raises(ConfigError, match="QNN preprocessing") as info:
        quantize_htp(reference, settings, _calibration(2), tmp_path / "q.onnx", "gelu", preprocess=True)
    assert "gelu: target.float_nodes: no node named 'erf'" in str(info.value)
