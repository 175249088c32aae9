"""``qnn-net-run`` on a context binary: the command line, the raw input files and their list, the output files.

* Command line (QNN SDK ``qnn-net-run --help`` and public scripts that drive it): ``qnn-net-run --retrieve_context
  <bin> --backend libQnnHtp.so --input_list <list> --output_dir <dir> [--use_native_input_files
  --use_native_output_files] [--profiling_level basic|detailed] [--perf_profile <p>]``. ``--debug`` ("output from all
  layers") "can not be used when loading a saved context through --retrieve_context": a context binary yields its
  graph outputs only.
* Inputs: one raw file per tensor, in the context's layout and type: float32 by default, the tensor's own type with
  ``--use_native_input_files`` (fixed point quantized with the context's ``quantizeParams``); the list has one line
  per inference, a bare path for a one-input graph, ``<tensor>:=<path>`` items otherwise; paths are relative to the
  working folder, so a remote root with spaces cannot split a line.
* Outputs: ``<output_dir>/Result_<i>/<name>.raw`` (float32) or ``<name>_native.raw`` (the tensor's type), ``<name>``
  the tensor's name made a C identifier (:mod:`qc.qnn.names`). Every file's size is checked against dims x type
  before it is read; fixed point is dequantized as ``real = scale * (q + offset)``.
* Layout: a context made by QNN's converters has NHWC image tensors, one exported by onnxruntime's QNN EP keeps the
  ONNX layout (the EP transposes inside the graph). ``io_layout: auto`` decides per tensor from its dimensions and
  refuses to guess when both readings fit (e.g. a 1x3x3x3 tensor).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qc.errors import DataError, DeviceError, ModelError
from qc.qnn.context_info import ContextTensor
from qc.qnn.names import output_file_candidates, same_tensor

__all__ = [
    "IoPlan",
    "dequantize",
    "match_tensors",
    "net_run_argv",
    "quantize",
    "read_output",
    "resolve_layout",
    "write_inputs",
]

NCHW_FROM_NHWC = (0, 3, 1, 2)


@dataclass(frozen=True)
class IoPlan:
    """One graph input or output: its ONNX name, the context tensor, the axis permutation context -> ONNX layout."""

    key: str
    tensor: ContextTensor
    permutation: tuple[int, ...]


def quantize(x: np.ndarray, scale: float, offset: int, dtype: type[np.generic]) -> np.ndarray:
    """Float -> fixed point with ``real = scale * (q + offset)`` (rounded, clipped to ``dtype``)."""
    info = np.iinfo(dtype)  # type: ignore[type-var]
    q = np.round(x.astype(np.float64) / scale - offset)
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, scale: float, offset: int) -> np.ndarray:
    """Fixed point -> float32, ``real = scale * (q + offset)``."""
    return (scale * (q.astype(np.float64) + offset)).astype(np.float32)


def resolve_layout(
    who: str, onnx_name: str, onnx_shape: Sequence[int | str], tensor: ContextTensor, io_layout: str
) -> tuple[int, ...]:
    """The permutation taking the context tensor to the ONNX layout (refusing mismatched or ambiguous shapes)."""
    dims = tensor.dims
    rank = len(dims)
    identity = tuple(range(rank))
    shape = tuple(onnx_shape)

    def fits(perm: tuple[int, ...]) -> bool:
        if len(shape) != rank:
            return False
        moved = tuple(dims[p] for p in perm)
        return all(not isinstance(s, int) or s == m for s, m in zip(shape, moved, strict=True))

    if not shape:  # the model does not say: only an explicit io_layout can decide a 4-D tensor
        if rank != 4 or io_layout == "onnx":
            return identity
        if io_layout == "nhwc":
            return NCHW_FROM_NHWC
        raise ModelError(
            f"{who}: the model does not give the shape of {onnx_name!r}, so the layout of context tensor "
            f"{tensor.name!r} (dims {list(dims)}) cannot be decided; set io_layout: onnx or nhwc in the target."
        )
    if rank != 4:
        if fits(identity):
            return identity
        raise ModelError(
            f"{who}: context tensor {tensor.name!r} has dims {list(dims)}, the model's {onnx_name!r} has shape "
            f"{list(shape)}."
        )
    if io_layout == "onnx":
        candidates = [identity]
    elif io_layout == "nhwc":
        candidates = [NCHW_FROM_NHWC]
    else:
        candidates = [identity, NCHW_FROM_NHWC]
    fitting = [p for p in candidates if fits(p)]
    if not fitting:
        raise ModelError(
            f"{who}: context tensor {tensor.name!r} has dims {list(dims)}; the model's {onnx_name!r} has shape "
            f"{list(shape)}: they match in none of the layouts tried (io_layout: {io_layout}; auto tries the "
            "ONNX layout and NHWC)."
        )
    if len(fitting) > 1:
        raise ModelError(
            f"{who}: context tensor {tensor.name!r} with dims {list(dims)} fits the model's {onnx_name!r} "
            f"{list(shape)} both as the ONNX layout and as NHWC; set io_layout: onnx or nhwc in the target."
        )
    return fitting[0]


def match_tensors(
    who: str,
    wanted: Mapping[str, Sequence[int | str]],
    tensors: Sequence[ContextTensor],
    io_layout: str,
    what: str,
) -> list[IoPlan]:
    """Plan every ONNX ``what`` ("input"/"output") onto the context tensor of the same name (verbatim or identifier)."""
    plans = []
    for name, shape in wanted.items():
        found = [t for t in tensors if same_tensor(name, t.name)]
        if len(found) != 1:
            listed = ", ".join(repr(t.name) for t in tensors)
            reason = "none" if not found else "several"
            raise ModelError(
                f"{who}: the model {what} {name!r} matches {reason} of the context's graph {what}s ({listed}) by name "
                "(verbatim or as a C identifier)."
            )
        plans.append(IoPlan(name, found[0], resolve_layout(who, name, shape, found[0], io_layout)))
    return plans


def net_run_argv(
    context: str,
    *,
    backend: str,
    native: bool,
    profiling: str | None = None,
    perf_profile: str | None = None,
    input_list: str = "input_list.txt",
    output_dir: str = "out",
) -> list[str]:
    argv = [
        "qnn-net-run",
        "--retrieve_context",
        context,
        "--backend",
        backend,
        "--input_list",
        input_list,
        "--output_dir",
        output_dir,
    ]
    if native:
        argv += ["--use_native_input_files", "--use_native_output_files"]
    if profiling is not None:
        argv += ["--profiling_level", profiling]
    if perf_profile is not None:
        argv += ["--perf_profile", perf_profile]
    return argv


def _to_file(who: str, plan: IoPlan, array: np.ndarray, *, native: bool) -> np.ndarray:
    inverse = tuple(int(i) for i in np.argsort(plan.permutation))
    data = np.ascontiguousarray(np.transpose(np.asarray(array), inverse))
    tensor = plan.tensor
    if tuple(data.shape) != tensor.dims:
        raise DataError(
            f"{who}: input {plan.key!r} of shape {list(array.shape)} becomes {list(data.shape)} in the context layout, "
            f"but context input {tensor.name!r} has dims {list(tensor.dims)}."
        )
    if not native or tensor.dtype == "QNN_DATATYPE_FLOAT_32":
        return data.astype("<f4")
    np_type = tensor.numpy_type
    if tensor.quantized:
        if tensor.encoding != "scale_offset" or tensor.scale is None or tensor.offset is None:
            raise ModelError(
                f"{who}: context input {tensor.name!r} is {tensor.dtype} with a {tensor.encoding} encoding, which qc "
                "cannot quantize a file with; set native_io: false."
            )
        return quantize(data, tensor.scale, tensor.offset, np_type).astype(np.dtype(np_type).newbyteorder("<"))
    return data.astype(np.dtype(np_type).newbyteorder("<"))


def write_inputs(
    who: str,
    folder: Path,
    plans: Sequence[IoPlan],
    feeds: Sequence[Mapping[str, np.ndarray]],
    *,
    native: bool,
    repeat: int = 1,
) -> str:
    """Write ``inputs/*.raw`` and ``input_list.txt`` into ``folder`` (each line ``repeat`` times); return the list."""
    (folder / "inputs").mkdir(parents=True, exist_ok=True)
    lines = []
    for j, feed in enumerate(feeds):
        parts = []
        for k, plan in enumerate(plans):
            if plan.key not in feed:
                raise DataError(f"{who}: no value for model input {plan.key!r} (got {sorted(feed)}).")
            rel = f"inputs/{j:05d}_{k}.raw"
            _to_file(who, plan, feed[plan.key], native=native).tofile(folder / rel)
            parts.append(rel if len(plans) == 1 else f"{plan.tensor.name}:={rel}")
        lines.append(" ".join(parts))
    text = "\n".join(line for line in lines for _ in range(repeat)) + "\n"
    (folder / "input_list.txt").write_text(text, encoding="utf-8")
    return text


def read_output(who: str, folder: Path, plan: IoPlan, *, image: int, native: bool, label: str) -> np.ndarray:
    """``Result_<image>/<name>[_native].raw`` as float32 in the ONNX layout (size-checked, dequantized)."""
    tensor = plan.tensor
    candidates: list[tuple[str, type[np.generic]]] = []
    if native:
        candidates += [(n, tensor.numpy_type) for n in output_file_candidates(tensor.name, native=True)]
    candidates += [(n, np.float32) for n in output_file_candidates(tensor.name, native=False)]
    found = next(((folder / n, t) for n, t in candidates if (folder / n).is_file()), None)
    if found is None:
        raise DeviceError(
            f"{who}: qnn-net-run on {label} wrote no file for output {tensor.name!r} (model output {plan.key!r}) of "
            f"input {image}: expected {folder.name}/{candidates[0][0]}; the folder holds "
            f"{sorted(p.name for p in folder.iterdir())[:10] if folder.is_dir() else 'nothing (missing)'}."
        )
    path, np_type = found
    expected = tensor.elements * np.dtype(np_type).itemsize
    size = path.stat().st_size
    if size != expected:
        raise DeviceError(
            f"{who}: {folder.name}/{path.name} from qnn-net-run on {label} has {size} bytes; context tensor "
            f"{tensor.name!r} of dims {list(tensor.dims)} as {np.dtype(np_type).name} needs {expected}. A partial or "
            "mis-shaped file is never accepted."
        )
    data = np.fromfile(path, dtype=np.dtype(np_type).newbyteorder("<")).reshape(tensor.dims)
    if np_type is not np.float32 and tensor.quantized:
        if tensor.encoding != "scale_offset" or tensor.scale is None or tensor.offset is None:
            raise ModelError(
                f"{who}: context output {tensor.name!r} is {tensor.dtype} with a {tensor.encoding} encoding, which qc "
                "cannot dequantize; set native_io: false."
            )
        values = dequantize(data, tensor.scale, tensor.offset)
    else:
        values = data.astype(np.float32)
    if not np.all(np.isfinite(values)) and tensor.quantized:
        raise DeviceError(f"{who}: output {tensor.name!r} of input {image} holds non-finite values.")
    return np.ascontiguousarray(np.transpose(values, plan.permutation))
