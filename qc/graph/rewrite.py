"""ONNX rewrites that remove DSP-slow patterns found by :mod:`qc.graph.lint`, each verified on onnxruntime.

:func:`fix_model` applies, in this order, ``div`` (constant Div -> Mul by the reciprocal), ``foldable-eltwise``
(Add/Sub/Mul folded into the neighbouring Conv), ``input-channel-swap`` (input Split/Concat reorder moved into the
first Conv's weights, or removed and left to the caller) and ``conv-stride`` (odd stride -> fast stride + Slice).
After each rule the rewritten model is run on onnxruntime (CPU, graph optimizations off) on the check inputs and
every output is compared with the original model's; a rule whose result differs beyond the tolerance is retried
instance by instance, and the instances that still differ are rolled back and reported in ``unsafe``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import onnx
from onnx import helper, numpy_helper

from qc import jsonio
from qc.errors import ConfigError, DataError, ModelError
from qc.graph.lint import RULES
from qc.graph.match import (
    ChannelSwap,
    FoldChain,
    Refusal,
    channel_swaps,
    conv_info,
    div_matches,
    fold_chains,
    is_per_channel,
    strided_convs,
)
from qc.graph.view import GraphView, assign_node_names, constant_node_value, view_from_onnx

__all__ = [
    "REWRITABLE_RULES",
    "AppliedRewrite",
    "InputPermutation",
    "RewriteResult",
    "fix_model",
    "ort_session",
    "random_inputs",
    "run_onnx",
    "save_fixed",
]

REWRITABLE_RULES: tuple[str, ...] = ("div", "foldable-eltwise", "input-channel-swap", "conv-stride")
ChannelSwapMode = Literal["weights", "input"]
_INT64_MAX = int(np.iinfo(np.int64).max)

# Ops that act on every channel alike: a channel permutation commutes with them.
_CHANNEL_AGNOSTIC = frozenset(
    {
        "Relu",
        "LeakyRelu",
        "Clip",
        "Sigmoid",
        "HardSigmoid",
        "HardSwish",
        "Tanh",
        "Elu",
        "Selu",
        "Softplus",
        "Erf",
        "Cast",
        "Identity",
        "Neg",
        "Abs",
        "Sqrt",
        "Exp",
        "Log",
        "Floor",
        "Ceil",
        "Round",
        "Reciprocal",
    }
)


@dataclass(frozen=True)
class InputPermutation:
    """The rewritten model wants ``new[..., j, ...] = old[..., perm[j], ...]`` along ``axis`` of ``input``."""

    input: str
    axis: int
    perm: tuple[int, ...]

    def apply(self, array: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.take(array, list(self.perm), axis=self.axis))


@dataclass(frozen=True)
class AppliedRewrite:
    """One applied rewrite: ``node`` is the main node it is keyed by, ``nodes`` every node removed or changed."""

    rule: str
    node: str
    nodes: tuple[str, ...]
    description: str
    note: str = ""
    input_permutation: InputPermutation | None = None


@dataclass
class RewriteResult:
    """The fixed model, what was applied, what was refused or rolled back, and the measured output differences.

    ``max_abs_diff[rule]`` is the largest absolute difference between the original model's outputs and the model
    after that rule's accepted rewrites (cumulative), over all check inputs and outputs.
    """

    model: onnx.ModelProto
    applied: list[AppliedRewrite] = field(default_factory=list)
    unsafe: list[tuple[str, str]] = field(default_factory=list)
    max_abs_diff: dict[str, float] = field(default_factory=dict)

    @property
    def input_permutations(self) -> list[InputPermutation]:
        return [a.input_permutation for a in self.applied if a.input_permutation is not None]

    def feed(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Inputs for the fixed model from inputs meant for the original (applies any input permutation)."""
        out = dict(inputs)
        for p in self.input_permutations:
            if p.input in out:
                out[p.input] = p.apply(out[p.input])
        return out


# ----------------------------------------------------------------------------- onnxruntime helpers
def ort_session(model: onnx.ModelProto, *, optimize: bool = False, threads: int = 1) -> object:
    """An onnxruntime CPU session for ``model`` (graph optimizations off unless ``optimize``)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def run_onnx(
    model: onnx.ModelProto, feeds: Sequence[Mapping[str, np.ndarray]], *, optimize: bool = False
) -> list[dict[str, np.ndarray]]:
    """Run ``model`` on onnxruntime (CPU, one thread) for every feed dict; outputs by name."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    results: list[dict[str, np.ndarray]] = []
    for f in feeds:
        values = sess.run(None, dict(f))
        results.append({n: np.asarray(v) for n, v in zip(names, values, strict=True)})
    return results


def _runtime_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    inits = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits]


def random_inputs(model: onnx.ModelProto, *, count: int = 2, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """``count`` random feeds matching the model's inputs (symbolic dims: 1 on axis 0, else 16).

    Floats are standard normal, integers 0..1, booleans random.
    """
    rng = np.random.default_rng(seed)
    specs: list[tuple[str, np.dtype[np.generic], tuple[int, ...]]] = []
    for vi in _runtime_inputs(model):
        if not vi.type.HasField("tensor_type"):
            raise ModelError(f"Input {vi.name!r} is not a tensor; pass check_inputs explicitly.")
        tt = vi.type.tensor_type
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tt.elem_type))
        dims = tuple(
            int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else (1 if i == 0 else 16)
            for i, d in enumerate(tt.shape.dim)
        )
        specs.append((vi.name, dtype, dims))
    feeds: list[dict[str, np.ndarray]] = []
    for _ in range(count):
        feed: dict[str, np.ndarray] = {}
        for name, dtype, dims in specs:
            if dtype.kind == "f":
                feed[name] = rng.standard_normal(dims).astype(dtype)
            elif dtype.kind == "b":
                feed[name] = rng.integers(0, 2, dims).astype(bool)
            else:
                feed[name] = rng.integers(0, 2, dims).astype(dtype)
        feeds.append(feed)
    return feeds


def _compare(
    ref: Sequence[Mapping[str, np.ndarray]], got: Sequence[Mapping[str, np.ndarray]], rtol: float, atol: float
) -> tuple[bool, float, str]:
    worst = 0.0
    bad = ""
    for r, g in zip(ref, got, strict=True):
        for name, a in r.items():
            if name not in g:
                return False, float("inf"), f"output {name!r} is missing from the rewritten model"
            b = g[name]
            if a.shape != b.shape:
                return False, float("inf"), f"output {name!r} changed shape {a.shape} -> {b.shape}"
            if a.dtype.kind in "fc":
                a64 = a.astype(np.float64)
                b64 = b.astype(np.float64)
                both_nan = np.isnan(a64) & np.isnan(b64)
                diff = np.where(both_nan, 0.0, np.abs(a64 - b64))
                diff = np.where(np.isnan(diff), np.inf, diff)
                tol = atol + rtol * np.abs(np.where(np.isnan(a64), 0.0, a64))
            else:
                diff = (a != b).astype(np.float64)
                tol = np.zeros_like(diff)
            d = float(diff.max()) if diff.size else 0.0
            worst = max(worst, d)
            if diff.size and bool(np.any(diff > tol)) and not bad:
                bad = f"output {name!r} differs by up to {d:.3g} (rtol {rtol:g}, atol {atol:g})"
    return (not bad), worst, bad


# ----------------------------------------------------------------------------- editing helper
class _Editor:
    """Mutable wrapper over a ModelProto copy: constant lookup, new initializers, node removal/insertion."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.model = model
        self.graph = model.graph
        self.nodes: list[onnx.NodeProto] = list(self.graph.node)
        self.by_name = {n.name: n for n in self.nodes}
        self.inits = {i.name: i for i in self.graph.initializer}
        self.producer: dict[str, onnx.NodeProto] = {o: n for n in self.nodes for o in n.output if o}
        self.taken: set[str] = set(self.inits) | set(self.producer) | {i.name for i in self.graph.input}
        self.taken |= {n.name for n in self.nodes}
        self.removed: set[str] = set()

    def opset(self) -> int:
        for imp in self.model.opset_import:
            if imp.domain in ("", "ai.onnx"):
                return int(imp.version)
        return 1

    def value(self, tensor: str) -> np.ndarray | None:
        if tensor in self.inits:
            return numpy_helper.to_array(self.inits[tensor])
        prod = self.producer.get(tensor)
        if prod is None or prod.domain not in ("", "ai.onnx"):
            return None
        if prod.op_type == "Constant":
            return constant_node_value(prod)
        if prod.op_type == "Identity" and len(prod.input) == 1:
            return self.value(prod.input[0])
        return None

    def fresh(self, base: str) -> str:
        name = base
        k = 1
        while name in self.taken:
            name = f"{base}_{k}"
            k += 1
        self.taken.add(name)
        return name

    def add_const(self, array: np.ndarray, base: str) -> str:
        name = self.fresh(base)
        init = numpy_helper.from_array(np.ascontiguousarray(array), name)
        self.graph.initializer.append(init)
        self.inits[name] = init
        if self.model.ir_version < 4:
            self.graph.input.append(helper.make_tensor_value_info(name, init.data_type, list(array.shape)))
        return name

    def remove(self, name: str) -> None:
        self.removed.add(name)

    def insert_after(self, anchor: str, node: onnx.NodeProto) -> None:
        idx = next(i for i, n in enumerate(self.nodes) if n.name == anchor)
        self.nodes.insert(idx + 1, node)
        self.by_name[node.name] = node
        self.taken.add(node.name)
        for o in node.output:
            self.producer[o] = node
            self.taken.add(o)

    def replace_uses(self, old: str, new: str, only: set[str] | None = None) -> None:
        for n in self.nodes:
            if n.name in self.removed or (only is not None and n.name not in only):
                continue
            for i, t in enumerate(n.input):
                if t == old:
                    n.input[i] = new

    def finish(self) -> onnx.ModelProto:
        kept = [n for n in self.nodes if n.name not in self.removed]
        del self.graph.node[:]
        self.graph.node.extend(kept)
        _cleanup(self.model)
        return self.model


def _subgraph_refs(graph: onnx.GraphProto) -> set[str]:
    refs: set[str] = set()
    for n in graph.node:
        for a in n.attribute:
            subs = [a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)
            for g in subs:
                for sn in g.node:
                    refs.update(sn.input)
                refs |= _subgraph_refs(g)
    return refs


def _cleanup(model: onnx.ModelProto) -> None:
    """Drop Constant nodes and initializers nobody reads, and value_info of tensors that no longer exist."""
    graph = model.graph
    while True:
        used = {t for n in graph.node for t in n.input} | {o.name for o in graph.output} | _subgraph_refs(graph)
        dead = [
            n
            for n in graph.node
            if n.op_type == "Constant" and n.domain in ("", "ai.onnx") and all(o not in used for o in n.output)
        ]
        if not dead:
            break
        keep = [n for n in graph.node if all(n is not d for d in dead)]
        del graph.node[:]
        graph.node.extend(keep)
    used = {t for n in graph.node for t in n.input} | {o.name for o in graph.output} | _subgraph_refs(graph)
    unused = {i.name for i in graph.initializer if i.name not in used}
    if unused:
        keep_inits = [i for i in graph.initializer if i.name not in unused]
        del graph.initializer[:]
        graph.initializer.extend(keep_inits)
        keep_inputs = [i for i in graph.input if i.name not in unused]
        del graph.input[:]
        graph.input.extend(keep_inputs)
    produced = {o for n in graph.node for o in n.output}
    keep_vi = [v for v in graph.value_info if v.name in produced]
    if len(keep_vi) != len(graph.value_info):
        del graph.value_info[:]
        graph.value_info.extend(keep_vi)


def _named_copy(model: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for n, name in zip(out.graph.node, assign_node_names(out.graph.node), strict=True):
        n.name = name
    return out


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


@dataclass
class _Outcome:
    model: onnx.ModelProto
    applied: list[AppliedRewrite] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)


@dataclass(frozen=True)
class _Options:
    channel_swap: ChannelSwapMode


_Rewriter = Callable[[onnx.ModelProto, set[str] | None, _Options], _Outcome]


def _std_domain(node: onnx.NodeProto) -> bool:
    return node.domain in ("", "ai.onnx")


# ----------------------------------------------------------------------------- div
def _rewrite_div(model: onnx.ModelProto, only: set[str] | None, _opts: _Options) -> _Outcome:
    model = _copy(model)
    view = view_from_onnx(model)
    ed = _Editor(model)
    out = _Outcome(model)
    for m in div_matches(view):
        if not m.constant_divisor or (only is not None and m.node not in only):
            continue
        node = ed.by_name[m.node]
        if not _std_domain(node):
            continue
        c = ed.value(m.divisor)
        if c is None:
            out.refused.append(Refusal(m.node, f"divisor {m.divisor!r} has no readable value"))
            continue
        if c.dtype.kind != "f":
            out.refused.append(Refusal(m.node, f"integer division ({c.dtype}) is not a multiplication"))
            continue
        if not np.all(np.isfinite(c)) or np.any(c == 0):
            out.refused.append(Refusal(m.node, f"divisor {m.divisor!r} holds zero or non-finite values"))
            continue
        recip64 = 1.0 / c.astype(np.float64)
        recip = recip64.astype(c.dtype)
        if not np.all(np.isfinite(recip)):
            out.refused.append(Refusal(m.node, f"1/{m.divisor!r} overflows {c.dtype}"))
            continue
        node.op_type = "Mul"
        node.input[1] = ed.add_const(recip, f"{m.divisor}_reciprocal")
        out.applied.append(
            AppliedRewrite(
                "div",
                m.node,
                (m.node,),
                f"Div {m.node!r} by constant {m.divisor!r} is now a Mul by its reciprocal.",
            )
        )
    out.model = ed.finish()
    return out


# ----------------------------------------------------------------------------- foldable eltwise
def _channel_vector(c: np.ndarray, channels: int) -> np.ndarray:
    flat = c.astype(np.float64).reshape(-1)
    if flat.size == channels:
        return flat
    return np.full(channels, flat[0] if flat.size else 0.0)


def _affine(ed: _Editor, chain: FoldChain, channels: int) -> tuple[np.ndarray, np.ndarray] | None:
    a = np.ones(channels)
    b = np.zeros(channels)
    for st in chain.steps:
        raw = ed.value(st.const)
        if raw is None:
            return None
        c = _channel_vector(raw, channels)
        if st.kind == "add":
            b = b + c
        elif st.kind == "sub":
            b = b - c
        elif st.kind == "rsub":
            a, b = -a, c - b
        else:
            a, b = a * c, b * c
    return a, b


def _set_bias(ed: _Editor, conv: onnx.NodeProto, bias: np.ndarray) -> None:
    name = ed.add_const(bias, f"{conv.name}_folded_bias")
    if len(conv.input) >= 3:
        conv.input[2] = name
    else:
        conv.input.append(name)


def _apply_fold(ed: _Editor, view: GraphView, chain: FoldChain) -> str | None:
    """Fold ``chain`` into its Conv; returns a reason when it cannot."""
    conv = ed.by_name[chain.conv]
    info = conv_info(view, view.node(chain.conv))
    if info is None or not _std_domain(conv):
        return "the Conv's weights are not constant"
    w_raw = ed.value(conv.input[1])
    if w_raw is None or w_raw.dtype.kind != "f":
        return "the Conv weights are not readable floats"
    bias_name = conv.input[2] if len(conv.input) > 2 and conv.input[2] else None
    b_raw = ed.value(bias_name) if bias_name else None
    if bias_name and b_raw is None:
        return "the Conv bias is not readable"
    w = w_raw.astype(np.float64)
    c_out, cin_g = w.shape[0], w.shape[1]
    bias = b_raw.astype(np.float64).reshape(-1) if b_raw is not None else np.zeros(c_out)
    channels = c_out if chain.side == "after" else info.c_in
    ab = _affine(ed, chain, channels)
    if ab is None:
        return "a folded constant has no readable value"
    a, b = ab
    spatial = (1,) * (w.ndim - 2)
    if chain.side == "after":
        w_new = w * a.reshape((c_out, 1, *spatial))
        b_new = a * bias + b
        conv.output[0] = chain.steps[-1].out
    else:
        groups = info.c_in // cin_g
        per_group_out = c_out // groups
        group_of = np.arange(c_out) // per_group_out
        a_mat = a.reshape(groups, cin_g)[group_of]  # (c_out, cin_g)
        b_mat = b.reshape(groups, cin_g)[group_of]
        w_new = w * a_mat.reshape((c_out, cin_g, *spatial))
        b_new = bias + (w.sum(axis=tuple(range(2, w.ndim))) * b_mat).sum(axis=1)
        conv.input[0] = chain.steps[0].x
    conv.input[1] = ed.add_const(w_new.astype(w_raw.dtype), f"{conv.name}_folded_weight")
    _set_bias(ed, conv, b_new.astype(w_raw.dtype))
    for s in chain.steps:
        ed.remove(s.node)
    return None


def _rewrite_fold(model: onnx.ModelProto, only: set[str] | None, _opts: _Options) -> _Outcome:
    current = _copy(model)
    out = _Outcome(current)
    passes = 1 if only is not None else 4
    for p in range(passes):
        view = view_from_onnx(current)
        chains, refusals = fold_chains(view)
        if p == 0:
            out.refused.extend(r for r in refusals if only is None or r.node in only)
        chains = [c for c in chains if only is None or c.key in only]
        if not chains:
            break
        ed = _Editor(current)
        for ch in chains:
            reason = _apply_fold(ed, view, ch)
            if reason is not None:
                out.refused.append(Refusal(ch.key, reason))
                continue
            kinds = " -> ".join(view.node(n).op_type for n in ch.nodes)
            where = "before" if ch.side == "before" else "after"
            out.applied.append(
                AppliedRewrite(
                    "foldable-eltwise",
                    ch.key,
                    (*ch.nodes, ch.conv),
                    f"{kinds} {where} Conv {ch.conv!r} folded into its weights and bias.",
                )
            )
        current = ed.finish()
    out.model = current
    return out


# ----------------------------------------------------------------------------- input channel swap
def _swap_region(view: GraphView, swap: ChannelSwap) -> tuple[list[tuple[str, str, int]], str | None]:
    """Constants to permute downstream of the swap: (tensor, consumer node, axis in the constant).

    Walks from the swap result through channel-agnostic and per-channel constant ops to Convs with group 1.
    Returns a reason when the permutation cannot be pushed into weights.
    """
    rank = view.rank(swap.input) or 0
    channels = len(swap.perm)
    todo = [swap.result]
    seen_nodes: set[str] = set()
    edits: list[tuple[str, str, int]] = []
    removed = set(swap.nodes)
    while todo:
        t = todo.pop()
        if view.is_graph_output(t):
            return [], f"the reordered tensor {t!r} is a graph output"
        for n in view.consumers(t):
            if n.name in removed:
                continue
            if n.name in seen_nodes or sum(1 for i in n.inputs if i == t) != 1:
                return [], f"{n.op_type} {n.name!r} reads the reordered channels twice"
            seen_nodes.add(n.name)
            if n.op_type == "Conv":
                info = conv_info(view, n)
                group = n.attrs.get("group", 1)
                if n.inputs[0] != t or info is None or group != 1 or swap.axis != 1:
                    return [], f"Conv {n.name!r} is not a plain group-1 NCHW Conv with constant weights"
                edits.append((n.inputs[1], n.name, 1))
                continue
            if n.op_type in ("Add", "Sub", "Mul", "Div") and len(n.inputs) == 2:
                other = n.inputs[1] if n.inputs[0] == t else n.inputs[0]
                if not view.is_constant(other) or not is_per_channel(view, other, rank, channels):
                    return [], f"{n.op_type} {n.name!r} mixes the channels with a non per-channel operand"
                cshape = view.shape(other) or ()
                caxis = swap.axis - (rank - len(cshape))
                if caxis >= 0 and cshape[caxis] == channels:
                    edits.append((other, n.name, caxis))
                todo.append(n.outputs[0])
                continue
            if (
                n.op_type in _CHANNEL_AGNOSTIC
                and n.inputs[0] == t
                and all(view.is_constant(i) and view.constants[i].size == 1 for i in n.inputs[1:] if i)
            ):
                todo.extend(o for o in n.outputs if o)
                continue
            return [], f"{n.op_type} {n.name!r} consumes the reordered channels"
    return edits, None


def _removable_swap_nodes(view: GraphView, swap: ChannelSwap) -> list[str]:
    """The swap's nodes whose outputs are only read inside the swap (a shared Split stays)."""
    members = set(swap.nodes)
    removable: list[str] = []
    for name in reversed(swap.nodes):
        node = view.node(name)
        if name == swap.key:
            removable.append(name)
            continue
        ok = all(
            not view.is_graph_output(o) and all(c.name in members and c.name in removable for c in view.consumers(o))
            for o in node.outputs
            if o
        )
        if ok:
            removable.append(name)
    return removable


def _rewrite_swap(model: onnx.ModelProto, only: set[str] | None, opts: _Options) -> _Outcome:
    model = _copy(model)
    view = view_from_onnx(model)
    ed = _Editor(model)
    out = _Outcome(model)
    done_inputs: set[str] = set()
    for swap in channel_swaps(view):
        if only is not None and swap.key not in only:
            continue
        if swap.input in done_inputs:
            out.refused.append(Refusal(swap.key, f"input {swap.input!r} is already being rewritten"))
            continue
        removable = _removable_swap_nodes(view, swap)
        inv = np.argsort(np.array(swap.perm))
        order = list(swap.perm)
        if opts.channel_swap == "weights":
            edits, reason = _swap_region(view, swap)
            if reason is not None:
                out.refused.append(
                    Refusal(swap.key, f"{reason}; use channel_swap='input' to remove it by feeding the other order")
                )
                continue
            values = [ed.value(tensor) for tensor, _, _ in edits]
            unreadable = [t for (t, _, _), v in zip(edits, values, strict=True) if v is None]
            if unreadable:
                out.refused.append(Refusal(swap.key, f"constant(s) {unreadable} have no readable value"))
                continue
            for (tensor, consumer, axis), value in zip(edits, values, strict=True):
                assert value is not None
                node = ed.by_name[consumer]
                new = ed.add_const(np.take(value, inv, axis=axis), f"{tensor}_channels_permuted")
                for i, t in enumerate(node.input):
                    if t == tensor:
                        node.input[i] = new
            ed.replace_uses(swap.result, swap.input)
            for name in removable:
                ed.remove(name)
            out.applied.append(
                AppliedRewrite(
                    "input-channel-swap",
                    swap.key,
                    tuple(removable) + tuple(dict.fromkeys(c for _, c, _ in edits)),
                    f"Channel reorder {order} of input {swap.input!r} removed; the Conv kernels (and per-channel "
                    "constants on the way) were permuted instead.",
                    note=f"Input {swap.input!r} keeps its channel order: callers feed exactly the same data as before.",
                )
            )
        else:
            others = [c.name for c in view.consumers(swap.input) if c.name not in removable]
            if others or view.is_graph_output(swap.input) or view.is_graph_output(swap.result):
                out.refused.append(
                    Refusal(swap.key, f"input {swap.input!r} is also read by {others or 'the graph outputs'}")
                )
                continue
            ed.replace_uses(swap.result, swap.input)
            for name in removable:
                ed.remove(name)
            perm = InputPermutation(swap.input, swap.axis, swap.perm)
            out.applied.append(
                AppliedRewrite(
                    "input-channel-swap",
                    swap.key,
                    tuple(removable),
                    f"Channel reorder {order} of input {swap.input!r} removed.",
                    note=f"The caller must now feed input {swap.input!r} in the other channel order: channel j "
                    f"along axis {swap.axis} must hold what was channel {order}[j] (e.g. RGB instead of BGR). "
                    "RewriteResult.feed() converts old-style inputs.",
                    input_permutation=perm,
                )
            )
        done_inputs.add(swap.input)
    out.model = ed.finish()
    return out


# ----------------------------------------------------------------------------- conv stride
def _same_pads(
    in_shape: Sequence[int], kernel: Sequence[int], strides: Sequence[int], dilations: Sequence[int], upper: bool
) -> list[int]:
    begins: list[int] = []
    ends: list[int] = []
    for size, k, s, d in zip(in_shape, kernel, strides, dilations, strict=True):
        out = -(-size // s)
        total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
        small, large = total // 2, total - total // 2
        begins.append(small if upper else large)
        ends.append(large if upper else small)
    return begins + ends


def _set_ints_attr(node: onnx.NodeProto, name: str, values: Sequence[int]) -> None:
    for a in list(node.attribute):
        if a.name == name:
            node.attribute.remove(a)
    node.attribute.append(helper.make_attribute(name, list(values)))


def _rewrite_stride(model: onnx.ModelProto, only: set[str] | None, _opts: _Options) -> _Outcome:
    model = _copy(model)
    view = view_from_onnx(model)
    ed = _Editor(model)
    out = _Outcome(model)
    for m in strided_convs(view):
        if only is not None and m.conv not in only:
            continue
        conv = ed.by_name[m.conv]
        if not _std_domain(conv):
            continue
        if ed.opset() < 10:
            out.refused.append(Refusal(m.conv, "Slice with steps needs opset >= 10"))
            continue
        vnode = view.node(m.conv)
        d = len(m.strides)
        auto_pad = vnode.attrs.get("auto_pad", "NOTSET")
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            in_shape = view.shape(conv.input[0])
            wshape = view.shape(conv.input[1])
            dil = vnode.attrs.get("dilations") or [1] * d
            kern = vnode.attrs.get("kernel_shape") or (list(wshape[2:]) if wshape is not None else None)
            spatial = list(in_shape[2:]) if in_shape is not None else []
            if (
                len(spatial) != d
                or not all(isinstance(v, int) for v in spatial)
                or not isinstance(kern, (list, tuple))
                or not isinstance(dil, (list, tuple))
            ):
                out.refused.append(Refusal(m.conv, "auto_pad SAME with unknown spatial input size"))
                continue
            pads = _same_pads(
                [int(v) for v in spatial],
                [int(v) for v in kern],
                list(m.strides),
                [int(v) for v in dil],
                auto_pad == "SAME_UPPER",
            )
            for a in list(conv.attribute):
                if a.name == "auto_pad":
                    conv.attribute.remove(a)
            _set_ints_attr(conv, "pads", pads)
        elif auto_pad == "VALID":
            for a in list(conv.attribute):
                if a.name == "auto_pad":
                    conv.attribute.remove(a)
            _set_ints_attr(conv, "pads", [0] * (2 * d))
        _set_ints_attr(conv, "strides", [m.conv_stride] * d)
        final = conv.output[0]
        full = ed.fresh(f"{final}_stride{m.conv_stride}")
        conv.output[0] = full
        axes = [2 + i for i, s in enumerate(m.slice_steps) if s > 1]
        steps = [s for s in m.slice_steps if s > 1]
        starts = ed.add_const(np.zeros(len(axes), np.int64), f"{m.conv}_slice_starts")
        ends = ed.add_const(np.full(len(axes), _INT64_MAX, np.int64), f"{m.conv}_slice_ends")
        axes_t = ed.add_const(np.array(axes, np.int64), f"{m.conv}_slice_axes")
        steps_t = ed.add_const(np.array(steps, np.int64), f"{m.conv}_slice_steps")
        slice_name = ed.fresh(f"{m.conv}_stride_slice")
        ed.insert_after(
            m.conv, helper.make_node("Slice", [full, starts, ends, axes_t, steps_t], [final], name=slice_name)
        )
        factor = int(np.prod(m.slice_steps))
        out.applied.append(
            AppliedRewrite(
                "conv-stride",
                m.conv,
                (m.conv, slice_name),
                f"Conv {m.conv!r} strides {list(m.strides)} -> {[m.conv_stride] * d} followed by Slice "
                f"{slice_name!r} with steps {list(m.slice_steps)}.",
                note=f"The Conv now computes {factor}x more outputs before the Slice drops them: check the device "
                "speed.",
            )
        )
    out.model = ed.finish()
    return out


_REWRITERS: dict[str, _Rewriter] = {
    "div": _rewrite_div,
    "foldable-eltwise": _rewrite_fold,
    "input-channel-swap": _rewrite_swap,
    "conv-stride": _rewrite_stride,
}


# ----------------------------------------------------------------------------- driver
def _check_feeds(model: onnx.ModelProto, feeds: Sequence[Mapping[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    names = [i.name for i in _runtime_inputs(model)]
    out: list[dict[str, np.ndarray]] = []
    for k, f in enumerate(feeds):
        missing = [n for n in names if n not in f]
        if missing:
            raise DataError(f"check_inputs[{k}] lacks model input(s) {missing}; the model wants {names}.")
        out.append({n: np.asarray(f[n]) for n in names})
    if not out:
        raise DataError("check_inputs is empty; pass None to use random inputs.")
    return out


def _verify(
    candidate: onnx.ModelProto,
    feeds: Sequence[Mapping[str, np.ndarray]],
    perms: Sequence[InputPermutation],
    reference: Sequence[Mapping[str, np.ndarray]],
    *,
    rtol: float,
    atol: float,
) -> tuple[bool, float, str]:
    try:
        onnx.checker.check_model(candidate)
    except Exception as exc:
        return False, float("inf"), f"the rewritten model is invalid ONNX ({exc})"
    fed: list[dict[str, np.ndarray]] = []
    for f in feeds:
        g = dict(f)
        for p in perms:
            g[p.input] = p.apply(g[p.input])
        fed.append(g)
    try:
        got = run_onnx(candidate, fed)
    except Exception as exc:
        return False, float("inf"), f"onnxruntime cannot run the rewritten model ({exc})"
    return _compare(reference, got, rtol, atol)


def fix_model(
    model: onnx.ModelProto,
    rules: Sequence[str] | None = None,
    *,
    check_inputs: Sequence[Mapping[str, np.ndarray]] | None = None,
    rtol: float = 1e-4,
    atol: float = 1e-4,
    channel_swap: ChannelSwapMode = "weights",
    seed: int = 0,
) -> RewriteResult:
    """Rewrite ``model`` (not modified) to remove the patterns of ``rules`` (all rewritable rules when None).

    Every rule's result is checked on onnxruntime against the original with ``check_inputs`` (two random feeds of
    the declared shapes when None): elementwise ``|new - old| <= atol + rtol * |old|`` on every output. Lint-only
    rules (``matmul``, ...) are listed in ``unsafe`` as having no rewrite; unknown ids raise ConfigError.

    ``channel_swap``: ``"weights"`` moves an input channel reorder into the first Conv's weights (input contract
    unchanged); ``"input"`` just deletes the reorder, and the caller must then feed the other channel order
    (see :attr:`AppliedRewrite.input_permutation` and :meth:`RewriteResult.feed`).
    """
    if not isinstance(model, onnx.ModelProto):
        raise ModelError(f"fix_model needs an onnx.ModelProto, got {type(model).__name__}.")
    if channel_swap not in ("weights", "input"):
        raise ConfigError(f"channel_swap must be 'weights' or 'input', got {channel_swap!r}.")
    requested = list(REWRITABLE_RULES) if rules is None else list(rules)
    unknown = [r for r in requested if r not in RULES]
    if unknown:
        raise ConfigError(f"Unknown rule(s) {unknown}; known rules are {sorted(RULES)}.")
    opts = _Options(channel_swap)
    result = RewriteResult(model=_named_copy(model))
    for r in requested:
        if r not in REWRITABLE_RULES:
            result.unsafe.append((r, f"no automatic rewrite exists for rule {r!r}; fix the model by hand"))
    todo = [r for r in REWRITABLE_RULES if r in requested]
    if not todo:
        return result

    feeds = _check_feeds(model, check_inputs) if check_inputs is not None else random_inputs(model, seed=seed)
    try:
        reference = run_onnx(model, feeds)
    except Exception as exc:
        raise ModelError(f"onnxruntime cannot run the original model, so no rewrite can be verified ({exc}).") from exc

    perms: list[InputPermutation] = []
    current = result.model
    for rule in todo:
        rewriter = _REWRITERS[rule]
        outcome = rewriter(current, None, opts)
        result.unsafe.extend((rule, f"{r.node}: {r.reason}") for r in outcome.refused)
        if not outcome.applied:
            continue
        new_perms = [a.input_permutation for a in outcome.applied if a.input_permutation is not None]
        ok, diff, msg = _verify(outcome.model, feeds, perms + new_perms, reference, rtol=rtol, atol=atol)
        if ok:
            current = outcome.model
            result.applied.extend(outcome.applied)
            perms.extend(new_perms)
            result.max_abs_diff[rule] = diff
            continue
        # Something in the batch is wrong: retry one instance at a time, keep the ones that verify.
        for app in outcome.applied:
            single = rewriter(current, {app.node}, opts)
            if not single.applied:
                result.unsafe.append((rule, f"{app.node}: rolled back (could not be re-applied alone; batch: {msg})"))
                continue
            one_perms = [a.input_permutation for a in single.applied if a.input_permutation is not None]
            ok1, d1, m1 = _verify(single.model, feeds, perms + one_perms, reference, rtol=rtol, atol=atol)
            if ok1:
                current = single.model
                result.applied.extend(single.applied)
                perms.extend(one_perms)
                result.max_abs_diff[rule] = max(result.max_abs_diff.get(rule, 0.0), d1)
            else:
                result.unsafe.append((rule, f"{app.node}: rolled back: {m1}"))
    result.model = current
    return result


def save_fixed(result: RewriteResult, path: str | Path, *, sidecar: bool = True) -> Path:
    """Write the fixed model to ``path`` and, with ``sidecar``, ``<path>.rewrites.json`` describing the rewrites.

    Models over ~1.8 GB are written with external data next to the file.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    big = result.model.ByteSize() > 1_800_000_000
    onnx.save_model(
        result.model,
        str(target),
        save_as_external_data=big,
        all_tensors_to_one_file=True,
        location=f"{target.name}.data" if big else None,
    )
    if sidecar:
        info = {
            "applied": [asdict(a) for a in result.applied],
            "unsafe": [{"rule": r, "reason": why} for r, why in result.unsafe],
            "max_abs_diff": result.max_abs_diff,
        }
        Path(f"{target}.rewrites.json").write_text(jsonio.dumps(info, indent=2, default=list) + "\n")
    return target
