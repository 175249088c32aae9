"""The tensor table of a QNN context binary, from ``qnn-context-binary-utility --context_binary x.bin --json_file
x.json``: each graph's inputs and outputs with data type, dimensions and quantization (``quantizeParams``).

Layout of the JSON (from public scripts that read it; several releases):

* the graphs are ``info.graphs`` (a top-level ``graphs`` is accepted too), each ``{"info": {"graphName": ...,
  "graphInputs": [...], "graphOutputs": [...]}}`` (an unwrapped graph record is accepted);
* a tensor is ``{"version": "QNN_TENSOR_VERSION_1", "info": {"name", "dataType", "dimensions",
  "quantizeParams", ...}}`` (unwrapped accepted); ``dataType`` is a ``QNN_DATATYPE_*`` name;
* ``quantizeParams.quantizationEncoding`` is ``QNN_QUANTIZATION_ENCODING_SCALE_OFFSET`` with the scale and offset
  under ``scaleOffsetEncoding`` (QNN 2.1x-2.4x) or ``scaleOffset`` (reported for 2.48), or
  ``QNN_QUANTIZATION_ENCODING_UNDEFINED`` for float tensors. Per-axis encodings are read as "per-axis" and
  cannot be used for graph I/O files (qc refuses them with the tensor's name).

QNN's convention: ``real = scale * (q + offset)``, so ``offset = -zero_point`` (as SNPE's). Only
:class:`ContextInfoError` (a :class:`ParseError`) escapes the parser.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from qc.errors import ParseError

__all__ = [
    "QNN_DTYPES",
    "ContextGraph",
    "ContextInfo",
    "ContextInfoError",
    "ContextTensor",
    "parse_context_json",
]

TOOL = "qnn-context-binary-utility JSON"

QNN_DTYPES: dict[str, type[np.generic]] = {
    "QNN_DATATYPE_FLOAT_32": np.float32,
    "QNN_DATATYPE_FLOAT_16": np.float16,
    "QNN_DATATYPE_UFIXED_POINT_8": np.uint8,
    "QNN_DATATYPE_UFIXED_POINT_16": np.uint16,
    "QNN_DATATYPE_UFIXED_POINT_32": np.uint32,
    "QNN_DATATYPE_SFIXED_POINT_8": np.int8,
    "QNN_DATATYPE_SFIXED_POINT_16": np.int16,
    "QNN_DATATYPE_SFIXED_POINT_32": np.int32,
    "QNN_DATATYPE_INT_8": np.int8,
    "QNN_DATATYPE_INT_16": np.int16,
    "QNN_DATATYPE_INT_32": np.int32,
    "QNN_DATATYPE_INT_64": np.int64,
    "QNN_DATATYPE_UINT_8": np.uint8,
    "QNN_DATATYPE_UINT_16": np.uint16,
    "QNN_DATATYPE_UINT_32": np.uint32,
    "QNN_DATATYPE_UINT_64": np.uint64,
    "QNN_DATATYPE_BOOL_8": np.uint8,
}
"""QNN data types -> the numpy type of their native files (``--use_native_input_files/--use_native_output_files``)."""

_SCALE_OFFSET = "QNN_QUANTIZATION_ENCODING_SCALE_OFFSET"
_UNDEFINED = ("QNN_QUANTIZATION_ENCODING_UNDEFINED", "", None)


class ContextInfoError(ParseError):
    """The context binary's JSON could not be read."""


@dataclass(frozen=True)
class ContextTensor:
    name: str
    dtype: str  # QNN_DATATYPE_*
    dims: tuple[int, ...]
    encoding: str  # "none", "scale_offset", "per-axis" or the QNN name of another encoding
    scale: float | None = None
    offset: int | None = None

    @property
    def quantized(self) -> bool:
        return "FIXED_POINT" in self.dtype

    @property
    def numpy_type(self) -> type[np.generic]:
        return QNN_DTYPES[self.dtype]

    @property
    def elements(self) -> int:
        return int(np.prod(self.dims, dtype=np.int64)) if self.dims else 1


@dataclass(frozen=True)
class ContextGraph:
    name: str
    inputs: tuple[ContextTensor, ...]
    outputs: tuple[ContextTensor, ...]


@dataclass(frozen=True)
class ContextInfo:
    graphs: tuple[ContextGraph, ...]

    def graph(self, name: str | None = None) -> ContextGraph:
        """The graph called ``name``, or the only graph when ``name`` is None."""
        if name is None:
            if len(self.graphs) != 1:
                names = [g.name for g in self.graphs]
                raise ContextInfoError(f"{TOOL}: expected one graph, found {len(self.graphs)} ({names}); name one.")
            return self.graphs[0]
        for graph in self.graphs:
            if graph.name == name:
                return graph
        raise ContextInfoError(f"{TOOL}: no graph {name!r} (graphs: {[g.name for g in self.graphs]}).")


def _unwrap(item: Any) -> Any:
    if isinstance(item, dict) and isinstance(item.get("info"), dict):
        return item["info"]
    return item


def _tensor(raw: Any, where: str) -> ContextTensor:
    info = _unwrap(raw)
    if not isinstance(info, dict):
        raise ContextInfoError(f"{TOOL}: {where}: expected a tensor object, found {type(info).__name__}.")
    name = info.get("name")
    if not isinstance(name, str) or not name:
        raise ContextInfoError(f"{TOOL}: {where}: tensor without a 'name' string.")
    where = f"{where} {name!r}"
    dtype = info.get("dataType")
    if not isinstance(dtype, str) or dtype not in QNN_DTYPES:
        raise ContextInfoError(
            f"{TOOL}: {where}: dataType {dtype!r} is not a QNN data type qc knows ({', '.join(sorted(QNN_DTYPES))})."
        )
    dims_raw = info.get("dimensions")
    if not isinstance(dims_raw, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and 0 < d < 2**31 for d in dims_raw
    ):
        raise ContextInfoError(f"{TOOL}: {where}: dimensions {dims_raw!r} are not a list of positive integers.")
    dims = tuple(int(d) for d in dims_raw)
    if len(dims) > 8 or int(np.prod(dims, dtype=np.float64)) > 2**34:
        raise ContextInfoError(f"{TOOL}: {where}: dimensions {list(dims)} are implausibly large.")
    quant = info.get("quantizeParams") or {}
    if not isinstance(quant, dict):
        raise ContextInfoError(f"{TOOL}: {where}: quantizeParams is {type(quant).__name__}, expected an object.")
    kind = quant.get("quantizationEncoding")
    if kind in _UNDEFINED:
        if "FIXED_POINT" in dtype:
            raise ContextInfoError(f"{TOOL}: {where}: {dtype} without a quantization encoding.")
        return ContextTensor(name, dtype, dims, "none")
    if kind != _SCALE_OFFSET:
        label = "per-axis" if isinstance(kind, str) and "AXIS" in kind else str(kind)
        return ContextTensor(name, dtype, dims, label)
    so = quant.get("scaleOffsetEncoding") or quant.get("scaleOffset")
    if not isinstance(so, dict):
        raise ContextInfoError(
            f"{TOOL}: {where}: {_SCALE_OFFSET} without 'scaleOffsetEncoding' or 'scaleOffset' (found keys "
            f"{sorted(quant)})."
        )
    scale, offset = so.get("scale"), so.get("offset")
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not math.isfinite(scale) or scale <= 0:
        raise ContextInfoError(f"{TOOL}: {where}: scale {scale!r} is not a positive finite number.")
    if isinstance(offset, bool) or not isinstance(offset, int | float) or not float(offset).is_integer():
        raise ContextInfoError(f"{TOOL}: {where}: offset {offset!r} is not an integer.")
    if abs(offset) > 2**32:
        raise ContextInfoError(f"{TOOL}: {where}: offset {offset!r} is out of range.")
    return ContextTensor(name, dtype, dims, "scale_offset", float(scale), int(offset))


def _tensors(graph: dict[str, Any], key: str, where: str) -> tuple[ContextTensor, ...]:
    items = graph.get(key)
    if items is None:
        return ()
    if not isinstance(items, list):
        raise ContextInfoError(f"{TOOL}: {where}: '{key}' is {type(items).__name__}, expected a list.")
    return tuple(_tensor(item, f"{where} {key}[{k}]") for k, item in enumerate(items))


def parse_context_json(text: str) -> ContextInfo:
    """Parse the JSON text ``qnn-context-binary-utility`` writes."""
    if not isinstance(text, str):
        raise ContextInfoError(f"{TOOL}: expected text, found {type(text).__name__}.")
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ContextInfoError(f"{TOOL}: not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ContextInfoError(f"{TOOL}: expected a JSON object at the top, found {type(data).__name__}.")
    info = data.get("info")
    graphs = info.get("graphs") if isinstance(info, dict) else None
    if graphs is None:
        graphs = data.get("graphs")
    if not isinstance(graphs, list) or not graphs:
        raise ContextInfoError(f"{TOOL}: no 'info.graphs' list (top-level keys: {sorted(data)[:10]}).")
    out = []
    for k, raw in enumerate(graphs):
        graph = _unwrap(raw)
        if not isinstance(graph, dict):
            raise ContextInfoError(f"{TOOL}: graphs[{k}] is {type(graph).__name__}, expected an object.")
        name = graph.get("graphName")
        if not isinstance(name, str):
            raise ContextInfoError(f"{TOOL}: graphs[{k}] has no 'graphName' string.")
        where = f"graph {name!r}"
        inputs, outputs = _tensors(graph, "graphInputs", where), _tensors(graph, "graphOutputs", where)
        if not inputs or not outputs:
            raise ContextInfoError(f"{TOOL}: {where}: lists no graphInputs or no graphOutputs.")
        out.append(ContextGraph(name, inputs, outputs))
    return ContextInfo(tuple(out))
