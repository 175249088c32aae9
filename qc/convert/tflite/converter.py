"""TFLite operators to ONNX nodes: :class:`Converter` walks the operators in order, keeps rank-4 activations in
NCHW and transposes back to NHWC where an operator depends on the memory order (see :mod:`qc.convert.tflite`).

One method per supported builtin (:meth:`Converter.convert_op` dispatches by builtin code), sharing the layout state.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

from qc.convert.tflite.reader import (
    ACTIVATIONS,
    BUILTIN_NAMES,
    SAME,
    FbTable,
    TfliteModel,
    TfliteOperator,
    TfliteTensor,
)
from qc.errors import ModelError

Layout = Literal["NCHW", "NHWC"]
_OPSET = 14  # HardSwish; Pad and Clip with tensor inputs; ReduceMean with an axes attribute
_NHWC_TO_NCHW = (0, 3, 1, 2)
_NCHW_TO_NHWC = (0, 2, 3, 1)


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


class Converter:
    """One model's conversion state: the ONNX nodes and initializers made so far, and each TFLite tensor's ONNX
    value (name, rank, layout) or folded constant."""

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
        kind = ACTIVATIONS.get(code, str(code))
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
        if padding == SAME:
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
        ph, pw = (_same_pads(in_h, fh, sh, 1), _same_pads(in_w, fw, sw, 1)) if padding == SAME else ((0, 0), (0, 0))
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
