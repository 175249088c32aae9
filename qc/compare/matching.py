"""Match each reference tensor to the target tensor that holds the same values."""

from __future__ import annotations

from dataclasses import dataclass

from qc.runners.base import GraphTensors, TensorInfo

FLOAT_DTYPES = {"float32", "float16", "float64", "bfloat16"}


@dataclass(frozen=True)
class TensorMatch:
    """One row of the mapping written to the report. ``target`` is None when unmatched, with the reason."""

    reference: TensorInfo
    target: str | None
    how: str
    reason: str | None = None


def match_qdq(reference: GraphTensors, target: GraphTensors) -> list[TensorMatch]:
    """Match by name through QDQ renames.

    A quantized tensor ``t`` is read by its consumers through ``DequantizeLinear(QuantizeLinear(t))``: that
    post-quantization value is what we compare. A tensor left in float keeps its name. Anything else is listed as
    unmatched with a reason, never an error.
    """
    target_names = target.names() | set(target.inputs)
    shapes = {t.name: t.shape for t in target.tensors}
    rows: list[TensorMatch] = []
    for info in reference.tensors:
        if info.dtype not in FLOAT_DTYPES:
            rows.append(TensorMatch(info, None, "none", f"not compared: dtype {info.dtype or 'unknown'}"))
            continue
        if info.name in target.dequantized:
            name, how = target.dequantized[info.name], "qdq"
        elif info.name in target_names:
            name, how = info.name, "name"
        else:
            rows.append(TensorMatch(info, None, "none", "no tensor of this name (or its QDQ pair) in the target"))
            continue
        theirs = shapes.get(name)
        if (
            info.shape is not None
            and theirs is not None
            and _static(info.shape)
            and _static(theirs)
            and tuple(info.shape) != tuple(theirs)
        ):
            rows.append(TensorMatch(info, None, "none", f"shape {_fmt(info.shape)} vs target {_fmt(theirs)}"))
            continue
        rows.append(TensorMatch(info, name, how))
    return rows


def _static(shape: tuple[int | str, ...]) -> bool:
    return all(isinstance(d, int) and d > 0 for d in shape)


def _fmt(shape: tuple[int | str, ...] | None) -> str:
    return "x".join(str(d) for d in shape) if shape else "?"
