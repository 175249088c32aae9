"""Pattern matchers shared by :mod:`qc.graph.lint` (to report) and :mod:`qc.graph.rewrite` (to fix).

Every matcher is a pure function of a :class:`~qc.graph.view.GraphView` that only looks at op types, attributes,
tensor shapes and which tensors are constant, never at constant values, so the same rules run on a view made from
a DLC layer table. Matching is linear in the number of nodes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from qc.graph.view import GraphView, Node

__all__ = [
    "AFFINE_OPS",
    "MATMUL_OPS",
    "RESHAPE_LIKE_OPS",
    "AffineStep",
    "ChannelSwap",
    "ConvInfo",
    "DivMatch",
    "FoldChain",
    "Refusal",
    "ReshapeChain",
    "StrideMatch",
    "affine_step",
    "channel_swaps",
    "conv_info",
    "div_matches",
    "fold_chains",
    "is_per_channel",
    "reshape_chains",
    "slow_stride",
    "split_stride",
    "strided_convs",
]

AFFINE_OPS = frozenset({"Add", "Sub", "Mul"})
MATMUL_OPS = frozenset({"MatMul", "Gemm", "MatMulInteger", "QLinearMatMul", "FusedMatMul"})
RESHAPE_LIKE_OPS = frozenset({"Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze"})
CONV_OPS = frozenset({"Conv"})
FAST_STRIDES = frozenset({1, 2, 3})
_INT64_MAX = int(np.iinfo(np.int64).max)


@dataclass(frozen=True)
class Refusal:
    """A near-miss: the pattern is there but folding/rewriting it would not be exact."""

    node: str
    reason: str


# ----------------------------------------------------------------------------- Div
@dataclass(frozen=True)
class DivMatch:
    node: str
    divisor: str
    constant_divisor: bool


def div_matches(view: GraphView) -> list[DivMatch]:
    out: list[DivMatch] = []
    for n in view.nodes:
        if n.op_type == "Div" and len(n.inputs) >= 2:
            out.append(DivMatch(n.name, n.inputs[1], view.is_constant(n.inputs[1])))
    return out


# ----------------------------------------------------------------------------- Conv facts
@dataclass(frozen=True)
class ConvInfo:
    node: str
    weight: str
    bias: str | None
    c_in: int
    c_out: int
    group: int
    rank: int
    kernel: tuple[int, ...]
    padded: bool
    strides: tuple[int, ...]


def _ints(value: object) -> tuple[int, ...] | None:
    if value is None:
        return None
    if isinstance(value, np.ndarray):
        return tuple(int(v) for v in value.reshape(-1))
    if isinstance(value, (list, tuple)):
        try:
            return tuple(int(v) for v in value)
        except (TypeError, ValueError):
            return None
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return (int(value),)
    return None


def _int(value: object, default: int) -> int:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    return default


def _auto_pad(node: Node) -> str:
    raw = node.attrs.get("auto_pad", "NOTSET")
    return raw if isinstance(raw, str) else "NOTSET"


def conv_info(view: GraphView, conv: Node) -> ConvInfo | None:
    """Channel counts, kernel and padding of a Conv; None when the weights are not constant or shapes unknown."""
    if conv.op_type not in CONV_OPS or len(conv.inputs) < 2 or not conv.outputs:
        return None
    weight = conv.inputs[1]
    bias = conv.inputs[2] if len(conv.inputs) > 2 and conv.inputs[2] else None
    if not view.is_constant(weight) or (bias is not None and not view.is_constant(bias)):
        return None
    group = _int(conv.attrs.get("group"), 1)
    axis = view.channel_axis
    c_in = view.dim(conv.inputs[0], axis)
    c_out = view.dim(conv.outputs[0], axis)
    rank = view.rank(conv.outputs[0]) or view.rank(conv.inputs[0])
    kernel = _ints(conv.attrs.get("kernel_shape"))
    wshape = view.shape(weight)
    if axis == 1 and wshape is not None and all(isinstance(d, int) for d in wshape) and len(wshape) >= 3:
        ws = [int(d) for d in wshape]
        c_out = ws[0]
        c_in = ws[1] * group
        rank = len(ws)
        kernel = kernel or tuple(ws[2:])
    elif wshape is not None and len(wshape) >= 3 and all(isinstance(d, int) for d in wshape[:-2]):
        kernel = kernel or tuple(int(d) for d in wshape[:-2])  # QNN weights are [H, W, in/group, out]
    if c_in is None or c_out is None or rank is None or kernel is None:
        return None
    pads = _ints(conv.attrs.get("pads")) or ()
    auto_pad = _auto_pad(conv)
    padded = any(p != 0 for p in pads) or (auto_pad.startswith("SAME") and any(k != 1 for k in kernel))
    strides = _ints(conv.attrs.get("strides")) or (1,) * len(kernel)
    return ConvInfo(conv.name, weight, bias, c_in, c_out, group, rank, kernel, padded, strides)


# ----------------------------------------------------------------------------- foldable eltwise
@dataclass(frozen=True)
class AffineStep:
    """One Add/Sub/Mul with a constant operand, as an affine map of its non-constant input ``x``.

    ``kind``: ``add`` (x + c), ``sub`` (x - c), ``rsub`` (c - x), ``mul`` (x * c).
    """

    node: str
    kind: Literal["add", "sub", "rsub", "mul"]
    x: str
    const: str
    out: str


def affine_step(view: GraphView, node: Node) -> AffineStep | None:
    if node.op_type not in AFFINE_OPS or len(node.inputs) != 2 or len(node.outputs) != 1:
        return None
    a, b = node.inputs
    ca, cb = view.is_constant(a), view.is_constant(b)
    if ca == cb:
        return None
    x, c = (a, b) if cb else (b, a)
    value = view.constants[c]
    if value.dtype.kind != "f":
        return None
    kind: Literal["add", "sub", "rsub", "mul"]
    if node.op_type == "Add":
        kind = "add"
    elif node.op_type == "Mul":
        kind = "mul"
    else:
        kind = "sub" if cb else "rsub"
    return AffineStep(node.name, kind, x, c, node.outputs[0])


def is_per_channel(view: GraphView, const: str, rank: int, channels: int) -> bool:
    """True when ``const`` broadcasts as a scalar or a per-channel vector against a rank-``rank`` tensor."""
    shape = view.shape(const)
    if shape is None or len(shape) > rank:
        return False
    padded = (1,) * (rank - len(shape)) + tuple(shape)
    axis = view.channel_axis % rank
    for i, d in enumerate(padded):
        if i == axis:
            if d not in (1, channels):
                return False
        elif d != 1:
            return False
    return True


@dataclass(frozen=True)
class FoldChain:
    """Affine ops next to a Conv that fold into its weights/bias. ``steps`` are in data-flow order."""

    conv: str
    side: Literal["before", "after"]
    steps: tuple[AffineStep, ...]

    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(s.node for s in self.steps)

    @property
    def key(self) -> str:
        return self.steps[0].node


def _same_activation_shape(view: GraphView, tensor: str, rank: int, channels: int) -> bool:
    shape = view.shape(tensor)
    return shape is not None and len(shape) == rank and view.dim(tensor, view.channel_axis) == channels


def fold_chains(view: GraphView) -> tuple[list[FoldChain], list[Refusal]]:
    """Maximal foldable chains; after-Conv chains win when an op sits between two Convs.

    An intermediate tensor must have exactly one consumer and not be a graph output. Before a padded Conv only
    ``Mul`` folds exactly (an added constant would also have to shift the zero padding): such Add/Sub are returned
    as :class:`Refusal`.
    """
    used: set[str] = set()
    chains: list[FoldChain] = []
    refusals: list[Refusal] = []
    convs = [(n, conv_info(view, n)) for n in view.nodes if n.op_type in CONV_OPS]
    for conv, info in convs:
        if info is None:
            continue
        steps: list[AffineStep] = []
        t = conv.outputs[0]
        while True:
            nxt = view.single_consumer(t)
            if nxt is None or nxt.name in used:
                break
            st = affine_step(view, nxt)
            if st is None or st.x != t or not is_per_channel(view, st.const, info.rank, info.c_out):
                break
            steps.append(st)
            t = st.out
        if steps:
            chains.append(FoldChain(conv.name, "after", tuple(steps)))
            used.update(s.node for s in steps)
    for conv, info in convs:
        if info is None:
            continue
        rev: list[AffineStep] = []
        t = conv.inputs[0]
        consumer = conv
        while True:
            prod = view.producer(t)
            if prod is None or prod.name in used or view.single_consumer(t) is not consumer:
                break
            st = affine_step(view, prod)
            if st is None or not is_per_channel(view, st.const, info.rank, info.c_in):
                break
            if not _same_activation_shape(view, st.x, info.rank, info.c_in):
                break
            if info.padded and st.kind != "mul":
                refusals.append(
                    Refusal(
                        prod.name,
                        f"{prod.op_type} {prod.name!r} feeds the padded Conv {conv.name!r}: folding an added constant "
                        "into the bias is not exact at the borders (the zero padding would need shifting too)",
                    )
                )
                break
            rev.append(st)
            t = st.x
            consumer = prod
        if rev:
            chains.append(FoldChain(conv.name, "before", tuple(reversed(rev))))
            used.update(s.node for s in rev)
    return chains, refusals


# ----------------------------------------------------------------------------- conv stride
@dataclass(frozen=True)
class StrideMatch:
    conv: str
    strides: tuple[int, ...]
    conv_stride: int
    slice_steps: tuple[int, ...]


def slow_stride(strides: Sequence[int]) -> bool:
    """True unless the strides are uniform and in {1, 2, 3} (an empty list means stride 1)."""
    if not strides:
        return False
    return len(set(strides)) != 1 or strides[0] not in FAST_STRIDES


def split_stride(strides: Sequence[int]) -> tuple[int, tuple[int, ...]]:
    """Largest uniform fast stride ``g`` dividing every stride, and the per-axis Slice steps ``s // g``."""
    g = next(d for d in (3, 2, 1) if all(s % d == 0 for s in strides))
    return g, tuple(s // g for s in strides)


def strided_convs(view: GraphView) -> list[StrideMatch]:
    out: list[StrideMatch] = []
    for n in view.nodes:
        if n.op_type not in CONV_OPS:
            continue
        strides = _ints(n.attrs.get("strides")) or ()
        if slow_stride(strides):
            g, steps = split_stride(strides)
            out.append(StrideMatch(n.name, strides, g, steps))
    return out


# ----------------------------------------------------------------------------- input channel swap
@dataclass(frozen=True)
class ChannelSwap:
    """``result[..., j, ...] = input[..., perm[j], ...]`` along ``axis``, computed by ``nodes``."""

    input: str
    axis: int
    perm: tuple[int, ...]
    result: str
    nodes: tuple[str, ...]

    @property
    def key(self) -> str:
        return self.nodes[-1]


def _const_ints(view: GraphView, tensor: str | None) -> tuple[int, ...] | None:
    if not tensor or tensor not in view.constants:
        return None
    value = view.constants[tensor]
    if value.dtype.kind not in "iu":
        return None
    return tuple(int(v) for v in value.reshape(-1))


def _slice_indices(dim: int, start: int, end: int, step: int) -> list[int]:
    """ONNX Slice semantics on one axis (differs from Python for negative steps and clamping)."""
    if start < 0:
        start += dim
    if end < 0:
        end += dim
    if step > 0:
        start = min(max(start, 0), dim)
        end = min(max(end, 0), dim)
    else:
        start = min(max(start, 0), dim - 1)
        end = min(max(end, -1), dim - 1)
    return list(range(start, end, step))


def _segments(view: GraphView, node: Node, x: str, rank: int) -> dict[str, tuple[int, tuple[int, ...]]]:
    """Tensors computed by ``node`` from ``x`` as (axis, source indices along axis)."""
    out: dict[str, tuple[int, tuple[int, ...]]] = {}
    if not node.inputs or node.inputs[0] != x:
        return out
    if node.op_type == "Split":
        axis = _int(node.attrs.get("axis"), 0) % rank
        dim = view.dim(x, axis)
        sizes = _const_ints(view, node.inputs[1] if len(node.inputs) > 1 else None) or _ints(node.attrs.get("split"))
        n_out = len(node.outputs)
        if sizes is None:
            if dim is None:
                return out
            chunk = -(-dim // n_out)
            sizes = tuple([chunk] * (n_out - 1) + [dim - chunk * (n_out - 1)])
        if len(sizes) != n_out:
            return out
        offset = 0
        for name, size in zip(node.outputs, sizes, strict=True):
            out[name] = (axis, tuple(range(offset, offset + size)))
            offset += size
        return out
    if node.op_type == "Slice" and len(node.outputs) == 1:
        if len(node.inputs) >= 3:
            starts = _const_ints(view, node.inputs[1])
            ends = _const_ints(view, node.inputs[2])
            axes = _const_ints(view, node.inputs[3] if len(node.inputs) > 3 else None)
            steps = _const_ints(view, node.inputs[4] if len(node.inputs) > 4 else None)
            if len(node.inputs) > 3 and node.inputs[3] and axes is None:
                return out
            if len(node.inputs) > 4 and node.inputs[4] and steps is None:
                return out
        else:
            starts = _ints(node.attrs.get("starts"))
            ends = _ints(node.attrs.get("ends"))
            axes = _ints(node.attrs.get("axes"))
            steps = None
        if starts is None or ends is None or len(starts) != len(ends):
            return out
        axes = axes or tuple(range(len(starts)))
        steps = steps or (1,) * len(starts)
        sliced: tuple[int, tuple[int, ...]] | None = None
        for a, s, e, st in zip(axes, starts, ends, steps, strict=False):
            a %= rank
            dim = view.dim(x, a)
            if dim is None or st == 0:
                return out
            idx = _slice_indices(dim, s, e, st)
            if idx == list(range(dim)):
                continue  # full, untouched axis
            if sliced is not None:
                return out  # slices two axes: not a channel segment
            sliced = (a, tuple(idx))
        if sliced is not None:
            out[node.outputs[0]] = sliced
        return out
    if node.op_type == "Gather" and len(node.inputs) == 2 and len(node.outputs) == 1:
        axis = _int(node.attrs.get("axis"), 0) % rank
        dim = view.dim(x, axis)
        ind = view.constants.get(node.inputs[1])
        if dim is None or ind is None or ind.ndim != 1 or ind.dtype.kind not in "iu":
            return out
        gathered = tuple(int(i) + dim if int(i) < 0 else int(i) for i in ind)
        if all(0 <= i < dim for i in gathered):
            out[node.outputs[0]] = (axis, gathered)
    return out


def _is_reorder(idx: Sequence[int], dim: int | None) -> bool:
    return dim is not None and len(idx) == dim and sorted(idx) == list(range(dim)) and list(idx) != list(range(dim))


def channel_swaps(view: GraphView) -> list[ChannelSwap]:
    """Channel reorders of a graph input: Split/Slices + Concat, or a single full Gather/reversing Slice."""
    found: list[ChannelSwap] = []
    for x in view.inputs:
        rank = view.rank(x)
        if rank is None or rank < 2:
            continue
        channel_axes = {view.channel_axis % rank, rank - 1}
        segs: dict[str, tuple[int, tuple[int, ...]]] = {}
        seg_node: dict[str, str] = {}
        for n in view.consumers(x):
            for t, s in _segments(view, n, x, rank).items():
                if s[0] in channel_axes:
                    segs[t] = s
                    seg_node[t] = n.name
        if not segs:
            continue
        concat_used: set[str] = set()
        seen_concat: set[str] = set()
        for t in segs:
            for c in view.consumers(t):
                if c.op_type != "Concat" or c.name in seen_concat or len(c.outputs) != 1:
                    continue
                seen_concat.add(c.name)
                axis = _int(c.attrs.get("axis"), 0) % rank
                if not all(i in segs and segs[i][0] == axis for i in c.inputs):
                    continue
                idx = [j for i in c.inputs for j in segs[i][1]]
                if not _is_reorder(idx, view.dim(x, axis)):
                    continue
                nodes: list[str] = []
                for i in c.inputs:
                    if seg_node[i] not in nodes:
                        nodes.append(seg_node[i])
                nodes.append(c.name)
                found.append(ChannelSwap(x, axis, tuple(idx), c.outputs[0], tuple(nodes)))
                concat_used.update(c.inputs)
        for t, (seg_axis, seg_idx) in segs.items():
            if t not in concat_used and _is_reorder(seg_idx, view.dim(x, seg_axis)):
                found.append(ChannelSwap(x, seg_axis, seg_idx, t, (seg_node[t],)))
    return found


# ----------------------------------------------------------------------------- transpose / reshape chains
@dataclass(frozen=True)
class ReshapeChain:
    nodes: tuple[str, ...]
    op_types: tuple[str, ...]


def reshape_chains(view: GraphView) -> list[ReshapeChain]:
    """Connected groups (through data edges) of two or more Transpose/Reshape-like nodes."""
    parent: dict[str, str] = {}

    def find(a: str) -> str:
        root = a
        while parent[root] != root:
            root = parent[root]
        while parent[a] != root:
            parent[a], a = root, parent[a]
        return root

    for n in view.nodes:
        if n.op_type not in RESHAPE_LIKE_OPS or not n.inputs:
            continue
        parent.setdefault(n.name, n.name)
        prod = view.producer(n.inputs[0])
        if prod is not None and prod.op_type in RESHAPE_LIKE_OPS:
            parent.setdefault(prod.name, prod.name)
            ra, rb = find(n.name), find(prod.name)
            if ra != rb:
                parent[ra] = rb
    groups: dict[str, list[Node]] = {}
    for n in view.nodes:
        if n.name in parent:
            groups.setdefault(find(n.name), []).append(n)
    return [ReshapeChain(tuple(n.name for n in g), tuple(n.op_type for n in g)) for g in groups.values() if len(g) >= 2]
