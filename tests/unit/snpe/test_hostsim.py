"""Host simulation of a DLC (qc.snpe.hostsim) on a tiny ONNX model with hand-made dlc-info encodings."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import cast

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from qc.compare.matching import TensorMatch
from qc.errors import ModelError
from qc.runners.base import GraphTensors, Runner
from qc.runners.ort import OrtRunner
from qc.snpe.hostsim import ERROR_SPLIT_COLUMNS, build_host_simulation, split_error, write_error_split
from qc.snpe.parsers import ChannelEncoding, DlcInfo, DlcLayer, DlcTensor, DlcTotals, Encoding


def _model(path: Path) -> Path:
    """x (1,3,8,8) -> Conv A -> a -> Relu -> r -> Conv B -> b -> Sigmoid -> y."""
    rng = np.random.default_rng(0)
    wa = (rng.standard_normal((4, 3, 3, 3)) * 0.4).astype(np.float32)
    ba = (rng.standard_normal(4) * 0.1).astype(np.float32)
    wb = (rng.standard_normal((2, 4, 1, 1)) * 0.5).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "wa", "ba"], ["a"], name="conv_a", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a"], ["r"], name="relu"),
        helper.make_node("Conv", ["r", "wb"], ["b"], name="conv_b"),
        helper.make_node("Sigmoid", ["b"], ["y"], name="sigmoid"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 8, 8])],
        [numpy_helper.from_array(wa, "wa"), numpy_helper.from_array(ba, "ba"), numpy_helper.from_array(wb, "wb")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _enc(lo: float, hi: float, bits: int = 8) -> Encoding:
    levels = 2**bits - 1
    scale = (hi - lo) / levels
    offset = float(round(lo / scale))
    return Encoding(bits, offset * scale, (offset + levels) * scale, scale, offset)


ENC_X = _enc(0.0, 1.0)
ENC_R = _enc(0.0, 3.1, bits=16)
ENC_Y = Encoding(8, 0.0, 1.0, 0.00392156862745098, 0.0)


def _weight_encoding(channels: int) -> Encoding:
    per = [ChannelEncoding(c, 8, -1.0, 1.0, 0.01 * (c + 1), -128.0) for c in range(channels)]
    return Encoding(8, -1.0, 1.0, per[0].scale, -128.0, per_channel=per, axis=3, num_channels=4)


def _info(*, weight_channels: int = 4, x_offset: float | None = None) -> DlcInfo:
    """conv_a's output ``a`` is fused away (absent); ``b`` is Float_32 without encoding (float in the DLC)."""
    enc_x = ENC_X if x_offset is None else Encoding(8, 0.0, 1.0, ENC_X.scale, x_offset)

    def cell(name: str, dtype: str, dims: tuple[int, ...], kind: str = "NATIVE") -> DlcTensor:
        return DlcTensor(name, dtype, dims, kind, is_network_input=kind == "APP_WRITE")

    layers = [
        DlcLayer(
            0,
            "conv_a",
            "Conv2d",
            inputs=[cell("x", "uFxp_8", (1, 8, 8, 3), "APP_WRITE"), cell("wa", "uFxp_8", (3, 3, 3, 4), "STATIC")],
            outputs=[cell("r", "uFxp_16", (1, 8, 8, 4))],
            encodings={"x": enc_x, "wa": _weight_encoding(weight_channels), "r": ENC_R},
        ),
        DlcLayer(
            1,
            "conv_b",
            "Conv2d",
            inputs=[cell("r", "uFxp_16", (1, 8, 8, 4)), cell("wb", "Float_32", (1, 1, 4, 2), "STATIC")],
            outputs=[cell("b", "Float_32", (1, 8, 8, 2))],
        ),
        DlcLayer(
            2,
            "sigmoid",
            "Sigmoid",
            inputs=[cell("b", "Float_32", (1, 8, 8, 2))],
            outputs=[cell("y", "uFxp_8", (1, 8, 8, 2), "APP_READ")],
            encodings={"y": ENC_Y},
        ),
    ]
    return DlcInfo(layers=layers, inputs=[], outputs=[], unconsumed=[], totals=DlcTotals())


def _feeds(n: int = 4) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(1)
    return [{"x": rng.uniform(0, 1, (1, 3, 8, 8)).astype(np.float32)} for _ in range(n)]


def _qdq(model: onnx.ModelProto) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """tensor (Q input, or the graph output a DQ writes) -> (scale, zero point) read from the initializers."""
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    outputs = {o.name for o in model.graph.output}
    dq_of = {n.input[0]: n for n in model.graph.node if n.op_type == "DequantizeLinear"}
    found = {}
    for q in model.graph.node:
        if q.op_type == "QuantizeLinear":
            dq = dq_of[q.output[0]]
            name = dq.output[0] if dq.output[0] in outputs else q.input[0]
            found[name] = (inits[q.input[1]], inits[q.input[2]])
    return found


def test_host_simulation_carries_exactly_the_dlc_encodings(tmp_path: Path) -> None:
    ref = _model(tmp_path / "ref.onnx")
    out = tmp_path / "sim.onnx"
    result = build_host_simulation(ref, _info(), None, _feeds(), out, "tiny")

    model = onnx.load(str(out))
    qdq = _qdq(model)
    for name, enc, dtype in (("x", ENC_X, np.uint8), ("r", ENC_R, np.uint16), ("y", ENC_Y, np.uint8)):
        scale, zp = qdq[name]
        assert scale.dtype == np.float32, name
        assert scale.item() == np.float32(enc.scale), name
        assert zp.dtype == dtype, name
        assert int(zp) == -int(enc.offset), name
    # a: absent from the DLC (fused Conv+Relu); b: float in the DLC -> no Q/DQ on either
    assert "a" not in qdq
    assert "b" not in qdq
    assert sorted(result.names("exact", "activation")) == ["r", "x", "y"]
    assert sorted(result.names("float", "activation")) == ["a", "b"]
    assert "b" in result.stripped  # the quantized Sigmoid had put a calibrated pair on its float input
    assert result.excluded_nodes == ["conv_b"]
    # weights: complete per-channel DLC encodings (HWIO axis 3 -> OIHW axis 0) used exactly; conv_b's stay float
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    dq_wa = next(n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0].startswith("wa"))
    assert next(a.i for a in dq_wa.attribute if a.name == "axis") == 0
    np.testing.assert_array_equal(inits[dq_wa.input[1]], np.array([0.01, 0.02, 0.03, 0.04], np.float32))
    np.testing.assert_array_equal(inits[dq_wa.input[2]], np.full(4, 128, np.uint8))
    assert "wb" in inits
    assert inits["wb"].dtype == np.float32
    conv_b = next(n for n in model.graph.node if n.name == "conv_b")
    assert conv_b.input[1] == "wb"
    assert conv_b.input[0] != "r"
    assert result.names("exact", "weight") == ["wa"]
    assert result.names("float", "weight") == ["wb"]
    assert result.verified == 4  # x, r, y and wa read back and equal


def test_host_simulation_values_lie_on_the_dlc_grid(tmp_path: Path) -> None:
    ref = _model(tmp_path / "ref.onnx")
    build_host_simulation(ref, _info(), None, _feeds(), tmp_path / "sim.onnx", "tiny")
    sim = OrtRunner("sim", tmp_path / "sim.onnx")
    y = sim.run(_feeds(1)[0])["y"]
    q = y / np.float32(ENC_Y.scale) - ENC_Y.offset
    np.testing.assert_allclose(q, np.round(q), atol=1e-3)
    reference = OrtRunner("ref", ref).run(_feeds(1)[0])["y"]
    assert np.abs(y - reference).max() <= 0.6 * 2**-8 + 0.02  # 8-bit output step + upstream 16-bit/weight error


def test_incomplete_per_channel_weight_encodings_fall_back_on_defaults(tmp_path: Path) -> None:
    ref = _model(tmp_path / "ref.onnx")
    result = build_host_simulation(ref, _info(weight_channels=1), None, None, tmp_path / "sim.onnx", "tiny")
    row = next(r for r in result.rows if r.tensor == "wa")
    assert row.status == "default"
    assert "1 of 4 channel" in row.reason
    assert "-d" in row.reason
    assert sorted(result.names("exact", "activation")) == ["r", "x", "y"]


def test_quantize_weights_off_keeps_every_weight_float(tmp_path: Path) -> None:
    ref = _model(tmp_path / "ref.onnx")
    out = tmp_path / "sim.onnx"
    result = build_host_simulation(ref, _info(), None, _feeds(), out, "tiny", quantize_weights=False)
    model = onnx.load(str(out))
    assert not [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0].startswith("w")]
    assert sorted(result.names("float", "weight")) == ["ba", "wa", "wb"]
    onnx.checker.check_model(model)


def test_an_offset_that_is_no_zero_point_names_tensor_expected_and_found(tmp_path: Path) -> None:
    ref = _model(tmp_path / "ref.onnx")
    with pytest.raises(ModelError, match=r"tiny: tensor 'x' .*offset 12.0 gives zero point -12.0; expected an integer"):
        build_host_simulation(ref, _info(x_offset=12.0), None, None, tmp_path / "sim.onnx", "tiny")


def test_error_split_separates_quantization_and_runtime_error(tmp_path: Path) -> None:
    ref_path = _model(tmp_path / "ref.onnx")
    build_host_simulation(ref_path, _info(), None, _feeds(), tmp_path / "sim.onnx", "tiny")
    reference = OrtRunner("ref", ref_path)
    sim = OrtRunner("sim", tmp_path / "sim.onnx")
    # A "device" that computes exactly the host simulation: no runtime error; the quantization error is all there is
    device_map = _identity_map(reference)
    exact = split_error("tiny", reference, sim, cast(Runner, _Renamed(sim)), device_map, enumerate(_feeds()))
    rows = {r.tensor: r for r in exact.rows}
    assert exact.images == 4
    assert set(rows) >= {"x", "r", "y"}
    assert rows["y"].runtime.sqnr_db_mean == math.inf
    assert 20 < rows["y"].quant.sqnr_db_mean < 60
    assert exact.runtime_dominated() == []
    # A "device" that is the FP32 reference: its runtime error is the quantization error again (same SQNR)
    fp32 = split_error("tiny", reference, sim, reference, device_map, enumerate(_feeds()))
    for r in fp32.rows:
        if math.isfinite(r.quant.sqnr_db_mean):
            assert abs(r.runtime.sqnr_db_mean - r.quant.sqnr_db_mean) < 0.5, r.tensor
    files = write_error_split(exact, tmp_path / "report")
    with files[0].open() as fh:
        table = list(csv.DictReader(fh))
    assert tuple(table[0]) == ERROR_SPLIT_COLUMNS
    assert {row["tensor"] for row in table} == set(rows)
    summary = json.loads(files[1].read_text())
    assert summary["runtime_dominated"] == []
    assert summary["images"] == 4


def _identity_map(reference: OrtRunner) -> list[TensorMatch]:
    return [TensorMatch(t, t.name, "name") for t in reference.graph().tensors]


class _Renamed:
    """The host simulation as a 'device': tensors under their reference names (what consumers read)."""

    def __init__(self, sim: OrtRunner) -> None:
        self.name = "device"
        self._sim = sim

    def graph(self) -> GraphTensors:
        return self._sim.graph()

    def run_all(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = self._sim.run_all(feed)
        renames = self._sim.graph().dequantized
        out = dict(values)
        for src, dq in renames.items():
            if dq in values:
                out[src] = values[dq]
        return out


def test_symmetric_sfxp_encodings_become_signed_onnx_types(tmp_path: Path) -> None:
    """QAIRT 2.3x symmetric tensors (``sFxp_8``, offset 0) are int8 with zero point 0, not uint8."""
    info = _info()
    sym_y = Encoding(8, -1.0, 127 / 128, 1 / 128, 0.0)
    sigmoid = info.layers[2]
    sigmoid.outputs[0] = DlcTensor("y", "sFxp_8", (1, 8, 8, 2), "APP_READ")
    sigmoid.encodings["y"] = sym_y
    out = tmp_path / "sim.onnx"
    result = build_host_simulation(_model(tmp_path / "m.onnx"), info, None, _feeds(), out, "tiny")
    assert "y" in result.exact
    scale, zero_point = _qdq(onnx.load(str(out)))["y"]
    assert zero_point.dtype == np.int8
    assert int(zero_point) == 0
    assert float(scale) == pytest.approx(1 / 128)
    assert result.verified >= 1


def test_a_signed_encoding_with_an_offset_outside_int8_is_refused(tmp_path: Path) -> None:
    info = _info()
    info.layers[2].outputs[0] = DlcTensor("y", "sFxp_8", (1, 8, 8, 2), "APP_READ")
    info.layers[2].encodings["y"] = Encoding(8, 0.0, 1.0, 1 / 255, 200.0)
    with pytest.raises(ModelError, match=r"zero point -200.0; expected an integer in \[-128, 127\] for a signed"):
        build_host_simulation(_model(tmp_path / "m.onnx"), info, None, _feeds(), tmp_path / "s.onnx", "tiny")
