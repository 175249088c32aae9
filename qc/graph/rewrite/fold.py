"""Rule ``foldable-eltwise``: Add/Sub/Mul chains by constants folded into the neighbouring Conv's weights and bias."""

from __future__ import annotations

import numpy as np
import onnx

from qc.graph.match import FoldChain, Refusal, conv_info, fold_chains
from qc.graph.rewrite.common import AppliedRewrite, Options, Outcome, copy_model, std_domain
from qc.graph.rewrite.editor import Editor
from qc.graph.view import GraphView, view_from_onnx


def _channel_vector(c: np.ndarray, channels: int) -> np.ndarray:
    flat = c.astype(np.float64).reshape(-1)
    if flat.size == channels:
        return flat
    return np.full(channels, flat[0] if flat.size else 0.0)


def _affine(ed: Editor, chain: FoldChain, channels: int) -> tuple[np.ndarray, np.ndarray] | None:
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


def _set_bias(ed: Editor, conv: onnx.NodeProto, bias: np.ndarray) -> None:
    name = ed.add_const(bias, f"{conv.name}_folded_bias")
    if len(conv.input) >= 3:
        conv.input[2] = name
    else:
        conv.input.append(name)


def apply_fold(ed: Editor, view: GraphView, chain: FoldChain) -> str | None:
    """Fold ``chain`` into its Conv; returns a reason when it cannot."""
    conv = ed.by_name[chain.conv]
    info = conv_info(view, view.node(chain.conv))
    if info is None or not std_domain(conv):
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


def rewrite_fold(model: onnx.ModelProto, only: set[str] | None, _opts: Options) -> Outcome:
    current = copy_model(model)
    out = Outcome(current)
    passes = 1 if only is not None else 4
    for p in range(passes):
        view = view_from_onnx(current)
        chains, refusals = fold_chains(view)
        if p == 0:
            out.refused.extend(r for r in refusals if only is None or r.node in only)
        chains = [c for c in chains if only is None or c.key in only]
        if not chains:
            break
        ed = Editor(current)
        for ch in chains:
            reason = apply_fold(ed, view, ch)
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
