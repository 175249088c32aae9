"""The DLC's tensors as ``snpe-dlc-info`` describes them, and the raw files that carry them to and from the device.

* :func:`index_dlc` - dlc-info's layers and I/O tables as tensor specs (dims in the DLC layout, data type,
  encoding), the activation inputs of each producer, and a :class:`qc.runners.base.GraphTensors`.
* :func:`write_inputs` - raw input files and ``input_list.txt``: float32, or with native I/O the input's native type
  (``uFxp_8`` -> uint8, ``sFxp_8`` -> int8 ...) quantized with its encoding.
* :func:`read_output` - one ``Result_<i>/<tensor>.raw`` checked against shape x dtype (never a partial file),
  dequantized (``real = scale * (q + offset)``) and returned in the ONNX layout.
"""

from __future__ import annotations

import math
import posixpath
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qc.errors import DataError, DeviceError, ModelError
from qc.runners.base import GraphTensors, TensorInfo
from qc.snpe.parsers import DlcInfo, Encoding

__all__ = [
    "NATIVE_DTYPES",
    "DlcIndex",
    "Plan",
    "TensorSpec",
    "as_read",
    "debug_folders",
    "dequantize",
    "index_dlc",
    "is_quantized",
    "quantize",
    "raw_name",
    "read_output",
    "to_device",
    "write_inputs",
]

NATIVE_DTYPES: dict[str, type[np.generic]] = {
    "uFxp_8": np.uint8,
    "uFxp_16": np.uint16,
    "uFxp_32": np.uint32,
    "Fxp_8": np.int8,
    "Fxp_16": np.int16,
    "Fxp_32": np.int32,
    "sFxp_8": np.int8,  # symmetric (QAIRT 2.3x): signed, offset 0
    "sFxp_16": np.int16,
    "sFxp_32": np.int32,
    "Float_16": np.float16,
    "Float_32": np.float32,
    "Int_8": np.int8,
    "Int_16": np.int16,
    "Int_32": np.int32,
    "Int_64": np.int64,
    "uInt_8": np.uint8,
    "uInt_16": np.uint16,
    "uInt_32": np.uint32,
    "uInt_64": np.uint64,
}
"""``snpe-dlc-info`` data types -> the numpy type of their native files (``--use_native_*_files``)."""


def is_quantized(dtype: str | None) -> bool:
    return dtype is not None and "Fxp" in dtype


def _range(dtype: type[np.generic]) -> tuple[int, int]:
    info = np.iinfo(dtype)  # type: ignore[type-var]
    return int(info.min), int(info.max)


def quantize(x: np.ndarray, encoding: Encoding, dtype: type[np.generic]) -> np.ndarray:
    """Float values -> fixed point of ``dtype`` with ``real = scale * (q + offset)`` (rounded, clipped)."""
    if encoding.scale <= 0 or not math.isfinite(encoding.scale):
        raise DataError(f"encoding scale {encoding.scale} cannot quantize (it must be a positive number)")
    lo, hi = _range(dtype)
    q = np.round(x.astype(np.float64) / encoding.scale - encoding.offset)
    return np.clip(q, lo, hi).astype(dtype)


def dequantize(q: np.ndarray, encoding: Encoding) -> np.ndarray:
    """Fixed point -> float32: ``real = scale * (q + offset)`` (``offset`` is negative or zero in SNPE)."""
    return (encoding.scale * (q.astype(np.float64) + encoding.offset)).astype(np.float32)


def raw_name(tensor: str) -> str | None:
    """``/model.24/Reshape_1_output_0`` -> ``model.24/Reshape_1_output_0.raw`` (None if it would leave the folder)."""
    rel = posixpath.normpath(tensor.lstrip("/") + ".raw")
    if rel.startswith("../") or rel == ".." or rel.startswith("/") or "\x00" in rel:
        return None
    return rel


@dataclass(frozen=True)
class TensorSpec:
    """What dlc-info says about one tensor."""

    name: str
    dims: tuple[int, ...]
    dtype: str | None
    encoding: Encoding | None

    @property
    def elements(self) -> int:
        return int(np.prod(self.dims, dtype=np.int64)) if self.dims else 1


@dataclass(frozen=True)
class Plan:
    """One tensor to write or read: the DLC tensor, its permutation to the ONNX layout, the key it goes under."""

    key: str
    tensor: TensorSpec
    permutation: tuple[int, ...]


@dataclass(frozen=True)
class DlcIndex:
    tensors: dict[str, TensorSpec]
    producer_inputs: dict[str, list[str]]
    """Output tensor -> the activation (non-static) inputs of the layer producing it."""
    graph: GraphTensors


def index_dlc(info: DlcInfo) -> DlcIndex:
    """Every tensor dlc-info lists, in layer order; the I/O tables' type and encoding win over the layer cells'."""
    tensors: dict[str, TensorSpec] = {}
    inputs: dict[str, tuple[int, ...]] = {}
    infos: list[TensorInfo] = []
    producers: dict[str, list[str]] = {}

    def add(name: str, dims: tuple[int, ...] | None, dtype: str | None, op: str, node: str) -> None:
        if name in tensors:
            return
        tensors[name] = TensorSpec(name, tuple(dims or ()), dtype, info.encoding_of(name))
        infos.append(TensorInfo(len(infos), name, op, node, tuple(dims) if dims is not None else None, "float32"))

    for io in info.inputs:
        inputs[io.name] = tuple(io.dims or ())
        add(io.name, io.dims, io.dtype, "Input", "")
    for layer in info.layers:
        for cell in layer.inputs:
            if cell.is_network_input and cell.name not in inputs:
                inputs[cell.name] = tuple(cell.dims or ())
                add(cell.name, cell.dims, cell.dtype, "Input", "")
    for layer in info.layers:
        activations = [c.name for c in layer.inputs if (c.tensor_type or "").upper() != "STATIC"]
        for cell in layer.outputs:
            if cell.name not in tensors:
                producers[cell.name] = activations
            add(cell.name, cell.dims, cell.dtype, layer.type, layer.name)
    outputs = [io.name for io in info.outputs]
    if not outputs:
        outputs = [c.name for layer in info.layers for c in layer.outputs if (c.tensor_type or "") == "APP_READ"]
    for io in info.outputs:
        old = tensors.get(io.name)
        dims = tuple(io.dims) if io.dims is not None else (old.dims if old else ())
        tensors[io.name] = TensorSpec(
            io.name, dims, io.dtype or (old.dtype if old else None), io.encoding or (old.encoding if old else None)
        )
    for io in info.inputs:
        old = tensors[io.name]
        tensors[io.name] = TensorSpec(io.name, old.dims, io.dtype or old.dtype, io.encoding or old.encoding)
    graph = GraphTensors(inputs=dict(inputs), outputs=tuple(outputs), tensors=tuple(infos))
    return DlcIndex(tensors, producers, graph)


def to_device(who: str, plan: Plan, array: np.ndarray, *, native: bool) -> np.ndarray:
    """An input array (ONNX layout) as the file qc writes: the DLC layout, float32 or the native type."""
    inverse = tuple(int(i) for i in np.argsort(plan.permutation))
    data = np.ascontiguousarray(np.transpose(array, inverse))
    if tuple(data.shape) != plan.tensor.dims:
        raise DataError(
            f"{who}: input {plan.key!r} of shape {list(array.shape)} becomes {list(data.shape)} in the "
            f"DLC layout, but DLC input {plan.tensor.name!r} has dims {list(plan.tensor.dims)}."
        )
    if not native:
        return data.astype("<f4")
    dtype = plan.tensor.dtype or "Float_32"
    np_type = NATIVE_DTYPES.get(dtype)
    if np_type is None:
        raise ModelError(f"{who}: DLC input {plan.tensor.name!r} has data type {dtype}, unknown to qc.")
    if is_quantized(dtype):
        if plan.tensor.encoding is None:
            raise ModelError(
                f"{who}: DLC input {plan.tensor.name!r} is {dtype} but snpe-dlc-info shows no encoding "
                "for it; set native_io: false."
            )
        return quantize(data, plan.tensor.encoding, np_type)
    return data.astype(np.dtype(np_type).newbyteorder("<"))


def as_read(plan: Plan, data: np.ndarray, *, native: bool) -> np.ndarray:
    """A written input as the network reads it (native: dequantized), in the ONNX layout."""
    encoding = plan.tensor.encoding
    if native and is_quantized(plan.tensor.dtype) and encoding is not None:
        values = dequantize(data, encoding)
    else:
        values = data.astype(np.float32)
    return np.ascontiguousarray(np.transpose(values, plan.permutation))


def write_inputs(
    who: str,
    folder: Path,
    plans: Sequence[Plan],
    feeds: Sequence[Mapping[str, np.ndarray]],
    *,
    native: bool,
    repeat: int = 1,
) -> list[dict[str, np.ndarray]]:
    """Write the raw input files and ``input_list.txt`` (each line ``repeat`` times); return, per image, what was
    written (DLC layout). Paths are relative, so a remote root with spaces cannot break SNPE's list."""
    (folder / "inputs").mkdir(parents=True, exist_ok=True)
    lines = []
    written: list[dict[str, np.ndarray]] = []
    for j, feed in enumerate(feeds):
        parts = []
        values: dict[str, np.ndarray] = {}
        for k, plan in enumerate(plans):
            if plan.key not in feed:
                raise DataError(f"{who}: no value for model input {plan.key!r} (got {sorted(feed)}).")
            data = to_device(who, plan, np.asarray(feed[plan.key]), native=native)
            rel = f"inputs/{j:05d}_{k}.raw"
            data.tofile(folder / rel)
            values[plan.tensor.name] = data
            parts.append(rel if len(plans) == 1 else f"{plan.tensor.name}:={rel}")
        lines.append(" ".join(parts))
        written.append(values)
    lines = [line for line in lines for _ in range(repeat)]
    (folder / "input_list.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return written


def _dims_text(dims: Sequence[int]) -> str:
    return "x".join(str(d) for d in dims) or "scalar"


def read_output(
    who: str, folder: Path, plan: Plan, *, image: int, native: bool, required: bool, label: str
) -> np.ndarray | None:
    """``Result_<image>/<tensor>.raw`` (or ``<tensor>_native.raw``) as float32 in the ONNX layout."""
    tensor = plan.tensor
    dtype_name = (tensor.dtype or "Float_32") if native else "Float_32"
    np_type = NATIVE_DTYPES.get(dtype_name)
    if np_type is None:
        raise ModelError(f"{who}: DLC tensor {tensor.name!r} has data type {dtype_name}, unknown to qc.")
    itemsize = np.dtype(np_type).itemsize
    expected = tensor.elements * itemsize
    rel = raw_name(tensor.name)
    if rel is None:
        raise DeviceError(f"{who}: DLC tensor name {tensor.name!r} does not map to a file inside Result_*.")
    names = [rel, rel[: -len(".raw")] + "_native.raw"] if native else [rel]
    path = next((folder / n for n in names if (folder / n).is_file()), None)
    if path is None:
        if not required:
            return None
        raise DeviceError(
            f"{who}: snpe-net-run on {label} wrote no file for output {tensor.name!r} of image {image}: "
            f"expected {folder.name}/{names[0]} ({expected} bytes = {_dims_text(tensor.dims)} x {dtype_name})."
        )
    size = path.stat().st_size
    if size != expected:
        raise DeviceError(
            f"{who}: {folder.name}/{path.name if '/' not in rel else rel} from snpe-net-run on {label} has "
            f"{size} bytes; tensor {tensor.name!r} of dims {_dims_text(tensor.dims)} as {dtype_name} needs "
            f"{expected}. A partial or mis-shaped file is never accepted."
        )
    data = np.fromfile(path, dtype=np.dtype(np_type).newbyteorder("<")).reshape(tensor.dims)
    if native and is_quantized(dtype_name):
        if tensor.encoding is None:
            raise ModelError(
                f"{who}: output {tensor.name!r} is {dtype_name} but snpe-dlc-info shows no encoding to "
                "dequantize it with; set native_io: false."
            )
        values = dequantize(data, tensor.encoding)
    else:
        values = data.astype(np.float32)
    return np.ascontiguousarray(np.transpose(values, plan.permutation))


def debug_folders(tensors: Iterable[str], images: int) -> list[str]:
    """``out/Result_<i>/<dir>`` for every DLC tensor name with a ``/`` (relative to the batch folder)."""
    rels = [rel for rel in (raw_name(t) for t in tensors) if rel is not None and "/" in rel]
    return sorted({posixpath.join("out", f"Result_{j}", posixpath.dirname(rel)) for j in range(images) for rel in rels})
