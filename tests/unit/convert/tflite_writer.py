"""A tiny TFLite flatbuffer writer for tests: builds one-subgraph float models op by op (schema field order of
tensorflow/lite/schema/schema.fbs), so that qc's converter can be checked against the LiteRT runtime."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import flatbuffers
import numpy as np
import numpy.typing as npt

# BuiltinOperator codes and BuiltinOptions union indices used by the tests
OPS = {
    "ADD": 0, "AVERAGE_POOL_2D": 1, "CONCATENATION": 2, "CONV_2D": 3, "DEPTHWISE_CONV_2D": 4, "DEQUANTIZE": 6,
    "FULLY_CONNECTED": 9, "LOGISTIC": 14, "MAX_POOL_2D": 17, "MUL": 18, "RELU6": 21, "RESHAPE": 22,
    "RESIZE_BILINEAR": 23, "SOFTMAX": 25, "TANH": 28, "CUSTOM": 32, "PAD": 34, "MEAN": 40, "SUB": 41,
    "RESIZE_NEAREST_NEIGHBOR": 97, "HARD_SWISH": 117,
}  # fmt: skip
OPTIONS = {
    "Conv2DOptions": 1, "DepthwiseConv2DOptions": 2, "Pool2DOptions": 5, "FullyConnectedOptions": 8,
    "SoftmaxOptions": 9, "ConcatenationOptions": 10, "AddOptions": 11, "ResizeBilinearOptions": 15,
    "ReshapeOptions": 17, "MulOptions": 21, "ReducerOptions": 27, "SubOptions": 28,
    "ResizeNearestNeighborOptions": 74,
}  # fmt: skip
TYPES = {np.dtype(np.float32): 0, np.dtype(np.float16): 1, np.dtype(np.int32): 2, np.dtype(np.int8): 9}

# (field index, kind, value); kinds: int8, int32, bool, float32
Field = tuple[int, str, Any]


@dataclass
class _Op:
    code: int
    inputs: list[int]
    outputs: list[int]
    options: tuple[str, list[Field]] | None
    custom: str = ""


@dataclass
class TfliteWriter:
    tensors: list[tuple[str, list[int], int, int, tuple[list[float], list[int], int] | None]] = field(
        default_factory=list
    )
    buffers: list[bytes] = field(default_factory=lambda: [b""])
    ops: list[_Op] = field(default_factory=list)

    def tensor(
        self,
        shape: list[int],
        data: npt.NDArray[Any] | None = None,
        *,
        dtype: Any = np.float32,
        quant: tuple[list[float], list[int], int] | None = None,
    ) -> int:
        buffer = 0
        code = TYPES[np.dtype(dtype if data is None else data.dtype)]
        if data is not None:
            self.buffers.append(np.ascontiguousarray(data).astype(data.dtype.newbyteorder("<")).tobytes())
            buffer = len(self.buffers) - 1
        self.tensors.append((f"t{len(self.tensors)}", list(shape), code, buffer, quant))
        return len(self.tensors) - 1

    def const(self, value: npt.ArrayLike, dtype: Any = np.float32) -> int:
        arr = np.asarray(value, dtype=dtype)
        return self.tensor(list(arr.shape), arr)

    def op(
        self,
        name: str,
        inputs: list[int],
        outputs: list[int],
        options: tuple[str, list[Field]] | None = None,
        custom: str = "",
    ) -> None:
        self.ops.append(_Op(OPS[name], inputs, outputs, options, custom))

    def build(self, inputs: list[int], outputs: list[int]) -> bytes:
        b = flatbuffers.Builder(1024)
        b.ForceDefaults(True)  # write every given field, even when it equals the schema default

        def ints(values: list[int]) -> int:
            return int(b.CreateNumpyVector(np.asarray(values, dtype=np.int32)))

        def offsets(items: list[int]) -> int:
            b.StartVector(4, len(items), 4)
            for o in reversed(items):
                b.PrependUOffsetTRelative(o)
            return int(b.EndVector())

        buffer_offs = []
        for data in self.buffers:
            vec = None
            if data:
                b.StartVector(1, len(data), 16)
                b.head = b.head - len(data)
                b.Bytes[b.head : b.head + len(data)] = data
                vec = b.EndVector()
            b.StartObject(3)
            if vec is not None:
                b.PrependUOffsetTRelativeSlot(0, vec, 0)
            buffer_offs.append(b.EndObject())
        codes: list[tuple[int, str]] = []
        for op in self.ops:
            if (op.code, op.custom) not in codes:
                codes.append((op.code, op.custom))
        code_offs = []
        for code, custom in codes:
            cname = b.CreateString(custom) if custom else None
            b.StartObject(4)
            b.PrependInt8Slot(0, min(code, 127), 0)
            if cname is not None:
                b.PrependUOffsetTRelativeSlot(1, cname, 0)
            b.PrependInt32Slot(2, 1, 0)
            b.PrependInt32Slot(3, code, 0)
            code_offs.append(b.EndObject())
        tensor_offs = []
        for name, shape, code, buffer, quant in self.tensors:
            n, s = b.CreateString(name), ints(shape)
            q = None
            if quant is not None:
                scale = b.CreateNumpyVector(np.asarray(quant[0], np.float32))
                zp = b.CreateNumpyVector(np.asarray(quant[1], np.int64))
                b.StartObject(7)
                b.PrependUOffsetTRelativeSlot(2, scale, 0)
                b.PrependUOffsetTRelativeSlot(3, zp, 0)
                b.PrependInt32Slot(6, quant[2], 0)
                q = b.EndObject()
            b.StartObject(5)
            b.PrependUOffsetTRelativeSlot(0, s, 0)
            b.PrependInt8Slot(1, code, 0)
            b.PrependUint32Slot(2, buffer, 0)
            b.PrependUOffsetTRelativeSlot(3, n, 0)
            if q is not None:
                b.PrependUOffsetTRelativeSlot(4, q, 0)
            tensor_offs.append(b.EndObject())
        op_offs = []
        for op in self.ops:
            opt = None
            if op.options is not None:
                fields = op.options[1]
                b.StartObject(max([f[0] for f in fields], default=0) + 1)
                for index, kind, value in fields:
                    if kind == "int8":
                        b.PrependInt8Slot(index, value, 0)
                    elif kind == "int32":
                        b.PrependInt32Slot(index, value, 0)
                    elif kind == "bool":
                        b.PrependBoolSlot(index, value, False)
                    else:
                        b.PrependFloat32Slot(index, value, 0.0)
                opt = b.EndObject()
            ins, outs = ints(op.inputs), ints(op.outputs)
            b.StartObject(5)
            b.PrependUint32Slot(0, codes.index((op.code, op.custom)), 0)
            b.PrependUOffsetTRelativeSlot(1, ins, 0)
            b.PrependUOffsetTRelativeSlot(2, outs, 0)
            if opt is not None and op.options is not None:
                b.PrependUint8Slot(3, OPTIONS[op.options[0]], 0)
                b.PrependUOffsetTRelativeSlot(4, opt, 0)
            op_offs.append(b.EndObject())
        tv, iv, ov, pv = offsets(tensor_offs), ints(inputs), ints(outputs), offsets(op_offs)
        sname = b.CreateString("main")
        b.StartObject(5)
        b.PrependUOffsetTRelativeSlot(0, tv, 0)
        b.PrependUOffsetTRelativeSlot(1, iv, 0)
        b.PrependUOffsetTRelativeSlot(2, ov, 0)
        b.PrependUOffsetTRelativeSlot(3, pv, 0)
        b.PrependUOffsetTRelativeSlot(4, sname, 0)
        sg = b.EndObject()
        cv, sv, bv = offsets(code_offs), offsets([sg]), offsets(buffer_offs)
        desc = b.CreateString("qc test model")
        b.StartObject(5)
        b.PrependUint32Slot(0, 3, 0)
        b.PrependUOffsetTRelativeSlot(1, cv, 0)
        b.PrependUOffsetTRelativeSlot(2, sv, 0)
        b.PrependUOffsetTRelativeSlot(3, desc, 0)
        b.PrependUOffsetTRelativeSlot(4, bv, 0)
        b.Finish(b.EndObject(), file_identifier=b"TFL3")
        return bytes(b.Output())
