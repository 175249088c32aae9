"""Rule ``input-channel-swap``: an input channel reorder (Split/Concat, Gather...) moved into the first Convs'
weights (``channel_swap="weights"``) or removed and left to the caller (``channel_swap="input"``)."""

from __future__ import annotations

import numpy as np
import onnx

from qc.graph.match import ChannelSwap, Refusal, channel_swaps, conv_info, is_per_channel
from qc.graph.rewrite.common import AppliedRewrite, InputPermutation, Options, Outcome, copy_model
from qc.graph.rewrite.editor import Editor
from qc.graph.view import GraphView, view_from_onnx

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


def rewrite_swap(model: onnx.ModelProto, only: set[str] | None, opts: Options) -> Outcome:
    model = copy_model(model)
    view = view_from_onnx(model)
    ed = Editor(model)
    out = Outcome(model)
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
