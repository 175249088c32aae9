"""Name the layers that cause the loss: the earliest layers whose LOCAL error is bad, with their range evidence.

A quantized layer is an origin when, fed the reference's FP32 inputs, it is bad on its own:

- *collapse*: a declared output slice of it is undefined (all zeros) or below its output cosine threshold, or at
  least 10% of its channels lose more than half their signal locally, or its range evidence shows values that
  never reach one quantization step;
- *local error*: its local cosine is below the layer cosine threshold (or its worst local SQNR below the SQNR
  that threshold corresponds to, -10 log10(2 (1 - c)));
- *sensitive* (added once sensitivity ran): quantized alone, every other layer float, it pulls an output or
  slice below its output SQNR threshold although its own local error is fine: the network amplifies it;
- *worse than inputs*: its worst local SQNR is at least 12 dB below its inputs' and under the entry's output
  SQNR threshold (``output_sqnr_db``): by itself it would fail the SQNR bar.

A data-movement layer (Reshape, Transpose, ...) that repeats its input's quantizer and is bad for the same
reason is listed as a follower of that origin rather than as a new origin. Layers whose accumulated cosine fails
while their local error is fine inherit their error: they are summarized, not named.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from qc.config import Thresholds
from qc.diagnose.local import LocalRow
from qc.diagnose.ranges import RangeEvidence

COLLAPSE_SHARE = 0.10
WORSE_THAN_INPUTS_DB = 12.0

MOVEMENT_OPS = {"Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Identity", "MaxPool", "Resize"}
SLOPES = {"Sigmoid": 0.25, "Tanh": 1.0, "HardSigmoid": 0.2, "Softmax": 0.25, "HardSwish": 1.0}
SEVERITY_ORDER = {"collapse": 0, "local error": 1, "worse than inputs": 2, "sensitive": 3}


@dataclass(frozen=True)
class GraphInfo:
    """Reference tensors: producer node name, op type, activation inputs, topological index."""

    node: dict[str, str]
    op_type: dict[str, str]
    inputs: dict[str, tuple[str, ...]]
    index: dict[str, int]

    @classmethod
    def from_model(cls, model: Any) -> GraphInfo:
        graph = model.graph
        inits = {i.name for i in graph.initializer}
        consts = {n.output[0] for n in graph.node if n.op_type == "Constant"}
        node: dict[str, str] = {}
        op_type: dict[str, str] = {}
        inputs: dict[str, tuple[str, ...]] = {}
        index: dict[str, int] = {}
        for i in graph.input:
            if i.name not in inits:
                index[i.name] = len(index)
                op_type[i.name] = "Input"
                inputs[i.name] = ()
        for n in graph.node:
            if n.op_type == "Constant":
                continue
            acts = tuple(x for x in n.input if x and x not in inits and x not in consts)
            for out in n.output:
                if out:
                    node[out], op_type[out], inputs[out] = n.name, n.op_type, acts
                    index[out] = len(index)
        return cls(node, op_type, inputs, index)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GraphInfo:
        return cls(data["node"], data["op_type"], {k: tuple(v) for k, v in data["inputs"].items()}, data["index"])


@dataclass(frozen=True)
class Origin:
    index: int
    tensor: str
    node: str
    op_type: str
    severity: str
    pattern: str
    reasons: tuple[str, ...]
    cosine: float | None
    sqnr_db: float | None
    cosine_local: float
    sqnr_db_local: float
    worst_sqnr_db_local: float
    inputs_sqnr_db_local: float | None
    ranges: RangeEvidence | None
    followers: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["ranges"] = self.ranges.to_json() if self.ranges is not None else None
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Origin:
        ranges = data.get("ranges")
        return cls(
            **{
                **data,
                "reasons": tuple(data["reasons"]),
                "followers": tuple(data["followers"]),
                "ranges": RangeEvidence.from_json(ranges) if ranges is not None else None,
            }
        )


def sqnr_for_cosine(cosine: float) -> float:
    """The SQNR (dB) that a cosine similarity corresponds to for small, uncorrelated noise."""
    if cosine >= 1.0:
        return math.inf
    return -10.0 * math.log10(2.0 * (1.0 - cosine))


def pattern_of(
    tensor: str,
    graph: GraphInfo,
    ranges: Mapping[str, RangeEvidence],
    observed: Mapping[str, tuple[float, float, float]],
) -> str:
    """A short name for the quantization pattern at ``tensor``, or '' when none is detected."""
    op = graph.op_type.get(tensor, "")
    inputs = graph.inputs.get(tensor, ())
    ev = ranges.get(tensor)
    if op == "Concat" and ev is not None and len(inputs) >= 2:
        peaks = [observed[i][2] for i in inputs if i in observed]
        live = [p for p in peaks if p > 0]
        if len(live) >= 2 and (max(live) / min(live) >= 16.0 or min(live) < ev.step):
            return "Concat of mixed ranges"
    if inputs and ev is not None and (op in SLOPES or op == "Exp"):
        src = ranges.get(inputs[0])
        if src is not None:
            if op == "Exp":
                high = observed.get(inputs[0], (0.0, 0.0, 0.0))[1]
                slope = math.exp(min(high, 80.0))
            else:
                slope = SLOPES[op]
            if src.step * slope > 2.0 * ev.step:
                return f"{op} after a wide {graph.op_type.get(inputs[0], '?')}"
    if op in ("Slice", "Split", "Gather") and ev is not None and inputs:
        src = ranges.get(inputs[0])
        if src is not None and ev.level_share < 0.25 <= src.level_share:
            return f"{op} of a wider tensor"
    if ev is not None and ev.flags:
        return ev.flags[0]
    return ""


def _metric(value: float, undefined: str | None) -> str:
    return f"undefined ({undefined})" if undefined is not None else f"{value:.4f}"


def find_origins(
    model: str,
    rows: Sequence[LocalRow],
    accumulated: Mapping[str, tuple[float, float]],
    ranges: Mapping[str, RangeEvidence],
    observed: Mapping[str, tuple[float, float, float]],
    graph: GraphInfo,
    thresholds: Thresholds,
) -> tuple[list[Origin], list[str]]:
    """Origins in topological order, and notes (inherited error, what was left out)."""
    by_tensor = {r.tensor: r for r in rows}
    found: list[Origin] = []
    notes: list[str] = []
    for row in rows:
        if not row.quantized or row.op_type == "Input":
            continue
        t = thresholds.for_tensor(row.tensor)
        layer_thr = t.layer_cosine
        m = row.metrics
        worst = row.worst_sqnr_db()
        reasons: list[str] = []
        severity: str | None = None
        for sname, sm in row.slices.items():
            thr = thresholds.for_tensor(f"{row.tensor}[{sname}]").output_cosine
            if sm.undefined is not None or sm.cosine_mean < thr:
                severity = "collapse"
                reasons.append(
                    f"{row.tensor}[{sname}] fed reference inputs: local cosine "
                    f"{_metric(sm.cosine_mean, sm.undefined)}, SQNR {sm.sqnr_db_mean:.1f} dB (output cosine threshold "
                    f"{thr:.4f})."
                )
        ch = row.channels
        if ch is not None and ch.live and ch.collapsed >= max(1.0, COLLAPSE_SHARE * ch.live):
            severity = "collapse"
            sample = ", ".join(str(i) for i in ch.collapsed_first)
            reasons.append(
                f"{ch.collapsed} of {ch.live} channels on axis {ch.axis} (e.g. {sample}) lose more than half their "
                f"signal locally (channel SQNR below 3 dB; median channel {ch.sqnr_db_median:.1f} dB; flagged from "
                f"{COLLAPSE_SHARE:.0%} of channels)."
            )
        ev = ranges.get(row.tensor)
        if ev is not None and "values below one step" in ev.flags:
            severity = "collapse"
        if m.undefined is not None or m.cosine_mean < layer_thr or worst < sqnr_for_cosine(layer_thr):
            severity = severity or "local error"
            reasons.append(
                f"worst local SQNR {worst:.1f} dB (of the whole tensor, its slices and its channels' 10th "
                f"percentile; the whole tensor alone: cosine {_metric(m.cosine_mean, m.undefined)}, "
                f"{m.sqnr_db_mean:.1f} dB) is below the "
                f"layer cosine threshold {layer_thr:.4f} (about {sqnr_for_cosine(layer_thr):.1f} dB)."
            )
        input_sqnrs = [by_tensor[i].worst_sqnr_db() for i in graph.inputs.get(row.tensor, ()) if i in by_tensor]
        finite = [v for v in input_sqnrs if math.isfinite(v)]
        inputs_sqnr = min(finite) if finite else None
        ceiling = t.output_sqnr_db
        if inputs_sqnr is not None and worst <= inputs_sqnr - WORSE_THAN_INPUTS_DB and worst < ceiling:
            severity = severity or "worse than inputs"
            reasons.append(
                f"worst local SQNR {worst:.1f} dB is {inputs_sqnr - worst:.1f} dB below its inputs' "
                f"({inputs_sqnr:.1f} dB; flagged from {WORSE_THAN_INPUTS_DB:.0f} dB below and under the output "
                f"SQNR threshold {ceiling:.1f} dB)."
            )
        if severity is None:
            continue
        if ev is not None:
            reasons.extend(ev.findings)
        acc = accumulated.get(row.tensor)
        found.append(
            Origin(
                index=row.index,
                tensor=row.tensor,
                node=graph.node.get(row.tensor, ""),
                op_type=row.op_type,
                severity=severity,
                pattern=pattern_of(row.tensor, graph, ranges, observed),
                reasons=tuple(reasons),
                cosine=acc[0] if acc else None,
                sqnr_db=acc[1] if acc else None,
                cosine_local=m.cosine_mean,
                sqnr_db_local=m.sqnr_db_mean,
                worst_sqnr_db_local=worst,
                inputs_sqnr_db_local=inputs_sqnr,
                ranges=ev,
            )
        )
    origins = _group_followers(found, graph, ranges)
    inherited = [
        name
        for name, (cos, _) in accumulated.items()
        if name in by_tensor
        and not math.isnan(cos)
        and cos < thresholds.for_tensor(name).layer_cosine
        and name not in {o.tensor for o in found}
    ]
    if inherited:
        notes.append(
            f"{model}: {len(inherited)} layer(s) fail the accumulated layer cosine threshold while their local error "
            f"is fine: their error is inherited from upstream layers (e.g. {', '.join(inherited[:4])})."
        )
    return origins, notes


def _same_quantizer(a: RangeEvidence | None, b: RangeEvidence | None) -> bool:
    return a is not None and b is not None and a.scale == b.scale and a.zero_point == b.zero_point


def _group_followers(found: list[Origin], graph: GraphInfo, ranges: Mapping[str, RangeEvidence]) -> list[Origin]:
    """Fold a data-movement layer that repeats its input origin's quantizer (and problem) into that origin."""
    kept: dict[str, Origin] = {}
    leader: dict[str, str] = {}
    for o in found:
        inputs = graph.inputs.get(o.tensor, ())
        src = inputs[0] if len(inputs) == 1 else None
        head = leader.get(src) if src is not None else None
        if (
            head is not None
            and o.op_type in MOVEMENT_OPS
            and _same_quantizer(ranges.get(o.tensor), ranges.get(src or ""))
            and SEVERITY_ORDER[o.severity] >= SEVERITY_ORDER[kept[head].severity]
        ):
            kept[head] = dataclasses.replace(kept[head], followers=(*kept[head].followers, o.tensor))
            leader[o.tensor] = head
            continue
        kept[o.tensor] = o
        leader[o.tensor] = o.tensor
    return sorted(kept.values(), key=lambda o: o.index)


def add_sensitive(
    origins: Sequence[Origin],
    rows: Sequence[LocalRow],
    alone: Sequence[tuple[str, str, float, str]],
    accumulated: Mapping[str, tuple[float, float]],
    ranges: Mapping[str, RangeEvidence],
    observed: Mapping[str, tuple[float, float, float]],
    graph: GraphInfo,
    thresholds: Thresholds,
) -> list[Origin]:
    """``origins`` plus the layers that, quantized alone, pull an output below its SQNR threshold.

    ``alone``: (node, tensor, worst output SQNR dB with only that layer quantized, which output or slice).
    """
    by_tensor = {r.tensor: r for r in rows}
    named = {o.tensor for o in origins} | {f for o in origins for f in o.followers}
    out = list(origins)
    for node, tensor, value, worst_output in alone:
        if tensor in named or tensor not in by_tensor or math.isnan(value):
            continue
        floor = thresholds.for_tensor(worst_output).output_sqnr_db
        if value >= floor:
            continue
        row = by_tensor[tensor]
        acc = accumulated.get(tensor)
        out.append(
            Origin(
                index=row.index,
                tensor=tensor,
                node=node,
                op_type=row.op_type,
                severity="sensitive",
                pattern=pattern_of(tensor, graph, ranges, observed),
                reasons=(
                    f"quantized alone (every other layer float) it pulls {worst_output} down to {value:.1f} dB "
                    f"(output SQNR threshold {floor:.1f} dB), while its own local SQNR is "
                    f"{row.worst_sqnr_db():.1f} dB: the layers after it amplify its rounding noise.",
                ),
                cosine=acc[0] if acc else None,
                sqnr_db=acc[1] if acc else None,
                cosine_local=row.metrics.cosine_mean,
                sqnr_db_local=row.metrics.sqnr_db_mean,
                worst_sqnr_db_local=row.worst_sqnr_db(),
                inputs_sqnr_db_local=None,
                ranges=ranges.get(tensor),
            )
        )
    return sorted(out, key=lambda o: o.index)
