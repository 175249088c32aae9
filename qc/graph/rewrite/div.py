"""Rule ``div``: a Div by a constant becomes a Mul by its reciprocal."""

from __future__ import annotations

import numpy as np
import onnx

from qc.graph.match import Refusal, div_matches
from qc.graph.rewrite.common import AppliedRewrite, Options, Outcome, copy_model, std_domain
from qc.graph.rewrite.editor import Editor
from qc.graph.view import view_from_onnx


def rewrite_div(model: onnx.ModelProto, only: set[str] | None, _opts: Options) -> Outcome:
    model = copy_model(model)
    view = view_from_onnx(model)
    ed = Editor(model)
    out = Outcome(model)
    for m in div_matches(view):
        if not m.constant_divisor or (only is not None and m.node not in only):
            continue
        node = ed.by_name[m.node]
        if not std_domain(node):
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
