"""Convert a float TFLite flatbuffer to ONNX with numpy, the ``flatbuffers`` runtime and onnx only.

The reader (:func:`read_tflite`) decodes the few TFLite schema tables a float model needs (Model, SubGraph,
Tensor, Buffer, Operator, OperatorCode, QuantizationParameters and the builtin options of the supported
operators) straight from the flatbuffer with ``flatbuffers.table.Table``: no generated schema code.

Layout: TFLite activations are NHWC; the ONNX graph keeps every rank-4 activation in NCHW (ONNX's native
layout, what Conv/Pool/Resize expect), with kernels permuted at conversion time. Operators whose meaning
depends on the memory order (RESHAPE, FULLY_CONNECTED, SOFTMAX, MEAN, rank-changing elementwise ops) see their
input transposed back to NHWC first and their rank-4 result transposed to NCHW again, so that values are
exactly those of TFLite. The graph input is NCHW by default (``input_layout="NHWC"`` keeps TFLite's shape);
rank-4 graph outputs are NCHW by default (``output_layout="NHWC"`` keeps TFLite's shapes). Names of graph
inputs and outputs are the TFLite ones.

Constant weights stored as float16 or as int8/uint8 with quantization parameters (DEQUANTIZE of a constant) are
folded to float32 initializers. Models with quantized activations and custom operators are rejected with a
:class:`qc.errors.ModelError` naming the operator.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import flatbuffers
import numpy as np
import numpy.typing as npt
import onnx
from flatbuffers import number_types as nt
from onnx import TensorProto, helper, numpy_helper

from qc.errors import ModelError

Layout = Literal["NCHW", "NHWC"]
_OPSET = 14  # HardSwish; Pad and Clip with tensor inputs; ReduceMean with an axes attribute

# --- schema constants (tensorflow/lite/schema/schema.fbs) ----------------------------------------------------
_TENSOR_TYPES: dict[int, Any] = {
    0: np.float32,
    1: np.float16,
    2: np.int32,
    3: np.uint8,
    4: np.int64,
    6: np.bool_,
    7: np.int16,
    9: np.int8,
    10: np.float64,
}
_TYPE_NAMES = {0: "FLOAT32", 1: "FLOAT16", 2: "INT32", 3: "UINT8", 4: "INT64", 5: "STRING", 6: "BOOL", 7: "INT16",
               8: "COMPLEX64", 9: "INT8", 10: "FLOAT64"}  # fmt: skip
BUILTIN_NAMES: dict[int, str] = {
    0: "ADD", 1: "AVERAGE_POOL_2D", 2: "CONCATENATION", 3: "CONV_2D", 4: "DEPTHWISE_CONV_2D", 6: "DEQUANTIZE",
    9: "FULLY_CONNECTED", 14: "LOGISTIC", 17: "MAX_POOL_2D", 18: "MUL", 19: "RELU", 20: "RELU_N1_TO_1", 21: "RELU6",
    22: "RESHAPE", 23: "RESIZE_BILINEAR", 25: "SOFTMAX", 28: "TANH", 32: "CUSTOM", 34: "PAD", 39: "TRANSPOSE",
    40: "MEAN", 41: "SUB", 42: "DIV", 47: "EXP", 51: "DELEGATE", 55: "MAXIMUM", 57: "MINIMUM", 60: "PADV2",
    97: "RESIZE_NEAREST_NEIGHBOR", 98: "LEAKY_RELU", 114: "QUANTIZE", 117: "HARD_SWISH",
}  # fmt: skip
_SAME, _VALID = 0, 1
_ACTIVATIONS = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH", 5: "SIGN_BIT"}
_NHWC_TO_NCHW = (0, 3, 1, 2)
_NCHW_TO_NHWC = (0, 2, 3, 1)


# --- flatbuffer reading --------------------------------------------------------------------------------------
class FbTable:
    """A flatbuffer table with typed accessors by field index (the schema's declaration order)."""

    def __init__(self, buf: bytes | bytearray | memoryview, pos: int) -> None:
        self._t = flatbuffers.table.Table(buf, pos)

    def _off(self, field_index: int) -> int:
        return int(self._t.Offset(4 + 2 * field_index))

    def has(self, field_index: int) -> bool:
        return self._off(field_index) != 0

    def _scalar(self, field_index: int, flags: Any, default: Any) -> Any:
        o = self._off(field_index)
        return self._t.Get(flags, o + self._t.Pos) if o else default

    def int8(self, field_index: int, default: int = 0) -> int:
        return int(self._scalar(field_index, nt.Int8Flags, default))

    def uint8(self, field_index: int, default: int = 0) -> int:
        return int(self._scalar(field_index, nt.Uint8Flags, default))

    def int32(self, field_index: int, default: int = 0) -> int:
        return int(self._scalar(field_index, nt.Int32Flags, default))

    def uint32(self, field_index: int, default: int = 0) -> int:
        return int(self._scalar(field_index, nt.Uint32Flags, default))

    def uint64(self, field_index: int, default: int = 0) -> int:
        return int(self._scalar(field_index, nt.Uint64Flags, default))

    def float32(self, field_index: int, default: float = 0.0) -> float:
        return float(self._scalar(field_index, nt.Float32Flags, default))

    def boolean(self, field_index: int, default: bool = False) -> bool:
        return bool(self._scalar(field_index, nt.BoolFlags, default))

    def string(self, field_index: int) -> str:
        o = self._off(field_index)
        return bytes(self._t.String(o + self._t.Pos)).decode("utf-8", "replace") if o else ""

    def numbers(self, field_index: int, flags: Any) -> npt.NDArray[Any]:
        o = self._off(field_index)
        if not o:
            return np.zeros(0, dtype=flags.py_type if flags is not nt.Uint8Flags else np.uint8)
        return np.asarray(self._t.GetVectorAsNumpy(flags, o))

    def table(self, field_index: int) -> FbTable | None:
        o = self._off(field_index)
        return FbTable(self._t.Bytes, self._t.Indirect(o + self._t.Pos)) if o else None

    def tables(self, field_index: int) -> list[FbTable]:
        o = self._off(field_index)
        if not o:
            return []
        start, n = self._t.Vector(o), self._t.VectorLen(o)
        return [FbTable(self._t.Bytes, self._t.Indirect(start + 4 * k)) for k in range(n)]


@dataclass(frozen=True)
class TfliteTensor:
    index: int
    name: str
    shape: tuple[int, ...]
    type_code: int
    buffer: int
    scale: npt.NDArray[np.float32]
    zero_point: npt.NDArray[np.int64]
    quantized_dimension: int

    @property
    def type_name(self) -> str:
        return _TYPE_NAMES.get(self.type_code, str(self.type_code))


@dataclass(frozen=True)
class TfliteOperator:
    index: int
    builtin: int
    custom_code: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options: FbTable | None

    @property
    def name(self) -> str:
        if self.builtin == 32:
            return f"CUSTOM({self.custom_code})"
        return BUILTIN_NAMES.get(self.builtin, f"builtin #{self.builtin}")


@dataclass
class TfliteModel:
    """The first subgraph of a TFLite model, with its constant buffers."""

    path: str
    tensors: list[TfliteTensor]
    operators: list[TfliteOperator]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    buffers: list[bytes] = field(repr=False)
    description: str = ""

    def data(self, t: TfliteTensor) -> npt.NDArray[Any] | None:
        """The constant value of ``t`` (TFLite layout), or None when it has no buffer data."""
        raw = self.buffers[t.buffer] if 0 < t.buffer < len(self.buffers) else b""
        if not raw:
            return None
        dtype = _TENSOR_TYPES.get(t.type_code)
        if dtype is None:
            raise ModelError(f"{self.path}: constant tensor {t.name!r} has unsupported type {t.type_name}.")
        arr = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<"))
        expected = int(np.prod(t.shape)) if t.shape else 1
        if arr.size != expected:
            raise ModelError(
                f"{self.path}: constant tensor {t.name!r} has {arr.size} values in its buffer, "
                f"expected {expected} for shape {list(t.shape)}."
            )
        return arr.reshape(t.shape).astype(arr.dtype.newbyteorder("="))


def read_tflite(path: Path | str) -> TfliteModel:
    """Parse the first subgraph of a TFLite flatbuffer file."""
    p = Path(path)
    data = p.read_bytes()
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ModelError(f"{p}: not a TFLite flatbuffer (file identifier {data[4:8]!r}, expected b'TFL3').")
    root = FbTable(data, int(flatbuffers.encode.Get(flatbuffers.packer.uoffset, data, 0)))
    codes: list[tuple[int, str]] = []
    for oc in root.tables(1):
        # builtin_code (int32, field 3) replaced deprecated_builtin_code (int8, field 0) from code 127 on.
        codes.append((max(oc.int8(0), oc.int32(3)), oc.string(1)))
    subgraphs = root.tables(2)
    if not subgraphs:
        raise ModelError(f"{p}: the model has no subgraph.")
    buffers: list[bytes] = []
    for b in root.tables(4):
        raw = bytes(b.numbers(0, nt.Uint8Flags).tobytes())
        offset, size = b.uint64(1), b.uint64(2)
        if not raw and offset > 1 and size > 0:  # large models keep buffers after the flatbuffer
            if offset + size > len(data):
                raise ModelError(f"{p}: a buffer points past the end of the file ({offset}+{size} > {len(data)}).")
            raw = data[offset : offset + size]
        buffers.append(raw)
    sg = subgraphs[0]
    tensors: list[TfliteTensor] = []
    for i, t in enumerate(sg.tables(0)):
        q = t.table(4)
        tensors.append(
            TfliteTensor(
                index=i,
                name=t.string(3),
                shape=tuple(int(v) for v in t.numbers(0, nt.Int32Flags)),
                type_code=t.int8(1),
                buffer=t.uint32(2),
                scale=q.numbers(2, nt.Float32Flags).astype(np.float32) if q else np.zeros(0, np.float32),
                zero_point=q.numbers(3, nt.Int64Flags).astype(np.int64) if q else np.zeros(0, np.int64),
                quantized_dimension=q.int32(6) if q else 0,
            )
        )
    operators: list[TfliteOperator] = []
    for i, op in enumerate(sg.tables(3)):
        code_index = op.uint32(0)
        if code_index >= len(codes):
            raise ModelError(f"{p}: operator #{i} uses opcode index {code_index}, the model has {len(codes)}.")
        builtin, custom = codes[code_index]
        operators.append(
            TfliteOperator(
                index=i,
                builtin=builtin,
                custom_code=custom,
                inputs=tuple(int(v) for v in op.numbers(1, nt.Int32Flags)),
                outputs=tuple(int(v) for v in op.numbers(2, nt.Int32Flags)),
                options=op.table(4),
            )
        )
    return TfliteModel(
        path=str(p),
        tensors=tensors,
        operators=operators,
        inputs=tuple(int(v) for v in sg.numbers(1, nt.Int32Flags)),
        outputs=tuple(int(v) for v in sg.numbers(2, nt.Int32Flags)),
        buffers=buffers,
        description=root.string(3),
    )


# --- conversion ----------------------------------------------------------------------------------------------
@dataclass
class _Value:
    name: str
    rank: int
    nchw: bool  # a rank-4 activation stored in NCHW


def _same_pads(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TFLite SAME padding of one spatial axis: (before, after), the extra pixel after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


class _Converter:
    def __init__(self, model: TfliteModel, input_layout: Layout, output_layout: Layout) -> None:
        self.m = model
        self.input_layout = input_layout
        self.output_layout = output_layout
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.values: dict[int, _Value] = {}
        self.consts: dict[int, npt.NDArray[Any]] = {}
        self.used: set[str] = set()
        self.counter = 0

    # -- helpers
    def where(self, op: TfliteOperator) -> str:
        return f"{self.m.path}: operator #{op.index} {op.name}"

    def fresh(self, base: str) -> str:
        base = base.split(";", 1)[0] or "t"
        name, k = base, 1
        while name in self.used:
            name, k = f"{base}__{k}", k + 1
        self.used.add(name)
        return name

    def node(self, op_type: str, inputs: Sequence[str], out: str | None = None, **attrs: Any) -> str:
        out = out or self.fresh(f"{op_type.lower()}_{self.counter}")
        self.counter += 1
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=f"n{self.counter}_{op_type}", **attrs))
        return out

    def init(self, base: str, value: npt.NDArray[Any]) -> str:
        name = self.fresh(base.split(";", 1)[0] + "/const")
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def tensor(self, idx: int) -> TfliteTensor:
        return self.m.tensors[idx]

    def const(self, idx: int) -> npt.NDArray[Any] | None:
        if idx in self.consts:
            return self.consts[idx]
        if idx < 0:
            return None
        value = self.m.data(self.tensor(idx))
        if value is not None:
            self.consts[idx] = value
        return value

    def float_const(self, op: TfliteOperator, idx: int, what: str) -> npt.NDArray[np.float32]:
        value = self.const(idx)
        if value is None:
            raise ModelError(f"{self.where(op)}: the {what} ({self.tensor(idx).name!r}) must be a constant.")
        return self.dequantized(self.tensor(idx), value)

    @staticmethod
    def dequantized(t: TfliteTensor, value: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        if value.dtype.kind == "f":
            return value.astype(np.float32)
        if t.scale.size == 0:
            return value.astype(np.float32)
        shape = [1] * value.ndim
        if t.scale.size > 1:
            shape[t.quantized_dimension] = -1
        scale = t.scale.reshape(shape)
        zp = (t.zero_point if t.zero_point.size else np.zeros_like(t.scale, np.int64)).reshape(shape)
        out: npt.NDArray[np.float32] = ((value.astype(np.float64) - zp) * scale).astype(np.float32)
        return out

    def native(self, op: TfliteOperator, idx: int) -> _Value:
        """An input in the graph's storage layout; constants become initializers (rank 4 permuted)."""
        if idx in self.values:
            return self.values[idx]
        value = self.const(idx)
        if value is None:
            raise ModelError(f"{self.where(op)}: input tensor {self.tensor(idx).name!r} is produced by no operator.")
        arr = self.dequantized(self.tensor(idx), value) if value.dtype.kind in "fiu" else value
        if arr.ndim == 4:
            arr = arr.transpose(_NHWC_TO_NCHW)
        v = _Value(self.init(self.tensor(idx).name, arr), arr.ndim, arr.ndim == 4)
        self.values[idx] = v
        return v

    def tflite_layout(self, v: _Value) -> str:
        return self.node("Transpose", [v.name], perm=list(_NCHW_TO_NHWC)) if v.nchw else v.name

    def flat_order(self, idx: int, v: _Value) -> str:
        """``v`` with TFLite's element order, for a consumer that only reshapes it: an NCHW tensor whose height
        and width are 1 already has that order (no Transpose, e.g. in front of a head's final Reshape)."""
        shape = self.tensor(idx).shape
        if v.nchw and len(shape) == 4 and shape[1] == 1 and shape[2] == 1:
            return v.name
        return self.tflite_layout(v)

    def rename(self, old: str, new: str) -> None:
        """Rename tensor ``old`` to ``new`` everywhere in the nodes built so far (producer named after it)."""
        for node in self.nodes:
            for i, name in enumerate(node.output):
                if name == old:
                    node.output[i] = new
                    node.name = new
            for i, name in enumerate(node.input):
                if name == old:
                    node.input[i] = new

    def store(self, idx: int, name: str, *, in_tflite_layout: bool) -> None:
        """Record ``name`` as TFLite tensor ``idx``; a rank-4 result in TFLite layout is moved to NCHW."""
        rank = len(self.tensor(idx).shape)
        if rank == 4 and in_tflite_layout:
            name = self.node("Transpose", [name], perm=list(_NHWC_TO_NCHW))
        self.values[idx] = _Value(name, rank, rank == 4)

    def activation(self, op: TfliteOperator, x: str, code: int) -> str:
        kind = _ACTIVATIONS.get(code, str(code))
        if kind == "NONE":
            return x
        if kind == "RELU":
            return self.node("Relu", [x])
        if kind in ("RELU6", "RELU_N1_TO_1"):
            lo, hi = (0.0, 6.0) if kind == "RELU6" else (-1.0, 1.0)
            return self.node(
                "Clip",
                [x, self.init("clip_min", np.array(lo, np.float32)), self.init("clip_max", np.array(hi, np.float32))],
            )
        if kind == "TANH":
            return self.node("Tanh", [x])
        raise ModelError(f"{self.where(op)}: fused activation {kind} is not supported.")

    def opts(self, op: TfliteOperator) -> FbTable:
        if op.options is None:
            raise ModelError(f"{self.where(op)}: the operator has no builtin options; the file may be corrupt.")
        return op.options

    def spatial(self, op: TfliteOperator) -> tuple[int, int]:
        shape = self.tensor(op.inputs[0]).shape
        if len(shape) != 4:
            raise ModelError(f"{self.where(op)}: expected a rank-4 NHWC input, found shape {list(shape)}.")
        return shape[1], shape[2]

    # -- operators
    def conv(self, op: TfliteOperator, depthwise: bool) -> None:
        o = self.opts(op)
        x = self.native(op, op.inputs[0])
        w = self.float_const(op, op.inputs[1], "filter")
        in_h, in_w = self.spatial(op)
        c_in = self.tensor(op.inputs[0]).shape[3]
        if depthwise:
            padding, sw, sh, act, dw, dh = o.int8(0), o.int32(1), o.int32(2), o.int8(4), o.int32(5, 1), o.int32(6, 1)
            kh, kw, c_out = w.shape[1], w.shape[2], w.shape[3]
            kernel = w.reshape(kh, kw, c_out).transpose(2, 0, 1)[:, None]
            group = c_in
        else:
            padding, sw, sh, act, dw, dh = o.int8(0), o.int32(1), o.int32(2), o.int8(3), o.int32(4, 1), o.int32(5, 1)
            c_out, kh, kw, per_group = w.shape
            kernel = w.transpose(0, 3, 1, 2)
            if c_in % per_group:
                raise ModelError(f"{self.where(op)}: {c_in} input channels do not split into groups of {per_group}.")
            group = c_in // per_group
        if padding == _SAME:
            ph, pw = _same_pads(in_h, kh, sh, dh), _same_pads(in_w, kw, sw, dw)
        else:
            ph, pw = (0, 0), (0, 0)
        inputs = [x.name, self.init(self.tensor(op.inputs[1]).name, np.ascontiguousarray(kernel, np.float32))]
        if len(op.inputs) > 2 and op.inputs[2] >= 0:
            bias = self.float_const(op, op.inputs[2], "bias").reshape(-1)
            inputs.append(self.init(self.tensor(op.inputs[2]).name, bias))
        y = self.node(
            "Conv",
            inputs,
            kernel_shape=[kh, kw],
            strides=[sh, sw],
            dilations=[dh, dw],
            pads=[ph[0], pw[0], ph[1], pw[1]],
            group=group,
        )
        self.store(op.outputs[0], self.activation(op, y, act), in_tflite_layout=False)

    def pool(self, op: TfliteOperator, kind: str) -> None:
        o = self.opts(op)
        padding, sw, sh, fw, fh, act = o.int8(0), o.int32(1), o.int32(2), o.int32(3), o.int32(4), o.int8(5)
        in_h, in_w = self.spatial(op)
        ph, pw = (_same_pads(in_h, fh, sh, 1), _same_pads(in_w, fw, sw, 1)) if padding == _SAME else ((0, 0), (0, 0))
        attrs: dict[str, Any] = {"kernel_shape": [fh, fw], "strides": [sh, sw], "pads": [ph[0], pw[0], ph[1], pw[1]]}
        if kind == "AveragePool":
            attrs["count_include_pad"] = 0  # TFLite averages over the valid pixels only
        y = self.node(kind, [self.native(op, op.inputs[0]).name], **attrs)
        self.store(op.outputs[0], self.activation(op, y, act), in_tflite_layout=False)

    def binary(self, op: TfliteOperator, onnx_op: str, act: int) -> None:
        a_idx, b_idx = op.inputs[0], op.inputs[1]
        out_rank = len(self.tensor(op.outputs[0]).shape)
        a_const, b_const = self.const(a_idx), self.const(b_idx)
        if out_rank == 4 and (a_const is None) != (b_const is None):
            # activation (NCHW) with a constant in TFLite layout: align the constant by rank, then permute it
            c_idx = a_idx if a_const is not None else b_idx
            c_val = self.dequantized(self.tensor(c_idx), a_const if a_const is not None else b_const)  # type: ignore[arg-type]
            c4 = c_val.reshape((1,) * (4 - c_val.ndim) + c_val.shape).transpose(_NHWC_TO_NCHW)
            c_name = self.init(self.tensor(c_idx).name, np.ascontiguousarray(c4))
            x = self.native(op, a_idx if a_const is None else b_idx)
            if x.rank != 4:
                x = _Value(
                    self.node(
                        "Reshape",
                        [
                            self.tflite_layout(x),
                            self.init("shape", np.array(self.tensor(op.outputs[0]).shape, np.int64)),
                        ],
                    ),
                    4,
                    False,
                )
                x = _Value(self.node("Transpose", [x.name], perm=list(_NHWC_TO_NCHW)), 4, True)
            ins = [x.name, c_name] if a_const is None else [c_name, x.name]
            y = self.node(onnx_op, ins)
            self.store(op.outputs[0], self.activation(op, y, act), in_tflite_layout=False)
            return
        a, b = self.native(op, a_idx), self.native(op, b_idx)
        if a.nchw and b.nchw:
            y = self.node(onnx_op, [a.name, b.name])
            self.store(op.outputs[0], self.activation(op, y, act), in_tflite_layout=False)
        else:
            y = self.node(onnx_op, [self.tflite_layout(a), self.tflite_layout(b)])
            self.store(op.outputs[0], self.activation(op, y, act), in_tflite_layout=True)

    def unary(self, op: TfliteOperator, onnx_op: str, **attrs: Any) -> None:
        x = self.native(op, op.inputs[0])
        y = self.node(onnx_op, [x.name], **attrs)
        self.values[op.outputs[0]] = _Value(y, x.rank, x.nchw)

    def clip(self, op: TfliteOperator, lo: float, hi: float) -> None:
        x = self.native(op, op.inputs[0])
        lo_n, hi_n = self.init("clip_min", np.array(lo, np.float32)), self.init("clip_max", np.array(hi, np.float32))
        self.values[op.outputs[0]] = _Value(self.node("Clip", [x.name, lo_n, hi_n]), x.rank, x.nchw)

    def pad(self, op: TfliteOperator) -> None:
        x = self.native(op, op.inputs[0])
        pads = self.const(op.inputs[1])
        if pads is None:
            raise ModelError(f"{self.where(op)}: the paddings must be a constant.")
        pads = pads.astype(np.int64).reshape(-1, 2)
        if x.nchw:
            pads = pads[list(_NHWC_TO_NCHW)]
        ins = [x.name, self.init("pads", np.concatenate([pads[:, 0], pads[:, 1]]))]
        if op.builtin == 60 and len(op.inputs) > 2 and op.inputs[2] >= 0:
            ins.append(self.init("pad_value", self.float_const(op, op.inputs[2], "pad value").reshape(())))
        self.values[op.outputs[0]] = _Value(self.node("Pad", ins, mode="constant"), x.rank, x.nchw)

    def resize(self, op: TfliteOperator, bilinear: bool) -> None:
        o = self.opts(op)
        x = self.native(op, op.inputs[0])
        size = self.const(op.inputs[1])
        if size is None or not x.nchw:
            raise ModelError(f"{self.where(op)}: needs a rank-4 input and a constant size.")
        align = o.boolean(2) if bilinear else o.boolean(0)
        half = o.boolean(3) if bilinear else o.boolean(1)
        n, c = self.tensor(op.inputs[0]).shape[0], self.tensor(op.inputs[0]).shape[3]
        sizes = self.init("sizes", np.array([n, c, int(size[0]), int(size[1])], np.int64))
        if bilinear:
            mode = "align_corners" if align else ("half_pixel" if half else "asymmetric")
            attrs: dict[str, Any] = {"mode": "linear", "coordinate_transformation_mode": mode}
        elif align:
            attrs = {"mode": "nearest", "coordinate_transformation_mode": "align_corners",
                     "nearest_mode": "round_prefer_ceil"}  # fmt: skip
        else:
            mode = "tf_half_pixel_for_nn" if half else "asymmetric"
            attrs = {"mode": "nearest", "coordinate_transformation_mode": mode, "nearest_mode": "floor"}
        y = self.node("Resize", [x.name, "", "", sizes], **attrs)
        self.values[op.outputs[0]] = _Value(y, 4, True)

    def reshape(self, op: TfliteOperator) -> None:
        x = self.native(op, op.inputs[0])
        shape = np.array(self.tensor(op.outputs[0]).shape, np.int64)
        y = self.node("Reshape", [self.flat_order(op.inputs[0], x), self.init("shape", shape)])
        self.store(op.outputs[0], y, in_tflite_layout=True)

    def concat(self, op: TfliteOperator) -> None:
        o = self.opts(op)
        rank = len(self.tensor(op.outputs[0]).shape)
        axis = o.int32(0) % rank
        ins = [self.native(op, i) for i in op.inputs]
        if rank == 4:
            y = self.node("Concat", [v.name for v in ins], axis=_NHWC_TO_NCHW.index(axis))
            self.store(op.outputs[0], self.activation(op, y, o.int8(1)), in_tflite_layout=False)
        else:
            y = self.node("Concat", [self.tflite_layout(v) for v in ins], axis=axis)
            self.store(op.outputs[0], self.activation(op, y, o.int8(1)), in_tflite_layout=True)

    def fully_connected(self, op: TfliteOperator) -> None:
        o = self.opts(op)
        w = self.float_const(op, op.inputs[1], "weights")
        x = self.flat_order(op.inputs[0], self.native(op, op.inputs[0]))
        x = self.node("Reshape", [x, self.init("shape", np.array([-1, w.shape[1]], np.int64))])
        y = self.node("MatMul", [x, self.init(self.tensor(op.inputs[1]).name, np.ascontiguousarray(w.T))])
        if len(op.inputs) > 2 and op.inputs[2] >= 0:
            y = self.node(
                "Add", [y, self.init(self.tensor(op.inputs[2]).name, self.float_const(op, op.inputs[2], "bias"))]
            )
        y = self.activation(op, y, o.int8(0))
        out_shape = self.tensor(op.outputs[0]).shape
        if len(out_shape) != 2:
            y = self.node("Reshape", [y, self.init("shape", np.array(out_shape, np.int64))])
        self.store(op.outputs[0], y, in_tflite_layout=True)

    def softmax(self, op: TfliteOperator) -> None:
        beta = self.opts(op).float32(0, 1.0)
        x = self.tflite_layout(self.native(op, op.inputs[0]))
        if beta != 1.0:
            x = self.node("Mul", [x, self.init("beta", np.array(beta, np.float32))])
        self.store(op.outputs[0], self.node("Softmax", [x], axis=-1), in_tflite_layout=True)

    def mean(self, op: TfliteOperator) -> None:
        keep = self.opts(op).boolean(0)
        axes = self.const(op.inputs[1])
        if axes is None:
            raise ModelError(f"{self.where(op)}: the reduction axes must be a constant.")
        rank = len(self.tensor(op.inputs[0]).shape)
        x = self.tflite_layout(self.native(op, op.inputs[0]))
        ax = sorted({int(a) % rank for a in axes.reshape(-1)})
        self.store(op.outputs[0], self.node("ReduceMean", [x], axes=ax, keepdims=int(keep)), in_tflite_layout=True)

    def transpose(self, op: TfliteOperator) -> None:
        perm = self.const(op.inputs[1])
        if perm is None:
            raise ModelError(f"{self.where(op)}: the permutation must be a constant.")
        x = self.tflite_layout(self.native(op, op.inputs[0]))
        y = self.node("Transpose", [x], perm=[int(p) for p in perm.reshape(-1)])
        self.store(op.outputs[0], y, in_tflite_layout=True)

    def dequantize(self, op: TfliteOperator) -> None:
        value = self.const(op.inputs[0])
        if value is None:
            raise ModelError(
                f"{self.where(op)}: dequantizes an activation ({self.tensor(op.inputs[0]).name!r}); "
                "quantized TFLite models are not supported, convert the float model."
            )
        self.consts[op.outputs[0]] = self.dequantized(self.tensor(op.inputs[0]), value)

    def convert_op(self, op: TfliteOperator) -> None:
        code = op.builtin
        handlers: dict[int, Callable[[], None]] = {
            0: lambda: self.binary(op, "Add", self.opts(op).int8(0)),
            41: lambda: self.binary(op, "Sub", self.opts(op).int8(0)),
            18: lambda: self.binary(op, "Mul", self.opts(op).int8(0)),
            42: lambda: self.binary(op, "Div", self.opts(op).int8(0)),
            55: lambda: self.binary(op, "Max", 0),
            57: lambda: self.binary(op, "Min", 0),
            3: lambda: self.conv(op, depthwise=False),
            4: lambda: self.conv(op, depthwise=True),
            17: lambda: self.pool(op, "MaxPool"),
            1: lambda: self.pool(op, "AveragePool"),
            14: lambda: self.unary(op, "Sigmoid"),
            28: lambda: self.unary(op, "Tanh"),
            47: lambda: self.unary(op, "Exp"),
            19: lambda: self.unary(op, "Relu"),
            117: lambda: self.unary(op, "HardSwish"),
            98: lambda: self.unary(op, "LeakyRelu", alpha=self.opts(op).float32(0)),
            21: lambda: self.clip(op, 0.0, 6.0),
            20: lambda: self.clip(op, -1.0, 1.0),
            34: lambda: self.pad(op),
            60: lambda: self.pad(op),
            23: lambda: self.resize(op, bilinear=True),
            97: lambda: self.resize(op, bilinear=False),
            22: lambda: self.reshape(op),
            2: lambda: self.concat(op),
            9: lambda: self.fully_connected(op),
            25: lambda: self.softmax(op),
            40: lambda: self.mean(op),
            39: lambda: self.transpose(op),
            6: lambda: self.dequantize(op),
        }
        handler = handlers.get(code)
        if handler is None:
            supported = ", ".join(sorted(BUILTIN_NAMES[c] for c in handlers))
            raise ModelError(f"{self.where(op)} is not supported by qc's TFLite converter (supported: {supported}).")
        for idx in op.outputs:
            t = self.tensor(idx)
            if t.type_code != 0 and code != 6:
                raise ModelError(
                    f"{self.where(op)}: output {t.name!r} is {t.type_name}; only float32 activations are supported "
                    "(quantized TFLite models are not)."
                )
        mark = len(self.nodes)
        handler()
        # name each op's result after its TFLite tensor (first part of a fused name), not the generated one
        produced = {o: k for k in range(mark, len(self.nodes)) for o in self.nodes[k].output}
        for idx in op.outputs:
            v = self.values.get(idx)
            if v is None or v.name not in produced:
                continue
            new = self.fresh(self.tensor(idx).name)
            self.rename(v.name, new)
            v.name = new

    def run(self, graph_name: str) -> onnx.ModelProto:
        graph_inputs: list[onnx.ValueInfoProto] = []
        self.used.update(self.tensor(idx).name for idx in self.m.outputs)  # kept for the graph outputs
        for idx in self.m.inputs:
            t = self.tensor(idx)
            if t.type_code != 0:
                raise ModelError(
                    f"{self.m.path}: input {t.name!r} is {t.type_name}; only float32 inputs are supported."
                )
            shape = list(t.shape)
            self.used.add(t.name)
            if len(shape) == 4 and self.input_layout == "NCHW":
                graph_inputs.append(
                    helper.make_tensor_value_info(t.name, TensorProto.FLOAT, [shape[i] for i in _NHWC_TO_NCHW])
                )
                self.values[idx] = _Value(t.name, 4, True)
            else:
                graph_inputs.append(helper.make_tensor_value_info(t.name, TensorProto.FLOAT, shape))
                self.values[idx] = _Value(t.name, len(shape), False)
                if len(shape) == 4:
                    self.store(idx, t.name, in_tflite_layout=True)
        for op in self.m.operators:
            self.convert_op(op)
        graph_outputs: list[onnx.ValueInfoProto] = []
        produced = {o for n in self.nodes for o in n.output}
        for idx in self.m.outputs:
            t = self.tensor(idx)
            if idx not in self.values:
                raise ModelError(f"{self.m.path}: output {t.name!r} is produced by no converted operator.")
            v = self.values[idx]
            src = self.tflite_layout(v) if self.output_layout == "NHWC" else v.name
            shape = list(t.shape)
            if v.nchw and self.output_layout == "NCHW":
                shape = [shape[i] for i in _NHWC_TO_NCHW]
            if src in produced:  # the producing node writes the graph output itself (no extra Identity)
                self.rename(src, t.name)
                produced.discard(src)
            else:  # a graph input, or a tensor already renamed to another output
                self.nodes.append(helper.make_node("Identity", [src], [t.name], name=f"output_{t.name}"))
            graph_outputs.append(helper.make_tensor_value_info(t.name, TensorProto.FLOAT, shape))
        graph = helper.make_graph(self.nodes, graph_name, graph_inputs, graph_outputs, self.inits)
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", _OPSET)], producer_name="qc.convert.tflite"
        )
        model.ir_version = 8
        onnx.checker.check_model(model)
        return model


def tflite_to_onnx(
    model: TfliteModel, *, input_layout: Layout = "NCHW", output_layout: Layout = "NCHW"
) -> onnx.ModelProto:
    """The ONNX model of a parsed TFLite model (see the module docstring for layouts and names)."""
    for layout, what in ((input_layout, "input_layout"), (output_layout, "output_layout")):
        if layout not in ("NCHW", "NHWC"):
            raise ModelError(f"tflite_to_onnx: {what} must be 'NCHW' or 'NHWC', got {layout!r}.")
    if not model.operators:
        raise ModelError(f"{model.path}: the subgraph has no operator.")
    return _Converter(model, input_layout, output_layout).run(Path(model.path).stem or "tflite")


def convert_tflite(
    tflite_path: Path, out_path: Path, *, input_layout: Layout = "NCHW", output_layout: Layout = "NCHW"
) -> onnx.ModelProto:
    """Convert the TFLite file ``tflite_path`` to an ONNX file at ``out_path``; returns the ONNX model."""
    model = tflite_to_onnx(read_tflite(tflite_path), input_layout=input_layout, output_layout=output_layout)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out_path))
    return model
