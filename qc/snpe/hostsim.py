"""Host simulation of a DLC: the reference ONNX quantized with exactly the DLC's encodings, and the error split.

:func:`build_host_simulation` quantizes the FP32 reference with onnxruntime's ``quantize_static`` (QDQ) and passes
every activation encoding that ``snpe-dlc-info`` printed as a ``TensorQuantOverrides`` entry
(``{"quant_type": QUInt8|QUInt16, "scale": float32, "zero_point": -offset}``; SNPE's ``real = scale * (q + offset)``
is ONNX's ``real = scale * (q - zero_point)``). DLC tensor names are mapped to ONNX names with the runner's tensor
map (exact or normalised names), falling back on the same name rules for tensors whose layout was undecided (an
encoding is per tensor, the layout does not matter for it). What each tensor becomes:

* ``exact``: a DLC encoding, used as is (activations; weights with a per-tensor encoding, or per-channel
  encodings for *every* channel, i.e. ``snpe-dlc-info -d``). The pair is inserted by qc when onnxruntime does not
  quantize that tensor itself (an op it does not quantize, read only by such ops).
* ``default``: quantized by onnxruntime's defaults: weights whose dlc-info shows only channel 0 of a per-channel
  encoding (symmetric int8 per channel, the same scheme as ``--use_per_channel_quantization``), int32 biases
  (scale = input scale x weight scale), activations the DLC quantizes with an encoding qc could not use.
* ``float``: left in float: tensors the DLC keeps in float (their producing node is excluded from quantization)
  and ONNX tensors absent from the DLC (fused or folded by the converter, e.g. a Conv output before its Relu: the
  device never rounds it), whose Q/DQ pair is removed again after quantization.

The built model is checked afterwards: every ``exact`` tensor's scale and zero point are read back from the QDQ
model's initializers and must equal the DLC's (float32 rounding of the printed scale), and no ``float`` tensor may
carry a Q/DQ pair; a difference is a :class:`qc.errors.ModelError` naming the tensor, expected and found.

:func:`split_error` streams each image once through the FP32 reference, the host simulation and the device and
accumulates, per tensor, the **quantization error** (host simulation vs FP32) and the **runtime error** (device vs
host simulation), with running sums only (:class:`qc.compare.metrics.MetricAccumulator`).
"""

from __future__ import annotations

import logging
import math
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from qc import jsonio
from qc.compare.matching import TensorMatch, match_qdq, normalise_tensor_name
from qc.compare.metrics import MetricAccumulator, MetricSummary, PairStats, pair_stats
from qc.errors import ConfigError, ModelError
from qc.runners.base import Runner, batch_size_of, chunks, run_all_batch
from qc.runners.ort import OrtRunner
from qc.snpe.parsers import DlcInfo, Encoding

if TYPE_CHECKING:
    from qc.pipeline import ModelStages

__all__ = [
    "ERROR_SPLIT_COLUMNS",
    "EncodingRow",
    "ErrorSplit",
    "HostSimResult",
    "HostSimRunner",
    "SplitRow",
    "build_host_simulation",
    "host_simulation_stage",
    "split_error",
    "write_error_split",
]

log = logging.getLogger("qc.snpe.hostsim")

ERROR_SPLIT_COLUMNS = (
    "index",
    "tensor",
    "op_type",
    "cosine_quant",
    "sqnr_db_quant",
    "cosine_runtime",
    "sqnr_db_runtime",
)
"""Columns of ``error_split.csv``."""

_QUANT_TYPES = {8: "QUInt8", 16: "QUInt16"}
_ZP_TYPES: dict[int, type[np.unsignedinteger[Any]]] = {8: np.uint8, 16: np.uint16}
_BIAS_OPS = {"Conv": 2, "ConvTranspose": 2, "Gemm": 2}


@dataclass(frozen=True)
class EncodingRow:
    """What the host simulation did with one ONNX tensor (activation or weight)."""

    tensor: str
    kind: str
    """``activation`` or ``weight``."""
    status: str
    """``exact``, ``default`` or ``float``."""
    dlc_tensor: str = ""
    bitwidth: int | None = None
    scale: float | None = None
    """The DLC's scale (channel 0 for per-channel encodings)."""
    zero_point: int | None = None
    """``-offset`` of the DLC encoding."""
    channels: int | None = None
    reason: str = ""


@dataclass
class HostSimResult:
    """The host simulation model and what each tensor got."""

    entry: str
    model: Path
    rows: list[EncodingRow] = field(default_factory=list)
    inserted: list[str] = field(default_factory=list)
    """Exact tensors whose Q/DQ pair qc inserted (onnxruntime did not quantize them)."""
    stripped: list[str] = field(default_factory=list)
    """Float tensors whose Q/DQ pair onnxruntime added and qc removed."""
    excluded_nodes: list[str] = field(default_factory=list)
    verified: int = 0
    """Scale/zero-point pairs read back from the model and found equal to the DLC's."""
    notes: list[str] = field(default_factory=list)

    def names(self, status: str, kind: str | None = None) -> list[str]:
        return [r.tensor for r in self.rows if r.status == status and (kind is None or r.kind == kind)]

    @property
    def exact(self) -> list[str]:
        return self.names("exact")

    @property
    def defaults(self) -> list[str]:
        return self.names("default")

    @property
    def floats(self) -> list[str]:
        return self.names("float")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["model"] = str(self.model)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> HostSimResult:
        return cls(
            entry=data["entry"],
            model=Path(data["model"]),
            rows=[EncodingRow(**r) for r in data["rows"]],
            inserted=list(data["inserted"]),
            stripped=list(data["stripped"]),
            excluded_nodes=list(data["excluded_nodes"]),
            verified=int(data["verified"]),
            notes=list(data["notes"]),
        )


# ----------------------------------------------------------------------------------------------------------------
# DLC side: encodings, types and names


@dataclass(frozen=True)
class _DlcTensors:
    encodings: dict[str, Encoding]
    dtypes: dict[str, str | None]
    static: set[str]

    def lookup(self, onnx_name: str, mapped: Mapping[str, str], *, static: bool) -> str | None:
        """The DLC tensor of an ONNX tensor: the tensor map's target, the same name, or the unique normalised one."""
        pool = self.static if static else set(self.dtypes) - self.static
        if not static and onnx_name in mapped:
            return mapped[onnx_name]
        if onnx_name in pool:
            return onnx_name
        norm = normalise_tensor_name(onnx_name)
        hits = [n for n in pool if normalise_tensor_name(n) == norm]
        return hits[0] if len(hits) == 1 else None


def _dlc_tensors(info: DlcInfo) -> _DlcTensors:
    encodings: dict[str, Encoding] = {}
    dtypes: dict[str, str | None] = {}
    static: set[str] = set()
    for layer in info.layers:
        encodings.update({k: v for k, v in layer.encodings.items() if k not in encodings})
        for cell in (*layer.inputs, *layer.outputs):
            if (cell.tensor_type or "").upper() == "STATIC":
                static.add(cell.name)
            dtypes.setdefault(cell.name, cell.dtype)
    for io in (*info.inputs, *info.outputs, *info.unconsumed):
        if io.encoding is not None:
            encodings[io.name] = io.encoding
        if io.dtype is not None:
            dtypes[io.name] = io.dtype
        else:
            dtypes.setdefault(io.name, None)
    return _DlcTensors(encodings, dtypes, static)


def _zero_point(entry: str, tensor: str, dlc_name: str, enc: Encoding | Any, bitwidth: int) -> int:
    zp = -float(enc.offset)
    top = 2**bitwidth - 1
    if not math.isfinite(zp) or zp != round(zp) or not 0 <= zp <= top:
        raise ModelError(
            f"{entry}: tensor {tensor!r} (DLC {dlc_name!r}): encoding offset {enc.offset} gives zero point {zp}; "
            f"expected an integer in [0, {top}] for an unsigned {bitwidth}-bit encoding."
        )
    return round(zp)


def _check_scale(entry: str, tensor: str, dlc_name: str, scale: float) -> None:
    if not (math.isfinite(scale) and scale > 0 and np.float32(scale) > 0):
        raise ModelError(
            f"{entry}: tensor {tensor!r} (DLC {dlc_name!r}): encoding scale {scale}; expected a positive number."
        )


def _onnx_axis(dlc_axis: int, rank: int, conv_weight: bool) -> int:
    """DLC weight axis -> ONNX axis: Conv weights are HWIO in the DLC, OIHW in ONNX; other tensors keep the order."""
    axis = dlc_axis % rank if rank else 0
    if conv_weight and rank == 4:
        return {3: 0, 2: 1, 0: 2, 1: 3}[axis]
    return axis


# ----------------------------------------------------------------------------------------------------------------
# Graph surgery after quantize_static


def _consumers(graph: Any, name: str) -> list[tuple[Any, int]]:
    return [(n, k) for n in graph.node for k, i in enumerate(n.input) if i == name]


def _strip_qdq(model: Any, tensor: str) -> bool:
    """Remove the Q/DQ pair(s) on ``tensor`` (consumers read the float tensor again). True when one was there."""
    graph = model.graph
    outputs = {o.name for o in graph.output}
    float_name = tensor
    if tensor in outputs:  # onnxruntime renamed the producer's output to <t>_QuantizeLinear_Input; DQ writes <t>
        dq = next((n for n in graph.node if n.op_type == "DequantizeLinear" and n.output[0] == tensor), None)
        if dq is None:
            return False
        q = next((n for n in graph.node if n.op_type == "QuantizeLinear" and n.output[0] == dq.input[0]), None)
        if q is None:
            return False
        float_name = q.input[0]
        for node in graph.node:
            for k, out in enumerate(node.output):
                if out == float_name:
                    node.output[k] = tensor
            for k, inp in enumerate(node.input):
                if inp == float_name and node is not q:
                    node.input[k] = tensor
        q.input[0] = tensor
    quants = [n for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] == tensor]
    if not quants:
        return False
    removed = []
    for q in quants:
        for dq, _ in _consumers(graph, q.output[0]):
            if dq.op_type != "DequantizeLinear":
                continue
            for node, k in _consumers(graph, dq.output[0]):
                node.input[k] = tensor
            removed.append(dq)
        if not [n for n, _ in _consumers(graph, q.output[0]) if n not in removed]:
            removed.append(q)
    keep = [n for n in graph.node if all(n is not r for r in removed)]
    del graph.node[:]
    graph.node.extend(keep)
    return True


def _insert_qdq(model: Any, tensor: str, scale: float, zero_point: int, bitwidth: int, contrib: bool) -> None:
    """Q/DQ with the given encoding after ``tensor`` (every consumer, and a graph output, read the DQ output)."""
    from onnx import helper, numpy_helper

    graph = model.graph
    stem = f"{tensor}__qc_sim"
    graph.initializer.append(numpy_helper.from_array(np.array(scale, np.float32), f"{stem}_scale"))
    graph.initializer.append(numpy_helper.from_array(np.array(zero_point, _ZP_TYPES[bitwidth]), f"{stem}_zero_point"))
    domain = "com.microsoft" if contrib else ""
    if tensor in {o.name for o in graph.output}:
        src, dst = f"{stem}_float", tensor
        for node in graph.node:
            for k, out in enumerate(node.output):
                if out == tensor:
                    node.output[k] = src
            for k, inp in enumerate(node.input):
                if inp == tensor:
                    node.input[k] = src
    else:
        src, dst = tensor, f"{stem}_dq"
        for node, k in _consumers(graph, tensor):
            node.input[k] = dst
    args = [f"{stem}_scale", f"{stem}_zero_point"]
    graph.node.append(helper.make_node("QuantizeLinear", [src, *args], [f"{stem}_q"], f"{stem}_Q", domain=domain))
    graph.node.append(helper.make_node("DequantizeLinear", [f"{stem}_q", *args], [dst], f"{stem}_DQ", domain=domain))
    _toposort(graph)


def _toposort(graph: Any) -> None:
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending = list(graph.node)
    ordered = []
    while pending:
        progress = False
        rest = []
        for node in pending:
            if all(i in available for i in node.input):
                ordered.append(node)
                available.update(node.output)
                progress = True
            else:
                rest.append(node)
        pending = rest
        if not progress:
            ordered.extend(pending)
            break
    del graph.node[:]
    graph.node.extend(ordered)


def _float_weights(model: Any, original: Any, names: set[str]) -> list[str]:
    """Replace the DequantizeLinear of the named weights by their original float initializer."""
    graph = model.graph
    inits = {i.name for i in graph.initializer}
    by_node = {n.name: n for n in original.graph.node if n.name}
    float_inits = {i.name: i for i in original.graph.initializer}
    outputs = {o.name for o in graph.output}
    restored: set[str] = set()
    drop: list[Any] = []
    for dq in [n for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits]:
        readers = _consumers(graph, dq.output[0])
        rewired = 0
        for node, k in readers:
            source = by_node.get(node.name)
            if source is None or k >= len(source.input) or source.input[k] not in names:
                continue
            node.input[k] = source.input[k]
            restored.add(source.input[k])
            rewired += 1
        if readers and rewired == len(readers) and dq.output[0] not in outputs:
            drop.append(dq)
    keep = [n for n in graph.node if all(n is not d for d in drop)]
    del graph.node[:]
    graph.node.extend(keep)
    live = {i for n in graph.node for i in n.input}
    kept_inits = [i for i in graph.initializer if i.name in live and i.name not in restored]
    kept_inits += [float_inits[name] for name in sorted(restored)]
    del graph.initializer[:]
    graph.initializer.extend(kept_inits)
    return sorted(restored)


# ----------------------------------------------------------------------------------------------------------------
# Reading the built model back


def _qdq_params(model: Any) -> dict[str, tuple[np.ndarray, np.ndarray, int | None]]:
    """tensor -> (scale, zero point, axis) of the QuantizeLinear reading it (graph outputs under their own name)."""
    from onnx import numpy_helper

    graph = model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    inits[node.output[0]] = numpy_helper.to_array(a.t)
    dq_of = {n.input[0]: n for n in graph.node if n.op_type == "DequantizeLinear"}
    found: dict[str, tuple[np.ndarray, np.ndarray, int | None]] = {}
    for q in graph.node:
        if q.op_type != "QuantizeLinear" or len(q.input) < 3:
            continue
        axis = next((int(a.i) for a in q.attribute if a.name == "axis"), None)
        params = (inits[q.input[1]], inits[q.input[2]], axis)
        dq = dq_of.get(q.output[0])
        name = q.input[0]
        if dq is not None and dq.output[0] in {o.name for o in graph.output}:
            name = dq.output[0]
        found[name] = params
    for dq in graph.node:  # quantized weights: an initializer read by a DequantizeLinear
        if dq.op_type == "DequantizeLinear" and dq.input[0] in inits and len(dq.input) >= 3:
            axis = next((int(a.i) for a in dq.attribute if a.name == "axis"), None)
            found[f"weight:{dq.output[0]}"] = (inits[dq.input[1]], inits[dq.input[2]], axis)
    return found


def _weight_params(model: Any, original: Any) -> dict[str, tuple[np.ndarray, np.ndarray, int | None]]:
    """Original weight name -> (scale, zero point, axis) of the DequantizeLinear its consumer reads."""
    from onnx import numpy_helper

    graph = model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    by_node = {n.name: n for n in original.graph.node if n.name}
    out: dict[str, tuple[np.ndarray, np.ndarray, int | None]] = {}
    for dq in graph.node:
        if dq.op_type != "DequantizeLinear" or dq.input[0] not in inits or len(dq.input) < 3:
            continue
        axis = next((int(a.i) for a in dq.attribute if a.name == "axis"), None)
        for node, k in _consumers(graph, dq.output[0]):
            source = by_node.get(node.name)
            if source is not None and k < len(source.input):
                out[source.input[k]] = (inits[dq.input[1]], inits[dq.input[2]], axis)
    return out


# ----------------------------------------------------------------------------------------------------------------
# Building


def _input_feed(graph: Any) -> dict[str, np.ndarray]:
    inits = {i.name for i in graph.initializer}
    feed = {}
    for inp in graph.input:
        if inp.name in inits:
            continue
        dims = [
            d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 1 for d in inp.type.tensor_type.shape.dim
        ]
        feed[inp.name] = np.zeros(dims, np.float32)
    return feed


def build_host_simulation(
    reference_onnx: Path,
    info: DlcInfo,
    tensor_map: Sequence[TensorMatch] | None,
    calibration: Iterable[Mapping[str, np.ndarray]] | None,
    out: Path,
    entry: str,
    *,
    quantize_weights: bool = True,
) -> HostSimResult:
    """Quantize ``reference_onnx`` into a QDQ model at ``out`` that uses the DLC's own encodings (see the module).

    ``tensor_map``: the runner's reference -> DLC matches (:meth:`qc.snpe.runner.SnpeRunner.tensor_map`); None maps
    by name only. ``calibration``: feeds for onnxruntime's calibration pass, which only decides tensors without a
    usable DLC encoding (None: one all-zeros feed). ``quantize_weights=False`` keeps every weight in float (a
    runtime that quantizes activations only, such as the test toolkit's fake device).
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    from qc.runners.ort import describe, load_checked
    from qc.runners.quantize import rename_clashing_initializers

    model = load_checked(reference_onnx, entry)
    renamed = dict(rename_clashing_initializers(model))
    original_name = {new: old for old, new in renamed.items()}
    graph = model.graph
    tensors, _ = describe(model)
    dlc = _dlc_tensors(info)
    mapped = {m.reference.name: m.target for m in (tensor_map or []) if m.target is not None}
    producer = {o: n for n in graph.node for o in n.output if o}
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)

    result = HostSimResult(entry=entry, model=out)
    overrides: dict[str, list[dict[str, Any]]] = {}
    exact_act: dict[str, tuple[float, int, int, str]] = {}
    float_tensors: list[str] = []
    exclude: set[str] = set()
    sixteen = False

    for t in tensors.tensors:
        if t.dtype != "float32":
            continue
        name = t.name
        dlc_name = dlc.lookup(name, mapped, static=False)
        if dlc_name is None:
            result.rows.append(
                EncodingRow(name, "activation", "float", reason="absent from the DLC (fused or folded): left float")
            )
            float_tensors.append(name)
            continue
        enc = dlc.encodings.get(dlc_name)
        dtype = dlc.dtypes.get(dlc_name)
        if enc is None:
            reason = f"{dtype or 'no data type'} in the DLC, no encoding: left float"
            result.rows.append(EncodingRow(name, "activation", "float", dlc_name, reason=reason))
            float_tensors.append(name)
            if name in producer:
                exclude.add(producer[name].name)
            continue
        if enc.per_channel or enc.bitwidth not in _QUANT_TYPES:
            why = "a per-channel activation encoding" if enc.per_channel else f"a {enc.bitwidth}-bit encoding"
            result.rows.append(
                EncodingRow(
                    name,
                    "activation",
                    "default",
                    dlc_name,
                    enc.bitwidth,
                    enc.scale,
                    reason=f"the DLC has {why}, which qc does not simulate: onnxruntime's calibrated 8-bit encoding",
                )
            )
            continue
        _check_scale(entry, name, dlc_name, enc.scale)
        zp = _zero_point(entry, name, dlc_name, enc, enc.bitwidth)
        sixteen = sixteen or enc.bitwidth == 16
        overrides[name] = [
            {
                "quant_type": getattr(QuantType, _QUANT_TYPES[enc.bitwidth]),
                "scale": np.array(enc.scale, dtype=np.float32),
                "zero_point": np.array(zp, dtype=_ZP_TYPES[enc.bitwidth]),
            }
        ]
        exact_act[name] = (enc.scale, zp, enc.bitwidth, dlc_name)
        result.rows.append(EncodingRow(name, "activation", "exact", dlc_name, enc.bitwidth, enc.scale, zp))

    # Weights: the initializers that nodes read as float tensors.
    init_by_name = {i.name: i for i in graph.initializer}
    float_weights: set[str] = set()
    exact_weights: dict[str, tuple[list[float], list[int], int | None]] = {}
    seen: set[str] = set()
    for node in graph.node:
        for k, wname in enumerate(node.input):
            init = init_by_name.get(wname)
            if init is None or init.data_type != onnx.TensorProto.FLOAT or wname in seen:
                continue
            seen.add(wname)
            shown = original_name.get(wname, wname)
            if not quantize_weights or node.name in exclude:
                why = "quantize_weights is off" if not quantize_weights else f"its node {node.name!r} is left float"
                result.rows.append(EncodingRow(shown, "weight", "float", reason=f"kept float: {why}"))
                float_weights.add(wname)
                continue
            dlc_name = dlc.lookup(shown, {}, static=True) or ""
            enc = dlc.encodings.get(dlc_name) if dlc_name else None
            if _BIAS_OPS.get(node.op_type) == k:
                result.rows.append(
                    EncodingRow(
                        shown,
                        "weight",
                        "default",
                        dlc_name,
                        reason="bias: int32 with scale = input scale x weight scale (onnxruntime)",
                    )
                )
                continue
            dims = list(init.dims)
            if enc is not None and enc.per_channel is None and enc.bitwidth in _QUANT_TYPES:
                _check_scale(entry, shown, dlc_name, enc.scale)
                zp = _zero_point(entry, shown, dlc_name, enc, enc.bitwidth)
                overrides[wname] = [
                    {
                        "quant_type": getattr(QuantType, _QUANT_TYPES[enc.bitwidth]),
                        "scale": np.array(enc.scale, dtype=np.float32),
                        "zero_point": np.array(zp, dtype=_ZP_TYPES[enc.bitwidth]),
                    }
                ]
                sixteen = sixteen or enc.bitwidth == 16
                exact_weights[wname] = ([enc.scale], [zp], None)
                result.rows.append(EncodingRow(shown, "weight", "exact", dlc_name, enc.bitwidth, enc.scale, zp))
                continue
            channels = enc.per_channel if enc is not None else None
            axis = (
                _onnx_axis(enc.axis, len(dims), node.op_type in ("Conv", "ConvTranspose"))
                if enc is not None and enc.axis is not None
                else None
            )
            complete = (
                enc is not None
                and channels is not None
                and axis is not None
                and enc.bitwidth in _QUANT_TYPES
                and sorted(c.channel for c in channels) == list(range(dims[axis]))
            )
            if complete and enc is not None and channels is not None and axis is not None:
                ordered = sorted(channels, key=lambda c: c.channel)
                zps = [_zero_point(entry, shown, dlc_name, c, enc.bitwidth) for c in ordered]
                for c in ordered:
                    _check_scale(entry, shown, dlc_name, c.scale)
                qtype = getattr(QuantType, _QUANT_TYPES[enc.bitwidth])
                overrides[wname] = [
                    {
                        **({"axis": axis, "quant_type": qtype} if j == 0 else {}),
                        "scale": np.array(c.scale, dtype=np.float32),
                        "zero_point": np.array(z, dtype=_ZP_TYPES[enc.bitwidth]),
                    }
                    for j, (c, z) in enumerate(zip(ordered, zps, strict=True))
                ]
                exact_weights[wname] = ([c.scale for c in ordered], zps, axis)
                result.rows.append(
                    EncodingRow(shown, "weight", "exact", dlc_name, enc.bitwidth, enc.scale, zps[0], len(ordered))
                )
                continue
            if enc is None:
                reason = "no encoding in dlc-info: onnxruntime's symmetric int8 (per channel where supported)"
            elif channels is not None:
                reason = (
                    f"dlc-info printed {len(channels)} of {enc.num_channels or '?'} channel encodings (run "
                    "snpe-dlc-info -d for all): onnxruntime's symmetric int8 per channel"
                )
            else:
                reason = f"{enc.bitwidth}-bit encoding not simulated: onnxruntime's symmetric int8"
            result.rows.append(
                EncodingRow(
                    shown,
                    "weight",
                    "default",
                    dlc_name,
                    enc.bitwidth if enc else None,
                    enc.scale if enc else None,
                    channels=enc.num_channels if enc else None,
                    reason=reason,
                )
            )

    contrib = sixteen and opset < 21
    extra: dict[str, Any] = {
        "ActivationSymmetric": False,
        "WeightSymmetric": True,
        "QDQKeepRemovableActivations": True,
        "TensorQuantOverrides": overrides,
    }
    if contrib:
        extra["UseQDQContribOps"] = True
    feeds = iter(calibration) if calibration is not None else iter([_input_feed(graph)])
    count = 0

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def get_next(self) -> dict[str, np.ndarray] | None:
            nonlocal count
            item = next(feeds, None)
            if item is None:
                return None
            count += 1
            return dict(item)

    op_types = sorted({n.op_type for n in graph.node} - {"Constant"})
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.onnx")
    with tempfile.TemporaryDirectory(prefix="qc-hostsim-", dir=out.parent) as work:
        source = Path(work) / "model.onnx"
        onnx.save(model, str(source))
        try:
            quantize_static(
                str(source),
                str(tmp),
                Reader(),
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=op_types,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=sorted(exclude),
                calibrate_method=CalibrationMethod.MinMax,
                extra_options=extra,
            )
        except Exception as exc:
            tmp.unlink(missing_ok=True)
            raise ModelError(f"{entry}: onnxruntime quantize_static failed on {reference_onnx}: {exc}") from None
    if count == 0:
        tmp.unlink(missing_ok=True)
        raise ModelError(f"{entry}: the calibration set produced no inputs; the host simulation needs at least one.")
    sim = onnx.load(str(tmp))
    tmp.unlink(missing_ok=True)
    result.excluded_nodes = sorted(exclude)

    # Surgery: float tensors lose any Q/DQ pair; exact tensors onnxruntime skipped get one; float weights restored.
    for name in float_tensors:
        if _strip_qdq(sim, name):
            result.stripped.append(name)
    present = _qdq_params(sim)
    for name, (scale, zp, bits, _) in exact_act.items():
        if name not in present:
            _insert_qdq(sim, name, scale, zp, bits, contrib)
            result.inserted.append(name)
    if float_weights:
        _float_weights(sim, model, float_weights)
    _verify(entry, sim, model, result, exact_act, exact_weights, float_tensors)
    try:
        onnx.checker.check_model(sim)
    except Exception as exc:
        raise ModelError(f"{entry}: the host simulation model fails onnx.checker: {exc}") from None
    onnx.save(sim, str(out))
    result.notes.append(
        f"{len(result.names('exact', 'activation'))} activation(s) with the DLC's exact encoding "
        f"({len(result.inserted)} Q/DQ pairs inserted by qc), {len(result.names('default', 'activation'))} with "
        f"onnxruntime defaults, {len(result.names('float', 'activation'))} left float; weights: "
        f"{len(result.names('exact', 'weight'))} exact, {len(result.names('default', 'weight'))} default, "
        f"{len(result.names('float', 'weight'))} float."
    )
    return result


def _verify(
    entry: str,
    sim: Any,
    original: Any,
    result: HostSimResult,
    exact_act: Mapping[str, tuple[float, int, int, str]],
    exact_weights: Mapping[str, tuple[list[float], list[int], int | None]],
    float_tensors: Sequence[str],
) -> None:
    """Every exact encoding read back from the model equals the DLC's; no float tensor is quantized."""
    params = _qdq_params(sim)
    weights = _weight_params(sim, original)
    problems: list[str] = []
    checked = 0
    for name, (scale, zp, _bits, dlc_name) in exact_act.items():
        found = params.get(name)
        if found is None:
            problems.append(f"tensor {name!r} (DLC {dlc_name!r}): expected a Q/DQ pair, found none")
            continue
        s, z, _ = found
        want = np.float32(scale)
        if s.size != 1 or z.size != 1 or np.float32(s.reshape(-1)[0]) != want or int(z.reshape(-1)[0]) != zp:
            problems.append(
                f"tensor {name!r} (DLC {dlc_name!r}): expected scale {float(want)!r}, zero point {zp}; found scale "
                f"{s.reshape(-1).tolist()}, zero point {z.reshape(-1).tolist()}"
            )
            continue
        checked += 1
    for name, (scales, zps, axis) in exact_weights.items():
        found = weights.get(name)
        if found is None:
            problems.append(f"weight {name!r}: expected a DequantizeLinear with the DLC encoding, found none")
            continue
        s, z, ax = found
        want_s = np.asarray(scales, np.float32)
        ok = (
            s.size == want_s.size
            and np.array_equal(s.astype(np.float32).reshape(-1), want_s)
            and np.array_equal(z.astype(np.int64).reshape(-1), np.asarray(zps, np.int64))
            and (axis is None or s.size == 1 or (ax if ax is not None else 1) == axis)
        )
        if not ok:
            problems.append(
                f"weight {name!r}: expected scales {want_s.tolist()[:4]}..., zero points {zps[:4]}... (axis {axis}); "
                f"found {s.reshape(-1).tolist()[:4]}..., {z.reshape(-1).tolist()[:4]}... (axis {ax})"
            )
            continue
        checked += 1
    for name in float_tensors:
        if name in params:
            problems.append(f"tensor {name!r}: expected float (no encoding in the DLC), found a Q/DQ pair")
    if problems:
        shown = "; ".join(problems[:10]) + (f"; ... {len(problems) - 10} more" if len(problems) > 10 else "")
        raise ModelError(f"{entry}: the host simulation does not carry the DLC's encodings: {shown}.")
    result.verified = checked


# ----------------------------------------------------------------------------------------------------------------
# The error split


class HostSimRunner(OrtRunner):
    """An :class:`OrtRunner` for the host simulation with onnxruntime's graph optimizations off.

    Every QuantizeLinear/DequantizeLinear and op then runs as written (float ops on dequantized values, rounding
    in QuantizeLinear): the QDQ model's arithmetic. With optimizations on, onnxruntime fuses Q/DQ pairs into integer
    kernels whose requantization rounds differently (measured on the test model: one quantization step on 13% of
    a Conv's outputs), which would show up as a runtime error that no device made.
    """

    def _options(self) -> Any:
        import onnxruntime as ort

        opts = super()._options()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        return opts


@dataclass(frozen=True)
class SplitRow:
    index: int
    tensor: str
    op_type: str
    dlc_tensor: str
    quant: MetricSummary
    """Host simulation vs FP32 reference."""
    runtime: MetricSummary
    """Device vs host simulation."""


@dataclass
class ErrorSplit:
    model: str
    images: int
    rows: list[SplitRow] = field(default_factory=list)
    unmatched: list[dict[str, str]] = field(default_factory=list)
    margin_db: float = 6.0
    rounding_db: float = 80.0

    def runtime_dominated(self) -> list[SplitRow]:
        """Rows whose runtime error is ``margin_db`` or more above their quantization error (mean SQNR), unless the
        runtime SQNR is above ``rounding_db`` (float rounding, e.g. of a dequantized input, is no runtime error)."""
        out = []
        for r in self.rows:
            q, rt = r.quant.sqnr_db_mean, r.runtime.sqnr_db_mean
            undefined = math.isnan(rt) and r.runtime.undefined is not None
            if undefined or (not math.isnan(q) and rt < self.rounding_db and rt < q - self.margin_db):
                out.append(r)
        return out

    def summary(self) -> dict[str, Any]:
        dominated = self.runtime_dominated()

        worst = min(
            (r for r in self.rows if not math.isnan(r.runtime.sqnr_db_mean)),
            key=lambda r: r.runtime.sqnr_db_mean,
            default=None,
        )
        return {
            "model": self.model,
            "images": self.images,
            "tensors": len(self.rows),
            "margin_db": self.margin_db,
            "rounding_db": self.rounding_db,
            "rule": "runtime error much larger than quantization error: mean runtime SQNR (device vs host "
            "simulation) below mean quantization SQNR (host simulation vs FP32) by margin_db or more, and below "
            "rounding_db",
            "runtime_dominated": [
                {
                    "index": r.index,
                    "tensor": r.tensor,
                    "op_type": r.op_type,
                    "sqnr_db_quant": r.quant.sqnr_db_mean,
                    "sqnr_db_runtime": r.runtime.sqnr_db_mean,
                    "undefined": r.runtime.undefined,
                }
                for r in dominated
            ],
            "first_runtime_dominated": dominated[0].tensor if dominated else None,
            "worst_runtime": (
                {"tensor": worst.tensor, "sqnr_db_runtime": worst.runtime.sqnr_db_mean} if worst is not None else None
            ),
        }

    def csv_rows(self) -> list[dict[str, Any]]:
        return [
            {
                "index": r.index,
                "tensor": r.tensor,
                "op_type": r.op_type,
                "cosine_quant": r.quant.cosine_mean,
                "sqnr_db_quant": r.quant.sqnr_db_mean,
                "cosine_runtime": r.runtime.cosine_mean,
                "sqnr_db_runtime": r.runtime.sqnr_db_mean,
            }
            for r in self.rows
        ]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ErrorSplit:
        return cls(
            model=data["model"],
            images=data["images"],
            rows=[
                SplitRow(
                    **{**r, "quant": MetricSummary(**r["quant"]), "runtime": MetricSummary(**r["runtime"])},
                )
                for r in data["rows"]
            ],
            unmatched=[dict(u) for u in data["unmatched"]],
            margin_db=float(data.get("margin_db", 6.0)),
            rounding_db=float(data.get("rounding_db", 80.0)),
        )


def _stats(a: np.ndarray | None, b: np.ndarray | None, what: str) -> PairStats:
    if a is None or b is None:
        return PairStats(math.nan, math.nan, math.nan, math.nan, f"{what} did not produce it")
    if a.shape != b.shape:
        return PairStats(math.nan, math.nan, math.nan, math.nan, f"shape {a.shape} vs {b.shape}")
    return pair_stats(a, b)


def split_error(
    model: str,
    reference: Runner,
    hostsim: Runner,
    device: Runner,
    device_map: Sequence[TensorMatch],
    feeds: Iterable[tuple[int, Mapping[str, np.ndarray]]],
    *,
    margin_db: float = 6.0,
) -> ErrorSplit:
    """Per tensor: quantization error (host simulation vs FP32) and runtime error (device vs host simulation).

    Each image runs once on each side (the device in chunks of its ``batch_size``, ``run_all``: every matched
    tensor); only running sums are kept. Tensors are those the reference shares with both the host simulation
    (:func:`qc.compare.matching.match_qdq`: the value consumers read) and the device (``device_map``).
    """
    sim_map = {m.reference.name: m.target for m in match_qdq(reference.graph(), hostsim.graph()) if m.target}
    dev_map = {m.reference.name: m.target for m in device_map if m.target}
    rows_info = [t for t in reference.graph().tensors if t.name in sim_map and t.name in dev_map]
    unmatched = [
        {
            "tensor": t.name,
            "reason": "not in the host simulation" if t.name not in sim_map else "no device counterpart (tensor map)",
        }
        for t in reference.graph().tensors
        if t.dtype == "float32" and not (t.name in sim_map and t.name in dev_map)
    ]
    quant = {t.name: MetricAccumulator() for t in rows_info}
    runtime = {t.name: MetricAccumulator() for t in rows_info}
    images = 0
    for chunk in chunks(feeds, batch_size_of(device)):
        dev_alls = run_all_batch(device, [f for _, f in chunk])
        for k, (image_id, feed) in enumerate(chunk):
            images += 1
            ref_all = reference.run_all(feed)
            sim_all = hostsim.run_all(feed)
            dev_all, dev_alls[k] = dev_alls[k], {}
            for t in rows_info:
                a = ref_all.get(t.name)
                s = sim_all.get(sim_map[t.name])
                d = dev_all.get(dev_map[t.name])
                quant[t.name].add(_stats(a, s, "the reference or the host simulation"), image_id)
                runtime[t.name].add(_stats(s, d, "the host simulation or the device"), image_id)
            del ref_all, sim_all, dev_all
        del dev_alls
    split = ErrorSplit(model=model, images=images, unmatched=unmatched, margin_db=margin_db)
    for t in rows_info:
        split.rows.append(
            SplitRow(t.index, t.name, t.op_type, dev_map[t.name], quant[t.name].summary(), runtime[t.name].summary())
        )
    return split


def write_error_split(split: ErrorSplit, folder: Path) -> list[Path]:
    """``error_split.csv`` and ``error_split.json`` (the summary) in ``folder``."""
    from qc.cache import atomic_write_text
    from qc.report.tables import to_csv

    folder.mkdir(parents=True, exist_ok=True)
    csv_path = folder / "error_split.csv"
    json_path = folder / "error_split.json"
    atomic_write_text(csv_path, to_csv(ERROR_SPLIT_COLUMNS, split.csv_rows()))
    atomic_write_text(json_path, jsonio.dumps(split.summary(), indent=1, default=str))
    return [csv_path, json_path]


# ----------------------------------------------------------------------------------------------------------------
# The stage


@dataclass
class HostSimStage:
    hostsim: HostSimResult
    split: ErrorSplit
    files: list[Path] = field(default_factory=list)


def host_simulation_stage(
    stages: ModelStages, *, quantize_weights: bool = True, margin_db: float = 6.0
) -> HostSimStage:
    """Build (cached) the host simulation of an ``snpe`` entry's DLC and split the device's error (cached);
    writes ``hostsim.json``, ``error_split.csv`` and ``error_split.json`` into the model's report folder."""
    from qc.cache import atomic_write_text, stable_hash
    from qc.config import SnpeTarget
    from qc.data.images import file_sha256, load_image_set
    from qc.pipeline import iter_feeds, ort_version
    from qc.snpe.runner import SnpeRunner

    spec = stages.spec
    if not isinstance(spec.target, SnpeTarget):
        raise ConfigError(
            f"{spec.name}: the host simulation reproduces a DLC's encodings; target kind is "
            f"{spec.target.kind!r}, expected 'snpe'."
        )
    target = stages.target()
    assert isinstance(target, SnpeRunner)
    cache = stages.ctx.cache
    name, size = stages.io()
    calib = load_image_set(spec.calibration) if spec.calibration is not None else None
    key = stable_hash(
        "hostsim",
        file_sha256(spec.reference),
        file_sha256(spec.target.dlc),
        spec.preprocess.model_dump(mode="json"),
        calib.fingerprint() if calib is not None else None,
        quantize_weights,
        ort_version(),
    )
    with cache.locked("hostsim", key) as folder:
        path = folder / "hostsim.onnx"
        cached = cache.load_json("hostsim", key)
        if cached is not None and cache.fresh(path):
            built = HostSimResult.from_json(cached)
            built.model = path
        else:
            feeds = (f for _, f, _ in iter_feeds(spec, calib, name, size)) if calib is not None else None
            built = build_host_simulation(
                spec.reference,
                target.dlc_info(),
                target.tensor_map(),
                feeds,
                path,
                spec.name,
                quantize_weights=quantize_weights,
            )
            cache.save_json("hostsim", key, built.to_json())
    split_key = stable_hash(
        "error-split",
        key,
        stages.target_key(),
        spec.preprocess.model_dump(mode="json"),
        stages.eval_images().fingerprint(),
        margin_db,
    )
    with cache.locked("error-split", split_key):
        data = cache.load_json("error-split", split_key)
        if data is not None:
            split = ErrorSplit.from_json(data)
        else:
            sim = HostSimRunner(f"{spec.name} (host simulation)", built.model)
            feeds2 = ((i, f) for i, f, _ in iter_feeds(spec, stages.eval_images(), name, size))
            with target.session():
                split = split_error(
                    spec.name, stages.reference, sim, target, target.tensor_map(), feeds2, margin_db=margin_db
                )
            cache.save_json("error-split", split_key, split.to_json())
    report = stages.ctx.report_dir / spec.name
    files = write_error_split(split, report)
    hostsim_json = report / "hostsim.json"
    atomic_write_text(hostsim_json, jsonio.dumps(built.to_json(), indent=1, default=str))
    files.append(hostsim_json)
    return HostSimStage(built, split, files)
