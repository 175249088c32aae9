"""quantize_int8 on real onnxruntime: the quantizer's pre-processing and its messages, and bias_bitwidth."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from qc.config import OrtInt8Target
from qc.runners.quantize import preprocess_for_quantizer, quantize_int8
from tests.models import tiny_detector


def _feeds(count: int = 4) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(3)
    return [{"images": rng.random((1, 3, 32, 32), dtype=np.float32)} for _ in range(count)]


def _quantize(tmp_path: Path, name: str, **settings: object) -> tuple[Path, list[str]]:
    reference = tiny_detector(tmp_path / "tiny.onnx")
    notes: list[str] = []
    out = tmp_path / f"{name}.onnx"
    quantize_int8(reference, OrtInt8Target(kind="ort-int8", **settings), _feeds(), out, "tiny", notes)  # type: ignore[arg-type]
    return out, notes


def _bias_dequantizers(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    found: dict[str, np.ndarray] = {}
    for node in model.graph.node:
        if node.op_type == "Conv" and len(node.input) > 2:
            dq = producers[node.input[2]]
            assert dq.op_type == "DequantizeLinear"
            found[node.name] = inits[dq.input[0]]
    return found


def test_quantizer_asks_for_nothing_on_the_screen(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    _, notes = _quantize(tmp_path, "q")
    shown = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert not [m for m in shown if "pre-processing" in m or "pre-process" in m], shown
    assert any("pre-processed for quantization" in n for n in notes), notes


def test_preprocessing_keeps_every_node(tmp_path: Path) -> None:
    reference = onnx.load(str(tiny_detector(tmp_path / "tiny.onnx")))
    done, note = preprocess_for_quantizer(reference, "tiny")
    assert note is not None
    assert [(n.name, n.op_type) for n in done.graph.node] == [(n.name, n.op_type) for n in reference.graph.node]
    assert {p.key: p.value for p in done.metadata_props}.get("onnx.quant.pre_process") == "onnxruntime.quant"


def test_bias_bitwidth_32_keeps_int32_biases(tmp_path: Path) -> None:
    out, notes = _quantize(tmp_path, "b32", bias_bitwidth=32)
    biases = _bias_dequantizers(onnx.load(str(out)))
    assert biases
    assert all(b.dtype == np.int32 for b in biases.values())
    assert not any("bias_bitwidth" in n for n in notes)


def test_bias_bitwidth_8_rounds_each_bias_on_its_own_scale(tmp_path: Path) -> None:
    out32, _ = _quantize(tmp_path, "b32", bias_bitwidth=32)
    out8, notes = _quantize(tmp_path, "b8", bias_bitwidth=8)
    model = onnx.load(str(out8))
    biases = _bias_dequantizers(model)
    assert set(biases) == {"conv1", "conv2"}
    assert all(b.dtype == np.int8 for b in biases.values())
    assert any("bias_bitwidth 8: 2 biases" in n for n in notes), notes
    # the dequantized bias is within half a step of the float bias, and the step is max|b| / 127
    reference = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(tmp_path / "tiny.onnx")).graph.initializer}
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    for conv, float_name in (("conv1", "b1"), ("conv2", "b2")):
        node = next(n for n in model.graph.node if n.name == conv)
        dq = producers[node.input[2]]
        step = float(inits[dq.input[1]])
        assert step == pytest.approx(np.abs(reference[float_name]).max() / 127, rel=1e-3)
        dequantized = inits[dq.input[0]].astype(np.float64) * step
        assert np.abs(dequantized - reference[float_name]).max() <= step / 2 + 1e-5
    # it runs, and its outputs differ from the int32-bias model only by the bias rounding
    feed = _feeds(1)[0]
    y32 = ort.InferenceSession(str(out32), providers=["CPUExecutionProvider"]).run(None, feed)[0]
    y8 = ort.InferenceSession(str(out8), providers=["CPUExecutionProvider"]).run(None, feed)[0]
    assert y8.shape == y32.shape
    assert not np.array_equal(y8, y32)
    assert np.corrcoef(y8.ravel(), y32.ravel())[0, 1] > 0.99


def test_bias_bitwidth_other_values_are_refused() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="bias_bitwidth"):
        OrtInt8Target(kind="ort-int8", bias_bitwidth=16)  # type: ignore[arg-type]
