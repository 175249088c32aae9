"""Older exports quantize correctly: a graph below opset 13 is converted before per-channel quantization."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from qc.config import OrtInt8Target
from qc.runners.quantize import model_opset, quantize_int8, required_opset, upgrade_opset


def _conv_model(opset: int) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b")
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
            helper.make_node("Sigmoid", ["c"], ["y"], name="sig"),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
        [w, b],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=6)


def _feeds(n: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(1)
    return [{"x": rng.standard_normal((1, 3, 8, 8)).astype(np.float32)} for _ in range(n)]


def _raw_per_channel_quantize(src: Path, dst: Path) -> None:
    """onnxruntime's quantize_static as qc called it before the fix: no opset conversion."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    feeds = iter(_feeds(2))

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(feeds, None)

    quantize_static(
        str(src),
        str(dst),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )


def test_required_opset_follows_the_settings() -> None:
    assert required_opset(OrtInt8Target(kind="ort-int8", per_channel=True)) == 13
    assert required_opset(OrtInt8Target(kind="ort-int8", per_channel=False)) == 10


def test_opset11_per_channel_is_invalid_without_conversion_and_valid_with_it(tmp_path: Path) -> None:
    src = tmp_path / "opset11.onnx"
    onnx.save(_conv_model(11), str(src))
    raw = tmp_path / "raw.onnx"
    _raw_per_channel_quantize(src, raw)
    with pytest.raises(Exception, match="axis"):  # the bug: DequantizeLinear with axis in an opset-11 graph
        ort.InferenceSession(str(raw), providers=["CPUExecutionProvider"])

    notes: list[str] = []
    out = tmp_path / "q.onnx"
    settings = OrtInt8Target(kind="ort-int8", per_channel=True)
    assert quantize_int8(src, settings, _feeds(2), out, "tiny", notes) == 2
    assert "opset 11 to 13" in notes[0]
    assert [n for n in notes if "opset" in n] == notes[:1]  # said once (the pre-processing note may follow)
    model = onnx.load(str(out))
    assert model_opset(model) == 13
    assert any(n.op_type == "DequantizeLinear" and any(a.name == "axis" for a in n.attribute) for n in model.graph.node)
    feed = _feeds(3)[2]
    ref = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, feed)[0]
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, feed)[0]
    assert np.abs(ref - got).max() < 0.05


def test_no_conversion_when_the_opset_suffices() -> None:
    model = _conv_model(13)
    same, note = upgrade_opset(model, OrtInt8Target(kind="ort-int8"), "m")
    assert note is None
    assert same is model
    low = _conv_model(11)
    kept, note = upgrade_opset(low, OrtInt8Target(kind="ort-int8", per_channel=False), "m")
    assert note is None
    assert model_opset(kept) == 11
