"""Rule ``conv-stride``: a Conv with an odd stride becomes a Conv with a fast stride followed by a strided Slice."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import helper

from qc.graph.match import Refusal, strided_convs
from qc.graph.rewrite.common import AppliedRewrite, Options, Outcome, copy_model, std_domain
from qc.graph.rewrite.editor import Editor
from qc.graph.view import view_from_onnx

_INT64_MAX = int(np.iinfo(np.int64).max)


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


def rewrite_stride(model: onnx.ModelProto, only: set[str] | None, _opts: Options) -> Outcome:
    model = copy_model(model)
    view = view_from_onnx(model)
    ed = Editor(model)
    out = Outcome(model)
    for m in strided_convs(view):
        if only is not None and m.conv not in only:
            continue
        conv = ed.by_name[m.conv]
        if not std_domain(conv):
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
