"""Gate verdicts as plain data, and the gate registry: the one vocabulary of gate names.

Every gate has a name, what it needs (``comparison``, ``accuracy`` of a task, ``speed``, ``lint`` or ``baseline``)
and one check signature, ``check(evidence) -> GateResult``. The config validation (gate names in ``expect`` and
``gates``), the pytest plugin (which gate tests run for which model), the CLI, the diagnosis and the dashboard read
this registry. The pytest tests only assert the verdicts. A metric that cannot be computed fails.

This module imports nothing heavy at run time (it is read while models.yaml is validated).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from qc.errors import ConfigError
from qc.tasks import TASKS

if TYPE_CHECKING:
    from qc.compare.layerwise import Comparison
    from qc.compare.metrics import MetricSummary
    from qc.config import BaselineTolerances, LintSettings, ModelSpec, Thresholds
    from qc.eval.accuracy import AccuracyResult
    from qc.graph.lint import Finding
    from qc.report.history import RunInfo
    from qc.speed import LatencyStats

Need = Literal["comparison", "accuracy", "speed", "lint", "baseline"]


@dataclass(frozen=True)
class Violation:
    name: str
    value: float
    threshold: float
    reason: str


@dataclass(frozen=True)
class GateResult:
    gate: str
    passed: bool
    message: str
    metrics: dict[str, float | str] = field(default_factory=dict)
    violations: tuple[Violation, ...] = ()


def _below(name: str, value: float, threshold: float, undefined: str | None, unit: str) -> Violation | None:
    if undefined is not None:
        return Violation(name, math.nan, threshold, f"{name}: metric undefined: {undefined}")
    if math.isnan(value):
        return Violation(name, value, threshold, f"{name}: metric is NaN")
    if value < threshold:
        return Violation(name, value, threshold, f"{name}: {unit} {value:.4f} < threshold {threshold:.4f}")
    return None


def _fmt_list(violations: list[Violation], limit: int = 5) -> str:
    shown = "; ".join(v.reason for v in violations[:limit])
    more = len(violations) - limit
    return shown + (f"; and {more} more (see layers.csv / outputs.csv)" if more > 0 else "")


def layer_cosine(result: Comparison, thresholds: Thresholds) -> GateResult:
    """Every matched layer's mean cosine (over images) must reach its threshold; input-independent layers (constants,
    folded or not) are not gated."""
    layers = result.gated_layers()
    if not layers:
        return GateResult(
            "layer_cosine",
            False,
            f"{result.model}: no layer could be compared; {len(result.unmatched)} reference tensors were unmatched"
            + (f", {len(result.layers)} compared ones are all input-independent" if result.layers else "")
            + _unmatched_reasons(result)
            + ".",
        )
    violations: list[Violation] = []
    for row in layers:
        m = row.metrics
        v = _below(
            f"{row.tensor} ({row.op_type}, #{row.index})",
            m.cosine_mean,
            thresholds.for_tensor(row.tensor).layer_cosine,
            m.undefined,
            "cosine",
        )
        if v is not None:
            violations.append(v)
    defined = [r for r in layers if r.metrics.undefined is None and not math.isnan(r.metrics.cosine_mean)]
    worst = min(defined, key=lambda r: r.metrics.cosine_mean) if defined else None
    metrics: dict[str, float | str] = {
        "layers_compared": float(len(layers)),
        "layers_failing": float(len(violations)),
        "images": float(result.images),
    }
    if worst is not None:
        metrics["worst_layer"] = worst.tensor
        metrics["worst_layer_cosine"] = worst.metrics.cosine_mean
    if violations:
        first = violations[0]
        msg = (
            f"{result.model}: {len(violations)} of {len(layers)} layers below their cosine threshold "
            f"(first in topological order: {first.name}). {_fmt_list(sorted(violations, key=_key))}"
        )
        return GateResult("layer_cosine", False, msg, metrics, tuple(violations))
    assert worst is not None
    return GateResult(
        "layer_cosine",
        True,
        f"{result.model}: worst layer {worst.tensor} cosine {worst.metrics.cosine_mean:.4f}",
        metrics,
    )


def _unmatched_reasons(result: Comparison, limit: int = 3) -> str:
    """Why the reference tensors were unmatched, the most frequent reasons first (a target that gives no per-layer
    tensors says why in every row)."""
    counts: dict[str, int] = {}
    for row in result.unmatched:
        if row.reason:
            counts[row.reason] = counts.get(row.reason, 0) + 1
    if not counts:
        return ""
    ranked = sorted(counts.items(), key=lambda item: -item[1])
    shown = "; ".join(f"{n} tensor(s): {reason}" for reason, n in ranked[:limit])
    more = f"; and {len(ranked) - limit} other reason(s) (see unmatched.csv)" if len(ranked) > limit else ""
    return f" ({shown}{more})"


def _key(v: Violation) -> float:
    return -math.inf if math.isnan(v.value) else v.value


def _output_gate(result: Comparison, thresholds: Thresholds, gate: str) -> GateResult:
    if not result.outputs:
        return GateResult(gate, False, f"{result.model}: no output was compared.")
    violations: list[Violation] = []
    metrics: dict[str, float | str] = {"images": float(result.images)}
    for row in result.outputs:
        m: MetricSummary = row.metrics
        t = thresholds.for_tensor(row.output)
        if gate == "output_cosine":
            value, threshold, unit = m.cosine_mean, t.output_cosine, "cosine"
        else:
            value, threshold, unit = m.sqnr_db_mean, t.output_sqnr_db, "SQNR dB"
        metrics[f"{row.output}.{'cosine' if gate == 'output_cosine' else 'sqnr_db'}"] = value
        v = _below(row.output, value, threshold, m.undefined, unit)
        if v is not None:
            violations.append(v)
    if violations:
        msg = f"{result.model}: {len(violations)} of {len(result.outputs)} outputs/slices fail: {_fmt_list(violations)}"
        return GateResult(gate, False, msg, metrics, tuple(violations))
    return GateResult(gate, True, f"{result.model}: all {len(result.outputs)} outputs/slices pass", metrics)


def output_cosine(result: Comparison, thresholds: Thresholds) -> GateResult:
    """Each final output and each declared slice: mean cosine at least its threshold."""
    return _output_gate(result, thresholds, "output_cosine")


def output_sqnr(result: Comparison, thresholds: Thresholds) -> GateResult:
    """Each final output and each declared slice: mean SQNR (dB) at least its threshold."""
    return _output_gate(result, thresholds, "output_sqnr")


def _side_missing(acc: AccuracyResult, model: str) -> str | None:
    if not acc.labelled or acc.reference is None or acc.target is None:
        return (
            f"{model}: the evaluation data has no labels (a plain image folder), so AP cannot be computed; "
            "give eval_data a COCO annotation file, or list only agreement_ap in 'gates'."
        )
    for side, scores in (("reference", acc.reference), ("target", acc.target)):
        if scores.empty:
            return f"{model}: the {side} yields no usable detections on {acc.images} images: {scores.reason}"
    return None


def map_drop(model: str, acc: AccuracyResult, thresholds: Thresholds, *, key: str = "ap") -> GateResult:
    """AP (``ap`` = AP@[.5:.95], or ``ap50``) of the reference minus that of the target, at most the budget."""
    gate = "map_drop" if key == "ap" else "map50_drop"
    budget = thresholds.max_map_drop if key == "ap" else thresholds.max_map50_drop
    missing = _side_missing(acc, model)
    if missing is not None:
        return GateResult(gate, False, missing, {"images": float(acc.images)})
    assert acc.reference is not None
    assert acc.target is not None
    ref, tgt = float(getattr(acc.reference, key)), float(getattr(acc.target, key))
    drop = ref - tgt
    label = "AP" if key == "ap" else "AP50"
    metrics: dict[str, float | str] = {
        f"reference_{key}": ref,
        f"target_{key}": tgt,
        f"{key}_drop": drop,
        "images": float(acc.images),
    }
    text = f"reference {label} {ref:.4f}, target {label} {tgt:.4f}, drop {drop:.4f}, budget {budget:.4f}"
    if math.isnan(drop) or drop > budget:
        return GateResult(gate, False, f"{model}: {label} drop over budget: {text} ({acc.images} images)", metrics)
    return GateResult(gate, True, f"{model}: {text}", metrics)


def agreement_ap(model: str, acc: AccuracyResult, thresholds: Thresholds) -> GateResult:
    """The target's AP against the reference's confident detections (no labels needed), at least a threshold."""
    value = acc.agreement.ap
    floor = thresholds.min_agreement_ap
    metrics: dict[str, float | str] = {"agreement.ap": value, "agreement.ap50": acc.agreement.ap50}
    if acc.agreement.empty:
        return GateResult("agreement_ap", False, f"{model}: agreement AP undefined: {acc.agreement.reason}", metrics)
    if value < floor:
        return GateResult(
            "agreement_ap",
            False,
            f"{model}: agreement AP {value:.4f} < threshold {floor:.4f} (AP50 {acc.agreement.ap50:.4f}; the target's "
            f"detections against the reference's above the deployment threshold, {acc.images} images)",
            metrics,
        )
    return GateResult("agreement_ap", True, f"{model}: agreement AP {value:.4f} >= {floor:.4f}", metrics)


def fps(model: str, target: LatencyStats, reference: LatencyStats | None, thresholds: Thresholds) -> GateResult:
    """Target FPS at least ``min_fps`` and, optionally, at least ``min_fps_ratio`` times the reference's."""
    metrics: dict[str, float | str] = {
        "target_fps": target.fps,
        "latency_ms_p50": target.latency_ms_p50,
        "latency_ms_p90": target.latency_ms_p90,
        "latency_ms_p99": target.latency_ms_p99,
    }
    if reference is not None:
        metrics["reference_fps"] = reference.fps
    if not math.isfinite(target.fps) or target.fps <= 0:
        return GateResult("fps", False, f"{model}: throughput could not be measured ({target.fps} FPS)", metrics)
    problems = []
    if thresholds.min_fps is not None and target.fps < thresholds.min_fps:
        problems.append(f"FPS {target.fps:.2f} < min_fps {thresholds.min_fps:.2f}")
    if thresholds.min_fps_ratio is not None:
        if reference is None or reference.fps <= 0:
            problems.append("min_fps_ratio is set but the reference throughput was not measured")
        elif target.fps / reference.fps < thresholds.min_fps_ratio:
            ratio = target.fps / reference.fps
            problems.append(
                f"FPS ratio {ratio:.3f} (target {target.fps:.2f} / reference {reference.fps:.2f}) "
                f"< min_fps_ratio {thresholds.min_fps_ratio:.3f}"
            )
    text = f"target {target.fps:.2f} FPS, p50 {target.latency_ms_p50:.2f} ms, p99 {target.latency_ms_p99:.2f} ms"
    if problems:
        return GateResult("fps", False, f"{model}: {'; '.join(problems)} ({text}, {target.source})", metrics)
    return GateResult("fps", True, f"{model}: {text}", metrics)


def lint(model: str, findings: Sequence[Finding], settings: LintSettings) -> GateResult:
    """No finding above the allowed severity, except for rules the model's entry allows."""
    from qc.graph.lint import Severity

    limit = Severity(settings.max_severity)
    blocking = [f for f in findings if f.rule not in settings.allow and Severity(f.severity) > limit]
    metrics: dict[str, float | str] = {"lint_findings": float(len(findings)), "lint_blocking": float(len(blocking))}
    if blocking:
        lines = "; ".join(
            f"[{f.severity}] {f.rule} at {f.node} ({f.op_type}): {f.what} Fix: {f.fix}"
            + (f" Time share {f.time_share:.1%}." if f.time_share is not None else "")
            for f in blocking[:5]
        )
        more = f"; and {len(blocking) - 5} more (see lint.csv)" if len(blocking) > 5 else ""
        return GateResult("lint", False, f"{model}: {len(blocking)} finding(s) above '{limit}': {lines}{more}", metrics)
    return GateResult("lint", True, f"{model}: {len(findings)} finding(s), none above '{limit}'", metrics)


def baseline(
    model: str,
    current: dict[str, float],
    found: tuple[RunInfo, dict[str, float]] | None,
    tolerances: BaselineTolerances,
    which: str,
    model_spec: ModelSpec | None = None,
) -> GateResult:
    """No headline metric worse than in the baseline run by more than its tolerance (the task's headlines of
    ``model_spec``'s task with a tolerance, worst-layer cosine and FPS)."""
    from qc.report.history import regressions

    metrics: dict[str, float | str] = {f"current.{k}": v for k, v in current.items()}
    if found is None:
        return GateResult(
            "baseline", False, f"{model}: the history has no baseline run ({which!r}) holding this model.", metrics
        )
    run, values = found
    metrics["baseline_run"] = run.run_id
    table = tolerances.table(_headlines_of(model_spec)) if model_spec is not None else tolerances.table()
    regressed, missing = regressions(current, values, table)
    problems = [r.message() for r in regressed]
    problems += [f"{m} could not be measured in this run (baseline has it)" for m in missing]
    if problems:
        return GateResult(
            "baseline",
            False,
            f"{model}: regressed against run {run.run_id} ({run.time}): {'; '.join(problems)}",
            metrics,
        )
    compared = ", ".join(
        f"{k} {current[k]:.4f} (baseline {values[k]:.4f})" for k in table if k in values and k in current
    )
    return GateResult("baseline", True, f"{model}: no regression against run {run.run_id}: {compared}", metrics)


# -- the registry ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpeedEvidence:
    """What the ``fps`` gate reads: the target's timing and, when measured, the reference's."""

    target: LatencyStats
    reference: LatencyStats | None


@dataclass(frozen=True)
class BaselineEvidence:
    """What the ``baseline`` gate reads: this run's headline metrics and the baseline run found in the history."""

    current: dict[str, float]
    found: tuple[RunInfo, dict[str, float]] | None
    which: str


@dataclass(frozen=True)
class Evidence:
    """The stage results of one model that gates read; each gate reads the one its ``needs`` names.

    ``accuracy`` is the outcome of the entry's task (:meth:`qc.tasks.base.Task.evaluate`; detection:
    :class:`qc.eval.accuracy.AccuracyResult`).
    """

    spec: ModelSpec
    comparison: Comparison | None = None
    accuracy: Any = None
    speed: SpeedEvidence | None = None
    lint: Sequence[Finding] | None = None
    baseline: BaselineEvidence | None = None


Check = Callable[[Evidence], GateResult]


@dataclass(frozen=True)
class Gate:
    """One gate: its name, what it needs, the task that contributes it (accuracy gates) and its check."""

    name: str
    needs: Need
    doc: str
    task: str | None = None
    """For ``needs == "accuracy"``: the task kind whose :meth:`~qc.tasks.base.Task.check` decides it."""
    advice: bool = False
    """Whether the diagnosis may aim its mixed-precision advice at this gate."""
    labels: bool = False
    """Whether it needs labelled evaluation data (an AP against ground truth)."""

    def check(self, evidence: Evidence) -> GateResult:
        """The verdict from ``evidence``; missing evidence is a failed verdict naming what is missing."""
        have = getattr(evidence, self.needs)
        if have is None:
            return GateResult(self.name, False, f"{evidence.spec.name}: gate {self.name!r} needs {self.needs} results.")
        if self.task is not None:
            from qc.tasks import task_of

            return task_of(evidence.spec).check(self.name, have)
        return _CHECKS[self.name](evidence)


def _comparison(ev: Evidence) -> Comparison:
    assert ev.comparison is not None
    return ev.comparison


def _speed(ev: Evidence) -> GateResult:
    assert ev.speed is not None
    return fps(ev.spec.name, ev.speed.target, ev.speed.reference, ev.spec.thresholds)


def _lint(ev: Evidence) -> GateResult:
    assert ev.lint is not None
    return lint(ev.spec.name, ev.lint, ev.spec.lint)


def _headlines_of(spec: ModelSpec) -> tuple[Any, ...]:
    if spec.task is None:
        return ()
    from qc.tasks import task_class

    return task_class(spec.task.kind).headlines


def _baseline(ev: Evidence) -> GateResult:
    b = ev.baseline
    assert b is not None
    return baseline(ev.spec.name, b.current, b.found, ev.spec.thresholds.baseline, b.which, ev.spec)


_CHECKS: dict[str, Check] = {
    "layer_cosine": lambda ev: layer_cosine(_comparison(ev), ev.spec.thresholds),
    "output_cosine": lambda ev: output_cosine(_comparison(ev), ev.spec.thresholds),
    "output_sqnr": lambda ev: output_sqnr(_comparison(ev), ev.spec.thresholds),
    "fps": _speed,
    "lint": _lint,
    "baseline": _baseline,
}

_TASK_GATES: dict[str, tuple[tuple[str, str, bool], ...]] = {
    "detection": (
        ("map_drop", "COCO AP@[.5:.95] of the reference minus the target's, at most thresholds.max_map_drop.", True),
        ("map50_drop", "COCO AP50 of the reference minus the target's, at most thresholds.max_map50_drop.", True),
        (
            "agreement_ap",
            "The target's AP against the reference's confident detections, at least min_agreement_ap.",
            False,
        ),
    ),
    # issue 14 tasks
    "segmentation": (
        ("miou_drop", "Mean IoU of the reference minus the target's (ground truth), at most max_miou_drop.", True),
        (
            "mask_agreement",
            "The target's masks against the reference's (foreground IoU, else mIoU), at least min_mask_agreement.",
            False,
        ),
    ),
    "classification": (
        ("top1_drop", "Top-1 accuracy of the reference minus the target's (labels), at most max_top1_drop.", True),
        (
            "top1_agreement",
            "Share of images where the target's top-1 class is the reference's, at least min_top1_agreement.",
            False,
        ),
    ),
    # issue 15 tasks
    "keypoints": (
        ("oks_ap_drop", "COCO keypoint (OKS) AP of the reference minus the target's, at most max_oks_ap_drop.", True),
        (
            "keypoint_agreement",
            "Mean OKS of the target's keypoints against the reference's people, at least min_keypoint_agreement.",
            False,
        ),
    ),
    "instance-segmentation": (
        ("mask_ap_drop", "COCO mask AP of the reference minus the target's, at most max_mask_ap_drop.", True),
        (
            "instance_mask_agreement",
            "The target's mask AP against the reference's confident instances, at least min_instance_mask_agreement.",
            False,
        ),
    ),
}
"""The gates each task kind contributes (name, doc, needs labels), decided by that task's ``check``."""

GATE_SPECS: tuple[Gate, ...] = (
    Gate("layer_cosine", "comparison", "Every matched layer's mean cosine at least its threshold."),
    Gate(
        "output_cosine", "comparison", "Each output and declared slice: mean cosine at least its threshold.", None, True
    ),
    Gate(
        "output_sqnr",
        "comparison",
        "Each output and declared slice: mean SQNR (dB) at least its threshold.",
        None,
        True,
    ),
    *(
        Gate(name, "accuracy", doc, task=kind, advice=True, labels=labels)
        for kind in TASKS
        for name, doc, labels in _TASK_GATES.get(kind, ())
    ),
    Gate("fps", "speed", "Target throughput at least min_fps (and min_fps_ratio times the reference's)."),
    Gate("lint", "lint", "No lint finding above lint.max_severity except allowed rules."),
    Gate("baseline", "baseline", "No headline metric worse than in the --qc-baseline run beyond its tolerance."),
)
"""The gate registry, in report order."""

GATE_NAMES: tuple[str, ...] = tuple(g.name for g in GATE_SPECS)
_BY_NAME = {g.name: g for g in GATE_SPECS}


def gate_info(name: str) -> Gate:
    """The registry entry of a gate (a ConfigError naming the known gates when there is none)."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ConfigError(f"unknown gate {name!r}; gates are {list(GATE_NAMES)}") from None


def gates_needing(need: Need, *, task: str | None = None) -> tuple[str, ...]:
    """Names of the gates that need ``need`` (and, with ``task``, that this task kind contributes)."""
    return tuple(g.name for g in GATE_SPECS if g.needs == need and (task is None or g.task == task))


def advice_gates() -> tuple[str, ...]:
    """The gates the diagnosis may aim its advice at (output similarity and every task's accuracy gates)."""
    return tuple(g.name for g in GATE_SPECS if g.advice)


def check(name: str, evidence: Evidence) -> GateResult:
    """The verdict of gate ``name`` on ``evidence``."""
    return gate_info(name).check(evidence)
