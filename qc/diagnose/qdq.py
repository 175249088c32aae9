"""Reading a QDQ model: which float tensors are quantized, with which scale, zero point and integer range."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from qc.errors import ModelError

RENAMED_OUTPUT_SUFFIX = "_QuantizeLinear_Input"
"""onnxruntime renames a quantized graph output ``t``: its producer writes ``t_QuantizeLinear_Input``."""

_INT_RANGES: dict[str, tuple[int, int, int]] = {
    "uint8": (0, 255, 8),
    "int8": (-128, 127, 8),
    "uint16": (0, 65535, 16),
    "int16": (-32768, 32767, 16),
    "uint4": (0, 15, 4),
    "int4": (-8, 7, 4),
    "int32": (-(2**31), 2**31 - 1, 32),
}


@dataclass(frozen=True)
class Quantizer:
    """One activation QuantizeLinear: the float tensor it reads and how it maps it to integers."""

    tensor: str
    """The float tensor in the target model (what the QuantizeLinear reads)."""
    reference: str | None
    """The reference tensor holding the same values (None when the reference has no such tensor)."""
    node: str
    dequantize_node: str | None
    scale: np.ndarray
    zero_point: np.ndarray
    axis: int | None
    dtype: str
    qmin: int
    qmax: int
    bits: int

    @property
    def per_channel(self) -> bool:
        return self.scale.size > 1

    @property
    def step(self) -> float:
        """The quantization step (the largest one when per channel)."""
        return float(np.max(self.scale))

    def _broadcast(self, values: np.ndarray, ndim: int) -> np.ndarray:
        if values.size == 1 or self.axis is None:
            return np.asarray(values.reshape(()) if values.size == 1 else values)
        axis = self.axis if self.axis >= 0 else ndim + self.axis
        shape = [1] * ndim
        shape[axis] = values.size
        return np.asarray(values.reshape(shape))

    def bounds(self, ndim: int) -> tuple[np.ndarray, np.ndarray]:
        """The representable real range (lowest, highest value), broadcastable against a tensor of ``ndim``."""
        s = self._broadcast(self.scale.astype(np.float64), ndim)
        z = self._broadcast(self.zero_point.astype(np.float64), ndim)
        return (self.qmin - z) * s, (self.qmax - z) * s

    def fake_quant(self, x: np.ndarray) -> np.ndarray:
        """``DequantizeLinear(QuantizeLinear(x))`` as onnxruntime computes it (round half to even, saturate)."""
        s = self._broadcast(self.scale.astype(np.float32), x.ndim)
        z = self._broadcast(self.zero_point.astype(np.float32), x.ndim)
        q = np.clip(np.rint(x / s) + z, self.qmin, self.qmax)
        return np.asarray((q - z) * s, dtype=np.float32)

    def describe_scale(self) -> str:
        if self.per_channel:
            return f"per-channel scale {float(self.scale.min()):.4g}..{float(self.scale.max()):.4g} on axis {self.axis}"
        return f"scale {float(self.scale.reshape(-1)[0]):.4g}, zero point {int(self.zero_point.reshape(-1)[0])}"


def reference_name(tensor: str, reference_names: Iterable[str] | set[str]) -> str | None:
    """The reference tensor that holds the values of target tensor ``tensor`` (through onnxruntime's renames)."""
    names = reference_names if isinstance(reference_names, set) else set(reference_names)
    if tensor in names:
        return tensor
    if tensor.endswith(RENAMED_OUTPUT_SUFFIX):
        base = tensor[: -len(RENAMED_OUTPUT_SUFFIX)]
        if base in names:
            return base
    return None


def constant_values(model: Any) -> dict[str, np.ndarray]:
    """Initializers and Constant node outputs by name."""
    from onnx import numpy_helper

    values = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    values[node.output[0]] = numpy_helper.to_array(attr.t)
    return values


def _axis(node: Any) -> int | None:
    for attr in node.attribute:
        if attr.name == "axis":
            return int(attr.i)
    return None


def activation_quantizers(model: Any, reference_names: Iterable[str], entry: str) -> list[Quantizer]:
    """Every QuantizeLinear that reads an activation (not a weight), in graph order; one per tensor.

    A tensor read by several QuantizeLinear nodes (onnxruntime does that when consumers need different
    parameters) keeps the first, which is also the pair :func:`qc.runners.ort.describe` matches.
    """
    graph = model.graph
    consts = constant_values(model)
    names = set(reference_names)
    dq_of = {n.input[0]: n for n in graph.node if n.op_type == "DequantizeLinear"}
    out: list[Quantizer] = []
    seen: set[str] = set()
    for node in graph.node:
        if node.op_type != "QuantizeLinear":
            continue
        tensor = node.input[0]
        if tensor in consts or tensor in seen:
            continue
        seen.add(tensor)
        scale = consts.get(node.input[1])
        if scale is None:
            raise ModelError(
                f"{entry}: QuantizeLinear {node.name!r} of tensor {tensor!r} reads its scale {node.input[1]!r} from a "
                "computed tensor; qc reads scales from initializers or Constant nodes only."
            )
        zp = consts.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if zp is None:
            zp = np.zeros(scale.shape, np.uint8)
        dtype = np.dtype(zp.dtype).name
        if dtype not in _INT_RANGES:
            raise ModelError(
                f"{entry}: QuantizeLinear {node.name!r} of tensor {tensor!r} has zero point type {dtype}; "
                f"qc knows {', '.join(_INT_RANGES)}."
            )
        qmin, qmax, bits = _INT_RANGES[dtype]
        dq = dq_of.get(node.output[0])
        out.append(
            Quantizer(
                tensor=tensor,
                reference=reference_name(tensor, names),
                node=node.name,
                dequantize_node=dq.name if dq is not None else None,
                scale=np.asarray(scale, np.float32).reshape(-1) if scale.size > 1 else np.asarray(scale, np.float32),
                zero_point=np.asarray(zp).reshape(-1) if zp.size > 1 else np.asarray(zp),
                axis=(_axis(node) if _axis(node) is not None else 1) if scale.size > 1 else None,
                dtype=dtype,
                qmin=qmin,
                qmax=qmax,
                bits=bits,
            )
        )
    return out
