"""Host simulation, step 1 (plan): what each ONNX tensor of the reference becomes, from the DLC's encodings.

Each float tensor is ``exact`` (the DLC's own encoding, passed to onnxruntime as a ``TensorQuantOverrides`` entry),
``default`` (onnxruntime's calibrated or symmetric encoding) or ``float`` (left in float). Symmetric QAIRT
encodings (``sFxp_8``/``sFxp_16``: signed, offset 0) become signed ONNX types (``QInt8``/``QInt16``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qc.compare.matching import TensorMatch, normalise_tensor_name
from qc.errors import ModelError
from qc.snpe.parsers import DlcInfo, Encoding

_QUANT_TYPES = {8: "QUInt8", 16: "QUInt16"}
_SIGNED_QUANT_TYPES = {8: "QInt8", 16: "QInt16"}
_ZP_TYPES: dict[int, type[np.integer[Any]]] = {8: np.uint8, 16: np.uint16}
_SIGNED_ZP_TYPES: dict[int, type[np.integer[Any]]] = {8: np.int8, 16: np.int16}
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


def _zero_point(
    entry: str, tensor: str, dlc_name: str, enc: Encoding | Any, bitwidth: int, signed: bool = False
) -> int:
    zp = -float(enc.offset)
    low, top = (-(2 ** (bitwidth - 1)), 2 ** (bitwidth - 1) - 1) if signed else (0, 2**bitwidth - 1)
    if not math.isfinite(zp) or zp != round(zp) or not low <= zp <= top:
        kind = "a signed (symmetric)" if signed else "an unsigned"
        raise ModelError(
            f"{entry}: tensor {tensor!r} (DLC {dlc_name!r}): encoding offset {enc.offset} gives zero point {zp}; "
            f"expected an integer in [{low}, {top}] for {kind} {bitwidth}-bit encoding."
        )
    return round(zp)


def _signed(dtype: str | None) -> bool:
    """``sFxp_8``/``sFxp_16`` (QAIRT's symmetric types) are signed; ``uFxp_*`` are not."""
    return dtype is not None and dtype.startswith("sFxp")


def _override(bitwidth: int, scale: float, zero_point: int, signed: bool, **extra: Any) -> dict[str, Any]:
    """One onnxruntime ``TensorQuantOverrides`` entry."""
    from onnxruntime.quantization import QuantType

    names = _SIGNED_QUANT_TYPES if signed else _QUANT_TYPES
    zp_types = _SIGNED_ZP_TYPES if signed else _ZP_TYPES
    return {
        **extra,
        "quant_type": getattr(QuantType, names[bitwidth]),
        "scale": np.array(scale, dtype=np.float32),
        "zero_point": np.array(zero_point, dtype=zp_types[bitwidth]),
    }


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
# The plan


@dataclass
class EncodingPlan:
    """What :func:`plan_encodings` decided: report rows, onnxruntime overrides, and what the later steps check."""

    rows: list[EncodingRow] = field(default_factory=list)
    overrides: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    exact_act: dict[str, tuple[float, int, int, str]] = field(default_factory=dict)
    """Activation -> (scale, zero point, bitwidth, DLC name)."""
    exact_weights: dict[str, tuple[list[float], list[int], int | None]] = field(default_factory=dict)
    """Weight -> (scales, zero points, ONNX axis or None)."""
    float_tensors: list[str] = field(default_factory=list)
    float_weights: set[str] = field(default_factory=set)
    exclude: set[str] = field(default_factory=set)
    """Nodes left out of quantization (they produce a tensor the DLC keeps float)."""
    signed: set[str] = field(default_factory=set)
    """Exact activations with a signed (symmetric ``sFxp``) encoding."""
    sixteen: bool = False
    """A 16-bit encoding is used (needs onnxruntime's contrib Q/DQ ops below opset 21)."""


def plan_encodings(
    model: Any,
    info: DlcInfo,
    tensor_map: Sequence[TensorMatch] | None,
    entry: str,
    *,
    quantize_weights: bool,
    original_name: Mapping[str, str],
) -> EncodingPlan:
    """Decide every float tensor of ``model`` (activations, then the weights nodes read) from the DLC."""
    from qc.runners.ort import describe

    dlc = _dlc_tensors(info)
    mapped = {m.reference.name: m.target for m in (tensor_map or []) if m.target is not None}
    plan = EncodingPlan()
    tensors, _ = describe(model)
    producer = {o: n for n in model.graph.node for o in n.output if o}
    for t in tensors.tensors:
        if t.dtype == "float32":
            _plan_activation(plan, t.name, dlc, mapped, producer, entry)
    init_by_name = {i.name: i for i in model.graph.initializer}
    seen: set[str] = set()
    for node in model.graph.node:
        for k, wname in enumerate(node.input):
            init = init_by_name.get(wname)
            if init is None or init.data_type != 1 or wname in seen:  # 1: TensorProto.FLOAT
                continue
            seen.add(wname)
            _plan_weight(plan, node, k, wname, list(init.dims), dlc, entry, quantize_weights, original_name)
    return plan


def _plan_activation(
    plan: EncodingPlan, name: str, dlc: _DlcTensors, mapped: Mapping[str, str], producer: Mapping[str, Any], entry: str
) -> None:
    dlc_name = dlc.lookup(name, mapped, static=False)
    if dlc_name is None:
        plan.rows.append(
            EncodingRow(name, "activation", "float", reason="absent from the DLC (fused or folded): left float")
        )
        plan.float_tensors.append(name)
        return
    enc = dlc.encodings.get(dlc_name)
    dtype = dlc.dtypes.get(dlc_name)
    if enc is None:
        reason = f"{dtype or 'no data type'} in the DLC, no encoding: left float"
        plan.rows.append(EncodingRow(name, "activation", "float", dlc_name, reason=reason))
        plan.float_tensors.append(name)
        if name in producer:
            plan.exclude.add(producer[name].name)
        return
    if enc.per_channel or enc.bitwidth not in _QUANT_TYPES:
        why = "a per-channel activation encoding" if enc.per_channel else f"a {enc.bitwidth}-bit encoding"
        plan.rows.append(
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
        return
    signed = _signed(dtype)
    _check_scale(entry, name, dlc_name, enc.scale)
    zp = _zero_point(entry, name, dlc_name, enc, enc.bitwidth, signed)
    plan.sixteen = plan.sixteen or enc.bitwidth == 16
    plan.overrides[name] = [_override(enc.bitwidth, enc.scale, zp, signed)]
    plan.exact_act[name] = (enc.scale, zp, enc.bitwidth, dlc_name)
    if signed:
        plan.signed.add(name)
    plan.rows.append(EncodingRow(name, "activation", "exact", dlc_name, enc.bitwidth, enc.scale, zp))


def _plan_weight(
    plan: EncodingPlan,
    node: Any,
    k: int,
    wname: str,
    dims: list[int],
    dlc: _DlcTensors,
    entry: str,
    quantize_weights: bool,
    original_name: Mapping[str, str],
) -> None:
    shown = original_name.get(wname, wname)
    if not quantize_weights or node.name in plan.exclude:
        why = "quantize_weights is off" if not quantize_weights else f"its node {node.name!r} is left float"
        plan.rows.append(EncodingRow(shown, "weight", "float", reason=f"kept float: {why}"))
        plan.float_weights.add(wname)
        return
    dlc_name = dlc.lookup(shown, {}, static=True) or ""
    enc = dlc.encodings.get(dlc_name) if dlc_name else None
    signed = _signed(dlc.dtypes.get(dlc_name)) if dlc_name else False
    if _BIAS_OPS.get(node.op_type) == k:
        plan.rows.append(
            EncodingRow(
                shown,
                "weight",
                "default",
                dlc_name,
                reason="bias: int32 with scale = input scale x weight scale (onnxruntime)",
            )
        )
        return
    if enc is not None and enc.per_channel is None and enc.bitwidth in _QUANT_TYPES:
        _check_scale(entry, shown, dlc_name, enc.scale)
        zp = _zero_point(entry, shown, dlc_name, enc, enc.bitwidth, signed)
        plan.overrides[wname] = [_override(enc.bitwidth, enc.scale, zp, signed)]
        plan.sixteen = plan.sixteen or enc.bitwidth == 16
        plan.exact_weights[wname] = ([enc.scale], [zp], None)
        plan.rows.append(EncodingRow(shown, "weight", "exact", dlc_name, enc.bitwidth, enc.scale, zp))
        return
    channels = enc.per_channel if enc is not None else None
    axis = (
        _onnx_axis(enc.axis, len(dims), node.op_type in ("Conv", "ConvTranspose"))
        if enc is not None and enc.axis is not None
        else None
    )
    if (
        enc is not None
        and channels is not None
        and axis is not None
        and enc.bitwidth in _QUANT_TYPES
        and sorted(c.channel for c in channels) == list(range(dims[axis]))
    ):
        ordered = sorted(channels, key=lambda c: c.channel)
        zps = [_zero_point(entry, shown, dlc_name, c, enc.bitwidth, signed) for c in ordered]
        for c in ordered:
            _check_scale(entry, shown, dlc_name, c.scale)
        first = _override(enc.bitwidth, ordered[0].scale, zps[0], signed, axis=axis)
        plan.overrides[wname] = [first] + [
            {key: value for key, value in _override(enc.bitwidth, c.scale, z, signed).items() if key != "quant_type"}
            for c, z in zip(ordered[1:], zps[1:], strict=True)
        ]
        plan.exact_weights[wname] = ([c.scale for c in ordered], zps, axis)
        plan.rows.append(EncodingRow(shown, "weight", "exact", dlc_name, enc.bitwidth, enc.scale, zps[0], len(ordered)))
        return
    if enc is None:
        reason = "no encoding in dlc-info: onnxruntime's symmetric int8 (per channel where supported)"
    elif channels is not None:
        reason = (
            f"dlc-info printed {len(channels)} of {enc.num_channels or '?'} channel encodings (run "
            "snpe-dlc-info -d for all): onnxruntime's symmetric int8 per channel"
        )
    else:
        reason = f"{enc.bitwidth}-bit encoding not simulated: onnxruntime's symmetric int8"
    plan.rows.append(
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
