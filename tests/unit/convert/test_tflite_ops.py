"""qc's TFLite converter, operator by operator, against the LiteRT runtime on hand-built flatbuffers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
import pytest
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from qc.convert.tflite import convert_tflite, read_tflite
from qc.errors import ModelError
from tests.unit.convert.tflite_writer import TfliteWriter

F32 = npt.NDArray[np.float32]
RNG = np.random.default_rng(0)
SAME, VALID = 0, 1
NONE, RELU6 = 0, 3


def _rand(*shape: int) -> F32:
    return RNG.standard_normal(shape).astype(np.float32)


def _litert(path: Path, feeds: list[F32]) -> list[F32]:
    it = Interpreter(
        model_path=str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    )
    it.allocate_tensors()
    for d, x in zip(it.get_input_details(), feeds, strict=True):
        it.set_tensor(d["index"], x)
    it.invoke()
    return [np.array(it.get_tensor(d["index"])) for d in it.get_output_details()]


def _onnx(path: Path, feeds: list[F32], input_layout: str) -> list[F32]:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs: dict[str, Any] = {}
    for i, x in zip(sess.get_inputs(), feeds, strict=True):
        inputs[i.name] = x.transpose(0, 3, 1, 2) if x.ndim == 4 and input_layout == "NCHW" else x
    return [np.asarray(v) for v in sess.run(None, inputs)]


def check(tmp_path: Path, w: TfliteWriter, inputs: list[int], outputs: list[int], atol: float = 2e-5) -> None:
    """Both runtimes on random inputs, for both input layouts; outputs compared in TFLite layout."""
    src = tmp_path / "m.tflite"
    src.write_bytes(w.build(inputs, outputs))
    feeds = [_rand(*w.tensors[i][1]) for i in inputs]
    want = _litert(src, feeds)
    for layout in ("NCHW", "NHWC"):
        out = tmp_path / f"m_{layout}.onnx"
        convert_tflite(src, out, input_layout=layout, output_layout="NCHW")
        got = _onnx(out, feeds, layout)
        for g, r in zip(got, want, strict=True):
            g = g.transpose(0, 2, 3, 1) if g.ndim == 4 else g
            assert g.shape == r.shape
            np.testing.assert_allclose(g, r, atol=atol, rtol=1e-5)


def conv_opts(padding: int, stride: int, act: int, dilation: int = 1) -> tuple[str, list[tuple[int, str, Any]]]:
    return "Conv2DOptions", [(0, "int8", padding), (1, "int32", stride), (2, "int32", stride), (3, "int8", act),
                             (4, "int32", dilation), (5, "int32", dilation)]  # fmt: skip


def test_conv_same_stride_two_odd_sizes_bias_relu6(tmp_path: Path) -> None:
    w = TfliteWriter()
    x = w.tensor([1, 7, 9, 3])
    y = w.tensor([1, 4, 5, 4])
    w.op("CONV_2D", [x, w.const(_rand(4, 3, 3, 3)), w.const(_rand(4))], [y], conv_opts(SAME, 2, RELU6))
    check(tmp_path, w, [x], [y])


def test_conv_valid_dilated_and_grouped(tmp_path: Path) -> None:
    w = TfliteWriter()
    x = w.tensor([1, 9, 9, 4])
    y = w.tensor([1, 5, 5, 6])
    w.op("CONV_2D", [x, w.const(_rand(6, 3, 3, 4)), w.const(_rand(6))], [y], conv_opts(VALID, 1, NONE, 2))
    z = w.tensor([1, 5, 5, 4])
    w.op("CONV_2D", [y, w.const(_rand(4, 1, 1, 3)), w.const(_rand(4))], [z], conv_opts(SAME, 1, NONE))  # 2 groups
    check(tmp_path, w, [x], [z])


def test_depthwise_with_multiplier(tmp_path: Path) -> None:
    w = TfliteWriter()
    x = w.tensor([1, 8, 8, 3])
    y = w.tensor([1, 4, 4, 6])
    opts = ("DepthwiseConv2DOptions", [(0, "int8", SAME), (1, "int32", 2), (2, "int32", 2), (3, "int32", 2),
                                       (4, "int8", NONE), (5, "int32", 1), (6, "int32", 1)])  # fmt: skip
    w.op("DEPTHWISE_CONV_2D", [x, w.const(_rand(1, 3, 3, 6)), w.const(_rand(6))], [y], opts)
    check(tmp_path, w, [x], [y])


def test_pad_and_pools(tmp_path: Path) -> None:
    w = TfliteWriter()
    x = w.tensor([1, 7, 7, 2])
    p = w.tensor([1, 8, 10, 2])
    w.op("PAD", [x, w.const([[0, 0], [1, 0], [1, 2], [0, 0]], np.int32)], [p])
    m = w.tensor([1, 4, 5, 2])
    pool = [(0, "int8", SAME), (1, "int32", 2), (2, "int32", 2), (3, "int32", 3), (4, "int32", 3), (5, "int8", NONE)]
    w.op("MAX_POOL_2D", [p], [m], ("Pool2DOptions", pool))
    a = w.tensor([1, 2, 3, 2])
    w.op("AVERAGE_POOL_2D", [m], [a], ("Pool2DOptions", pool))
    check(tmp_path, w, [x], [m, a])


@pytest.mark.parametrize(("align", "half"), [(False, True), (True, False), (False, False)])
def test_resize_bilinear_and_nearest(tmp_path: Path, align: bool, half: bool) -> None:
    w = TfliteWriter()
    x = w.tensor([1, 5, 6, 2])
    y = w.tensor([1, 10, 12, 2])
    size = w.const([10, 12], np.int32)
    w.op("RESIZE_BILINEAR", [x, size], [y], ("ResizeBilinearOptions", [(2, "bool", align), (3, "bool", half)]))
    z = w.tensor([1, 10, 12, 2])
    w.op("RESIZE_NEAREST_NEIGHBOR", [x, size], [z], ("ResizeNearestNeighborOptions", [(0, "bool", align),
                                                                                      (1, "bool", half)]))  # fmt: skip
    check(tmp_path, w, [x], [y, z])


def test_elementwise_with_broadcast_constants(tmp_path: Path) -> None:
    w = TfliteWriter()
    x = w.tensor([1, 4, 5, 3])
    a = w.tensor([1, 4, 5, 3])
    w.op("ADD", [x, w.const(_rand(3))], [a], ("AddOptions", [(0, "int8", RELU6)]))
    m = w.tensor([1, 4, 5, 3])
    w.op("MUL", [a, x], [m], ("MulOptions", [(0, "int8", NONE)]))
    s = w.tensor([1, 4, 5, 3])
    w.op("SUB", [w.const(_rand(1, 4, 1, 3)), m], [s], ("SubOptions", [(0, "int8", NONE)]))
    t = w.tensor([1, 4, 5, 3])
    w.op("LOGISTIC", [s], [t])
    h = w.tensor([1, 4, 5, 3])
    w.op("HARD_SWISH", [t], [h])
    check(tmp_path, w, [x], [h])


def test_concat_reshape_fully_connected_softmax_mean(tmp_path: Path) -> None:
    w = TfliteWriter()
    x = w.tensor([1, 4, 4, 3])
    c = w.tensor([1, 4, 4, 5])
    w.op("CONCATENATION", [x, w.const(_rand(1, 4, 4, 2))], [c], ("ConcatenationOptions", [(0, "int32", 3)]))
    c2 = w.tensor([1, 8, 4, 5])
    w.op("CONCATENATION", [c, c], [c2], ("ConcatenationOptions", [(0, "int32", 1)]))
    r = w.tensor([1, 160])
    w.op("RESHAPE", [c2, w.const([1, 160], np.int32)], [r])
    f = w.tensor([1, 7])
    w.op("FULLY_CONNECTED", [r, w.const(_rand(7, 160)), w.const(_rand(7))], [f], ("FullyConnectedOptions",
                                                                                  [(0, "int8", NONE)]))  # fmt: skip
    s = w.tensor([1, 7])
    w.op("SOFTMAX", [f], [s], ("SoftmaxOptions", [(0, "float32", 1.0)]))
    mean = w.tensor([1, 5])
    w.op("MEAN", [c2, w.const([1, 2], np.int32)], [mean], ("ReducerOptions", [(0, "bool", False)]))
    back = w.tensor([1, 2, 2, 40])
    w.op("RESHAPE", [c2, w.const([1, 2, 2, 40], np.int32)], [back])
    check(tmp_path, w, [x], [s, mean, back], atol=1e-4)


def test_float16_and_int8_constant_weights_are_folded(tmp_path: Path) -> None:
    w = TfliteWriter()
    x = w.tensor([1, 6, 6, 3])
    half = w.const(_rand(4, 3, 3, 3), np.float16)
    half_f = w.tensor([4, 3, 3, 3])
    w.op("DEQUANTIZE", [half], [half_f])
    y = w.tensor([1, 6, 6, 4])
    w.op("CONV_2D", [x, half_f, w.const(_rand(4))], [y], conv_opts(SAME, 1, NONE))
    q = RNG.integers(-127, 128, size=(2, 1, 1, 4)).astype(np.int8)
    q_t = w.tensor([2, 1, 1, 4], q, quant=([0.01, 0.02], [0, 0], 0))
    q_f = w.tensor([2, 1, 1, 4])
    w.op("DEQUANTIZE", [q_t], [q_f])
    z = w.tensor([1, 6, 6, 2])
    w.op("CONV_2D", [y, q_f, w.const(_rand(2))], [z], conv_opts(SAME, 1, NONE))
    check(tmp_path, w, [x], [z])
    onnx_inits = {i.data_type for i in onnx.load(str(tmp_path / "m_NCHW.onnx")).graph.initializer}
    assert onnx_inits <= {1, 7}  # float32 weights, int64 shapes: no float16 left


def test_reader_sees_tensors_and_operators(tmp_path: Path) -> None:
    w = TfliteWriter()
    x = w.tensor([1, 2, 2, 1])
    y = w.tensor([1, 2, 2, 1])
    w.op("TANH", [x], [y])
    path = tmp_path / "t.tflite"
    path.write_bytes(w.build([x], [y]))
    m = read_tflite(path)
    assert [t.shape for t in m.tensors] == [(1, 2, 2, 1), (1, 2, 2, 1)]
    assert [op.name for op in m.operators] == ["TANH"]
    assert m.inputs == (0,)
    assert m.outputs == (1,)


def test_errors_name_the_file_and_operator(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\x00" * 16)
    with pytest.raises(ModelError, match="not a TFLite flatbuffer"):
        read_tflite(bad)
    w = TfliteWriter()
    x = w.tensor([1, 4, 4, 3])
    y = w.tensor([1, 4, 4, 3])
    w.op("CUSTOM", [x], [y], custom="Convolution2DTransposeBias")
    src = tmp_path / "custom.tflite"
    src.write_bytes(w.build([x], [y]))
    with pytest.raises(ModelError, match=r"custom\.tflite: operator #0 CUSTOM\(Convolution2DTransposeBias\) is not"):
        convert_tflite(src, tmp_path / "custom.onnx")
    w = TfliteWriter()
    x = w.tensor([1, 4, 4, 3])
    y = w.tensor([1, 4, 4, 3], dtype=np.int8)
    w.op("LOGISTIC", [x], [y])
    src = tmp_path / "quant.tflite"
    src.write_bytes(w.build([x], [y]))
    with pytest.raises(ModelError, match="only float32 activations"):
        convert_tflite(src, tmp_path / "quant.onnx")
