"""Slow-op lint for models headed to the Hexagon DSP (HTP) through SNPE/QNN.

Each rule is a function ``GraphView -> list[Finding]`` registered in :data:`RULES`; :func:`lint` runs them all (or a
subset), attaches each finding's share of the measured run time when a per-layer profile is given, and orders the
findings worst first. Rules and the reasons behind them come from the RVC4 speed findings (Div, MatMul, odd
strides, input channel swaps, unfused Add/Mul next to Conv, Transpose/Reshape, channel counts).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum

from qc.errors import ConfigError
from qc.graph.match import (
    MATMUL_OPS,
    channel_swaps,
    conv_info,
    div_matches,
    fold_chains,
    reshape_chains,
    strided_convs,
)
from qc.graph.view import GraphView

__all__ = [
    "RULES",
    "Finding",
    "Rule",
    "Severity",
    "filter_findings",
    "lint",
    "max_severity",
    "normalize_layer_name",
]


class Severity(StrEnum):
    """Ordered severities: ``info < warning < error`` (comparisons use the order, not the text)."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"

    @property
    def rank(self) -> int:
        return _RANK[self.value]

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank < other.rank

    def __le__(self, other: object) -> bool:
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank <= other.rank

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank > other.rank

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank >= other.rank


_RANK = {"info": 0, "warning": 1, "error": 2}


@dataclass(frozen=True)
class Finding:
    """One lint result. ``node`` is the main node; ``nodes`` lists every node whose time the fix would save
    (``node`` included). ``time_share`` is the fraction of the profiled run time spent in ``nodes`` (0..1), None
    without a profile or when none of them was profiled."""

    rule: str
    severity: Severity
    node: str
    op_type: str
    what: str
    why: str
    fix: str
    time_share: float | None = None
    nodes: tuple[str, ...] = ()


Rule = Callable[[GraphView], list[Finding]]


# ----------------------------------------------------------------------------- rules
def rule_div(view: GraphView) -> list[Finding]:
    out: list[Finding] = []
    for m in div_matches(view):
        if m.constant_divisor:
            out.append(
                Finding(
                    "div",
                    Severity.ERROR,
                    m.node,
                    "Div",
                    f"Div {m.node!r} divides by the constant {m.divisor!r}.",
                    "Division is implemented very slowly on the DSP; a constant divisor costs a Div for nothing.",
                    "Multiply by the reciprocal (qc rewrite 'div'), or fold it into the neighbouring Conv "
                    "(then 'foldable-eltwise').",
                    nodes=(m.node,),
                )
            )
        else:
            out.append(
                Finding(
                    "div",
                    Severity.WARNING,
                    m.node,
                    "Div",
                    f"Div {m.node!r} divides by the computed tensor {m.divisor!r}.",
                    "Division is implemented very slowly on the DSP.",
                    "Restructure to avoid the division (e.g. compute a reciprocal once, or move it off the DSP).",
                    nodes=(m.node,),
                )
            )
    return out


def rule_matmul(view: GraphView) -> list[Finding]:
    out: list[Finding] = []
    for n in view.nodes:
        if n.op_type in MATMUL_OPS:
            out.append(
                Finding(
                    "matmul",
                    Severity.ERROR,
                    n.name,
                    n.op_type,
                    f"{n.op_type} {n.name!r} is a matrix multiplication.",
                    "MatMul/Gemm/FullyConnected are not optimized on the DSP: one model ran at 7 FPS on the DSP and "
                    "600 FPS on the GPU (fp16).",
                    "Prefer an architecture without MatMul/Gemm; a Gemm on a 1x1 spatial map can become a 1x1 Conv.",
                    nodes=(n.name,),
                )
            )
    return out


def rule_conv_stride(view: GraphView) -> list[Finding]:
    out: list[Finding] = []
    for m in strided_convs(view):
        kept = "x".join([str(m.conv_stride)] * len(m.strides))
        out.append(
            Finding(
                "conv-stride",
                Severity.ERROR,
                m.conv,
                "Conv",
                f"Conv {m.conv!r} has strides {list(m.strides)}.",
                "Convolutions whose stride is not [1,1], [2,2] or [3,3] run terribly slowly on the DSP.",
                f"Use stride {kept} and a Slice keeping every {list(m.slice_steps)}-th value (qc rewrite "
                "'conv-stride', exact).",
                nodes=(m.conv,),
            )
        )
    return out


def rule_input_channel_swap(view: GraphView) -> list[Finding]:
    out: list[Finding] = []
    for m in channel_swaps(view):
        ops = [view.node(n).op_type for n in m.nodes]
        out.append(
            Finding(
                "input-channel-swap",
                Severity.ERROR,
                m.key,
                view.node(m.key).op_type,
                f"{'+'.join(ops)} reorders the channels of input {m.input!r} (axis {m.axis}, order {list(m.perm)}).",
                "A Split/Concat at the input copies every pixel to new memory: 20%+ of the run time was seen, "
                "growing with the input size.",
                "Permute the first Conv's kernel input channels (qc rewrite 'input-channel-swap'), or feed the "
                "other channel order (e.g. ask the camera for RGB instead of BGR).",
                nodes=m.nodes,
            )
        )
    return out


def rule_foldable_eltwise(view: GraphView) -> list[Finding]:
    out: list[Finding] = []
    chains, _ = fold_chains(view)
    for ch in chains:
        kinds = [view.node(s.node).op_type for s in ch.steps]
        pattern = " -> ".join([*kinds, "Conv"] if ch.side == "before" else ["Conv", *kinds])
        first = view.node(ch.key)
        out.append(
            Finding(
                "foldable-eltwise",
                Severity.WARNING,
                ch.key,
                first.op_type,
                f"{pattern}: {', '.join(repr(n) for n in ch.nodes)} fold into Conv {ch.conv!r}.",
                "Add/Sub/Mul are slow element-wise layers on the DSP; with a per-channel or scalar constant next to "
                "a Conv they fold into its weights and bias without accuracy loss.",
                "Fold them into the Conv (qc rewrite 'foldable-eltwise'); before the Conv an added value is "
                "multiplied by the per-output-channel sums of the kernel weights.",
                nodes=ch.nodes,
            )
        )
    return out


def rule_transpose_reshape_chain(view: GraphView) -> list[Finding]:
    out: list[Finding] = []
    for ch in reshape_chains(view):
        members = set(ch.nodes)
        collapsible = False
        for name in ch.nodes:
            node = view.node(name)
            prod = view.producer(node.inputs[0])
            if prod is not None and prod.name in members and prod.op_type == node.op_type:
                collapsible = True  # Reshape->Reshape or Transpose->Transpose: one op would do
        severity = Severity.WARNING if len(ch.nodes) >= 3 or collapsible else Severity.INFO
        out.append(
            Finding(
                "transpose-reshape-chain",
                severity,
                ch.nodes[0],
                ch.op_types[0],
                f"Chain of {len(ch.nodes)} layout ops: {' -> '.join(ch.op_types)} ({', '.join(ch.nodes)}).",
                "Transpose/Reshape are not free on the DSP (each moves or re-tiles the whole tensor).",
                "Merge consecutive ops of the same kind, cancel inverse Transposes, or restructure the head so the "
                "layout change happens once.",
                nodes=ch.nodes,
            )
        )
    return out


def rule_channels_multiple_32(view: GraphView) -> list[Finding]:
    out: list[Finding] = []
    for n in view.nodes:
        if n.op_type != "Conv" or not n.outputs:
            continue
        info = conv_info(view, n)
        c_out = info.c_out if info is not None else view.dim(n.outputs[0], view.channel_axis)
        if c_out is None or c_out % 32 == 0:
            continue
        up, down = ((c_out + 31) // 32) * 32, c_out // 32 * 32
        choice = f"{up} (or {down})" if down else str(up)  # below 32 channels the only multiple is 32
        out.append(
            Finding(
                "channels-multiple-32",
                Severity.INFO,
                n.name,
                n.op_type,
                f"Conv {n.name!r} has {c_out} output channels, not a multiple of 32.",
                "The DSP works on channel tiles of 32: the remainder costs as much as a full tile.",
                f"Where the architecture allows, use {choice} channels.",
                nodes=(n.name,),
            )
        )
    return out


RULES: dict[str, Rule] = {
    "div": rule_div,
    "matmul": rule_matmul,
    "conv-stride": rule_conv_stride,
    "input-channel-swap": rule_input_channel_swap,
    "foldable-eltwise": rule_foldable_eltwise,
    "transpose-reshape-chain": rule_transpose_reshape_chain,
    "channels-multiple-32": rule_channels_multiple_32,
}


# ----------------------------------------------------------------------------- driver
def normalize_layer_name(name: str) -> str:
    """Loose form of a layer/tensor name used to match ONNX and DLC/profile spellings.

    ``/model.24/Concat_3`` and ``_model_24_Concat_3`` both become ``model_24_concat_3``; a trailing ``:suffix`` or
    ``(cycles)`` from snpe-diagview, and ``_output_0``, are dropped.
    """
    s = re.sub(r"\s*\(cycles\)\s*$", "", name.strip())
    s = re.sub(r":[^/]*$", "", s)
    s = re.sub(r"_output_0$", "", s)
    s = re.sub(r"[^0-9A-Za-z]+", "_", s).strip("_").lower()
    return s


def _check_rules(rules: Iterable[str]) -> list[str]:
    names = list(rules)
    unknown = [r for r in names if r not in RULES]
    if unknown:
        raise ConfigError(f"Unknown lint rule(s) {unknown}; known rules are {sorted(RULES)}.")
    return names


def lint(
    view: GraphView,
    *,
    profile: Mapping[str, float] | None = None,
    rules: Iterable[str] | None = None,
) -> list[Finding]:
    """Run ``rules`` (all when None) over ``view``.

    ``profile`` maps layer names to their share of the run time (fractions; they need not sum to 1). Names are
    matched exactly first, then through :func:`normalize_layer_name`. Findings come back worst first: severity,
    then time share (unprofiled last), then graph order.
    """
    selected = _check_rules(rules) if rules is not None else list(RULES)
    findings: list[Finding] = []
    for r in selected:
        findings.extend(RULES[r](view))
    if profile is not None:
        exact = dict(profile)
        loose: dict[str, float] = {}
        for k, v in profile.items():
            nk = normalize_layer_name(k)
            loose[nk] = loose.get(nk, 0.0) + float(v)

        def share(name: str) -> float | None:
            if name in exact:
                return float(exact[name])
            return loose.get(normalize_layer_name(name))

        with_share: list[Finding] = []
        for f in findings:
            involved = f.nodes or (f.node,)
            shares = [s for s in (share(n) for n in dict.fromkeys(involved)) if s is not None]
            with_share.append(replace(f, time_share=sum(shares) if shares else None))
        findings = with_share

    def order(f: Finding) -> tuple[int, float, int]:
        pos = view.index(f.node) if view.has_node(f.node) else len(view.nodes)
        return (-f.severity.rank, -(f.time_share if f.time_share is not None else -1.0), pos)

    return sorted(findings, key=order)


def max_severity(findings: Iterable[Finding]) -> Severity | None:
    """The worst severity among ``findings``; None when there are none."""
    worst: Severity | None = None
    for f in findings:
        if worst is None or f.severity.rank > worst.rank:
            worst = f.severity
    return worst


def filter_findings(
    findings: Iterable[Finding],
    *,
    allow: Iterable[str] = (),
    min_severity: Severity | str | None = None,
) -> list[Finding]:
    """Findings a gate should count: drops rules listed in ``allow`` and findings below ``min_severity``.

    Unknown rule ids in ``allow`` raise :class:`~qc.errors.ConfigError` (a typo must not silently pass a gate).
    """
    allowed = set(_check_rules(allow))
    try:
        floor = Severity(min_severity) if min_severity is not None else None
    except ValueError as exc:
        raise ConfigError(f"Unknown severity {min_severity!r}; use one of {[s.value for s in Severity]}.") from exc
    return [f for f in findings if f.rule not in allowed and (floor is None or f.severity.rank >= floor.rank)]
