"""Match each reference tensor to the target tensor that holds the same values."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
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


# ----------------------------------------------------------------------------------------------------------------
# Name and layout matching against a converted graph (SNPE DLC): names may be normalised, axes may be permuted.

_NCHW_ONNX_OPS = frozenset(
    {
        "Conv",
        "ConvTranspose",
        "MaxPool",
        "AveragePool",
        "GlobalAveragePool",
        "GlobalMaxPool",
        "LpPool",
        "BatchNormalization",
        "InstanceNormalization",
        "LRN",
        "Resize",
        "Upsample",
        "DepthToSpace",
        "SpaceToDepth",
    }
)
"""ONNX ops whose 4-D output is NCHW by the op's definition."""

_NHWC_TARGET_OPS = frozenset(
    {
        "conv2d",
        "depthwiseconv2d",
        "transposeconv2d",
        "poolmax2d",
        "poolavg2d",
        "pool2d",
        "resize",
        "resizebilinear",
        "resizenearestneighbor",
        "batchnorm",
        "instancenorm",
        "depthtospace",
        "spacetodepth",
        "lrn",
    }
)
"""QNN/SNPE layer types (lower case, no ``_``) whose 4-D output is NHWC by the op's definition."""

_PRESERVING_TARGET_OPS = frozenset(
    {
        "relu",
        "reluminmax",
        "relu6",
        "sigmoid",
        "tanh",
        "gelu",
        "elu",
        "hardswish",
        "prelu",
        "neuron",
        "concat",
        "quantize",
        "dequantize",
        "cast",
        "convert",
    }
)
"""Layer types whose output keeps the axis order of their inputs (plus every ``Eltwise*``/``ElementWise*``)."""

NHWC_TO_NCHW = (0, 3, 1, 2)
"""``np.transpose(nhwc, NHWC_TO_NCHW)`` is the NCHW array."""

TENSOR_MAP_COLUMNS = (
    "reference",
    "reference_shape",
    "target",
    "target_shape",
    "how",
    "permutation",
    "layout",
    "reason",
)


@dataclass(frozen=True)
class LayoutMatch(TensorMatch):
    """A :class:`TensorMatch` with the axis order: ``np.transpose(target_array, permutation)`` has the reference
    layout. ``layout`` says what decided the permutation: ``shape`` (the only one the shapes allow), ``op``
    (both ops define their layout: ONNX Conv is NCHW, QNN Conv2d is NHWC), ``propagated`` (a layout-preserving
    layer whose inputs were decided), ``given`` (evidence passed in, e.g. the input layout qc writes)."""

    permutation: tuple[int, ...] | None = None
    layout: str | None = None
    target_shape: tuple[int, ...] | None = None


def normalise_tensor_name(name: str) -> str:
    """``/model.24/Reshape_1_output_0`` -> ``model_24_Reshape_1``: ``/`` and ``.`` become ``_``, runs of ``_``
    collapse, a trailing ``_output_0`` is dropped, leading and trailing ``_`` are stripped."""
    text = name.replace("/", "_").replace(".", "_")
    text = re.sub(r"_{2,}", "_", text)
    text = text.removesuffix("_output_0")
    return text.strip("_")


def _op_key(op_type: str) -> str:
    return re.sub(r"[\s_\-]", "", op_type).lower()


def _preserving(op_type: str) -> bool:
    key = _op_key(op_type)
    return key in _PRESERVING_TARGET_OPS or key.startswith(("eltwise", "elementwise"))


def _wild(dim: int | str) -> bool:
    return not isinstance(dim, int) or dim <= 0


def layout_permutations(
    reference: Sequence[int | str], target: Sequence[int], *, limit: int = 2
) -> list[tuple[int, ...]]:
    """Permutations ``p`` with ``target[p[i]] == reference[i]`` for every axis, at most ``limit`` of them.

    Permutations that differ only in how size-1 axes are assigned hold the same data and count once. A reference
    dimension that is not a positive integer (symbolic, unknown) matches any target dimension. Two or more
    results mean the shapes alone cannot decide (two equal dimensions larger than 1).
    """
    n = len(reference)
    if len(target) != n:
        return []
    # Static non-unit axes first (most constrained), then wildcards, then unit axes.
    order = sorted(
        range(n),
        key=lambda i: (0 if not _wild(reference[i]) and reference[i] != 1 else (1 if _wild(reference[i]) else 2), i),
    )
    found: list[tuple[int, ...]] = []
    seen: set[tuple[int, ...]] = set()
    assign = [-1] * n
    used = [False] * n

    def signature() -> tuple[int, ...]:
        return tuple(assign[i] if target[assign[i]] != 1 else -1 for i in range(n))

    def step(k: int) -> bool:
        if k == n:
            sig = signature()
            if sig not in seen:
                seen.add(sig)
                found.append(tuple(assign))
            return len(found) >= limit
        axis = order[k]
        want = reference[axis]
        unit_tried = False
        for j in range(n):
            if used[j]:
                continue
            if not _wild(want) and target[j] != want:
                continue
            if target[j] == 1:
                if unit_tried:  # any other free unit axis gives the same data
                    continue
                unit_tried = True
            used[j], assign[axis] = True, j
            if step(k + 1):
                return True
            used[j], assign[axis] = False, -1
        return False

    step(0)
    return found


def permutation_fits(perm: Sequence[int], reference: Sequence[int | str], target: Sequence[int]) -> bool:
    """Whether ``np.transpose(target_array, perm)`` has the reference shape."""
    n = len(reference)
    if len(perm) != n or len(target) != n or sorted(perm) != list(range(n)):
        return False
    return all(_wild(reference[i]) or target[perm[i]] == reference[i] for i in range(n))


def match_layout(
    reference: GraphTensors,
    target: GraphTensors,
    *,
    target_inputs: Mapping[str, Sequence[str]] | None = None,
    known: Mapping[str, Sequence[int]] | None = None,
) -> list[LayoutMatch]:
    """Match every reference tensor to a tensor of a converted graph whose names and axis order may differ.

    Names: the exact name first, then :func:`normalise_tensor_name` on both sides. Two target tensors with the
    same normalised name, or two reference tensors claiming one target tensor, are ambiguous: unmatched.

    Layout: the permutation comes from the shapes (``target.tensors[i].shape``, static) when only one fits.
    When several fit (two equal dimensions), it is decided only by evidence, never guessed:

    * ``known`` (reference tensor -> permutation), e.g. the NHWC layout qc itself writes the input in;
    * ``op``: a 4-D reference tensor made by an ONNX op that is NCHW by definition (Conv, MaxPool, Resize ...)
      and a target tensor made by a QNN layer that is NHWC by definition (Conv2d, PoolMax2d ...);
    * ``propagated``: the target layer keeps the axis order of its inputs (activations, element-wise ops,
      Concat) and those of its inputs (``target_inputs``: target tensor -> the inputs of its layer) that have
      the same rank were all decided with the same permutation.

    Otherwise the tensor is unmatched with the candidates in the reason. Rows come in reference order.
    """
    target_inputs = target_inputs or {}
    known = known or {}
    by_name = {t.name: t for t in target.tensors}
    for name, dims in target.inputs.items():
        if name not in by_name:
            by_name[name] = TensorInfo(-1, name, "Input", "", dims, None)
    by_norm: dict[str, list[str]] = {}
    for name in by_name:
        by_norm.setdefault(normalise_tensor_name(name), []).append(name)

    rows: dict[str, LayoutMatch] = {}
    claims: dict[str, list[TensorInfo]] = {}
    how: dict[str, str] = {}
    for info in reference.tensors:
        if info.dtype not in FLOAT_DTYPES:
            rows[info.name] = LayoutMatch(info, None, "none", f"not compared: dtype {info.dtype or 'unknown'}")
        elif info.name in by_name:
            claims.setdefault(info.name, []).append(info)
            how[info.name] = "name"
    exact_targets = set(claims)
    for info in reference.tensors:
        if info.name in rows or info.name in how:
            continue
        norm = normalise_tensor_name(info.name)
        candidates = [c for c in by_norm.get(norm, []) if c not in exact_targets]
        if not candidates:
            rows[info.name] = LayoutMatch(
                info, None, "none", f"no target tensor of this name or of normalised name {norm!r}"
            )
        elif len(candidates) > 1:
            shown = ", ".join(repr(c) for c in sorted(candidates))
            rows[info.name] = LayoutMatch(
                info, None, "none", f"ambiguous name: target tensors {shown} all normalise to {norm!r}"
            )
        else:
            claims.setdefault(candidates[0], []).append(info)
            how[info.name] = "normalised"
    pairs: dict[str, TensorInfo] = {}
    for target_name, infos in claims.items():
        if len(infos) == 1:
            pairs[target_name] = infos[0]
            continue
        shown = ", ".join(repr(i.name) for i in infos)
        for info in infos:
            rows[info.name] = LayoutMatch(
                info, None, "none", f"ambiguous name: reference tensors {shown} all match target tensor {target_name!r}"
            )

    decided: dict[str, tuple[int, ...]] = {}
    order = [t.name for t in sorted(by_name.values(), key=lambda t: t.index)]
    for target_name in order:
        if target_name not in pairs:
            continue
        info = pairs[target_name]
        theirs = by_name[target_name]
        name_how = how[info.name]
        tshape = theirs.shape
        if info.shape is None or tshape is None or not all(isinstance(d, int) and d >= 0 for d in tshape):
            side = "reference" if info.shape is None else "target"
            rows[info.name] = LayoutMatch(info, None, "none", f"{side} shape unknown; cannot decide the axis order")
            continue
        tdims = tuple(int(d) for d in tshape)
        ref_text, tgt_text = _fmt(info.shape), _fmt(tdims)
        if len(info.shape) != len(tdims):
            rows[info.name] = LayoutMatch(
                info, None, "none", f"rank differs: reference {ref_text} vs target {target_name!r} {tgt_text}"
            )
            continue
        perms = layout_permutations(info.shape, tdims, limit=2)
        chosen: tuple[int, ...] | None = None
        source = ""
        if not perms:
            rows[info.name] = LayoutMatch(
                info,
                None,
                "none",
                f"shape differs: reference {ref_text} vs target {target_name!r} {tgt_text} "
                "(no axis permutation maps one onto the other)",
            )
            continue
        if len(perms) == 1:
            chosen, source = perms[0], "shape"
        else:
            chosen, source = _evidence(info, theirs, tdims, known, target_inputs, decided, perms)
        if chosen is None:
            options = " and ".join(str(p) for p in perms)
            equal = sorted({d for d in tdims if d > 1 and tdims.count(d) > 1})
            rows[info.name] = LayoutMatch(
                info,
                None,
                "none",
                f"ambiguous layout: reference {ref_text} vs target {target_name!r} {tgt_text} fits permutations "
                f"{options} (equal dims {', '.join(map(str, equal)) or '?'}) and no layout evidence decides",
                target_shape=tdims,
            )
            continue
        decided[target_name] = chosen
        rows[info.name] = LayoutMatch(info, target_name, name_how, None, chosen, source, tdims)
    return [rows[info.name] for info in reference.tensors]


def _evidence(
    info: TensorInfo,
    theirs: TensorInfo,
    tdims: tuple[int, ...],
    known: Mapping[str, Sequence[int]],
    target_inputs: Mapping[str, Sequence[str]],
    decided: Mapping[str, tuple[int, ...]],
    perms: list[tuple[int, ...]],
) -> tuple[tuple[int, ...] | None, str]:
    assert info.shape is not None
    given = known.get(info.name)
    if given is not None and permutation_fits(given, info.shape, tdims):
        return tuple(given), "given"
    if (
        len(tdims) == 4
        and info.op_type in _NCHW_ONNX_OPS
        and _op_key(theirs.op_type) in _NHWC_TARGET_OPS
        and permutation_fits(NHWC_TO_NCHW, info.shape, tdims)
    ):
        return NHWC_TO_NCHW, "op"
    if _preserving(theirs.op_type):
        upstream = {
            decided[i] for i in target_inputs.get(theirs.name, ()) if i in decided and len(decided[i]) == len(tdims)
        }
        if len(upstream) == 1:
            perm = upstream.pop()
            if permutation_fits(perm, info.shape, tdims):
                return perm, "propagated"
    return None, ""


def tensor_map_rows(matches: Sequence[TensorMatch]) -> list[dict[str, str]]:
    """The rows of ``tensor_map.csv`` (columns :data:`TENSOR_MAP_COLUMNS`)."""
    out = []
    for m in matches:
        perm = getattr(m, "permutation", None)
        out.append(
            {
                "reference": m.reference.name,
                "reference_shape": _fmt(m.reference.shape),
                "target": m.target or "",
                "target_shape": _fmt(getattr(m, "target_shape", None)),
                "how": m.how,
                "permutation": ",".join(map(str, perm)) if perm is not None else "",
                "layout": getattr(m, "layout", None) or "",
                "reason": m.reason or "",
            }
        )
    return out
