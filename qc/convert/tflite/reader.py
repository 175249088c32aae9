"""The TFLite flatbuffer reader: the few schema tables a float model needs, read with ``flatbuffers.table.Table``
(no generated schema code), into :class:`TfliteModel`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import flatbuffers
import numpy as np
import numpy.typing as npt
from flatbuffers import number_types as nt

from qc.errors import ModelError

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
SAME, VALID = 0, 1
ACTIVATIONS = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH", 5: "SIGN_BIT"}


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
