"""``qc calibrate``: what a task's label-free agreement gate must demand so that it stands in for its labelled gates.

For every labelled models.yaml entry whose task can be calibrated, the reference is quantized with a sweep of
settings (per-channel or per-tensor weights x activation quantizer tf / enhanced / symmetric x 8 or 16-bit
activations x 32 or 8-bit biases x the entry's ``float_downstream_of`` or none). Each variant is an ordinary
``ort-int8`` entry run through the normal, cached stages (:class:`qc.pipeline.ModelStages`) and the task's own
gates; a variant measured before (same accuracy-stage key) is measured once.

The task says what to relate (:attr:`qc.tasks.base.Task.calibration`): its labelled budget gates (detection:
``map_drop``, ``map50_drop``) and its label-free agreement gate (``agreement_ap``). A variant is *over budget*
when the task's first labelled gate fails with the entry's budget (detection: ``map_drop``, the AP@[.5:.95] drop).
The fitted threshold of a task is the smallest value ``t`` on a grid (step 0.01) at which no over-budget variant
passes the agreement gate (no false pass); its false fails (within budget, yet below ``t``) are counted beside it,
as are both counts at the current default and at any threshold asked for. The same fit with every labelled gate as
the budget (``map50_drop`` too) is reported beside it (``Fit.strict``).

Written to the output folder: ``calibration.csv`` (one row per variant), ``calibration.svg`` (agreement against
labelled drop, per task, with the budget and the thresholds) and ``calibration.md`` (the fit, the counts and the
table). This module knows no pytest.
"""

from __future__ import annotations

import csv
import io
import itertools
import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape

from qc.config import ModelSpec, OrtInt8Target, QuantSettings, Thresholds
from qc.errors import ConfigError
from qc.tasks.base import Calibration

if TYPE_CHECKING:
    from qc.pipeline import Context, ModelStages

log = logging.getLogger(__name__)

STEP = 0.01
"""Grid of the fitted thresholds: the smallest multiple of it above every over-budget variant's agreement."""

SWEEP: dict[str, tuple[Any, ...]] = {
    "per_channel": (True, False),
    "activation_quantizer": ("tf", "enhanced", "symmetric"),
    "activation_bitwidth": (8, 16),
    "bias_bitwidth": (32, 8),
}
"""The quantization settings swept (fields of :class:`qc.config.QuantSettings`); ``float_downstream_of`` is swept
over none and the entry's own value."""


@dataclass(frozen=True)
class Setting:
    """One swept quantization setting: the fields replaced on the entry's ``ort-int8`` target."""

    per_channel: bool
    activation_quantizer: str
    activation_bitwidth: int
    bias_bitwidth: int
    float_downstream_of: tuple[str, ...]

    def label(self) -> str:
        """A short id such as ``pc-tf-a8-b32`` (``+float:head_13,head_26`` when a part stays in float)."""
        text = (
            f"{'pc' if self.per_channel else 'pt'}-{self.activation_quantizer}-a{self.activation_bitwidth}"
            f"-b{self.bias_bitwidth}"
        )
        return text + (f"+float:{','.join(self.float_downstream_of)}" if self.float_downstream_of else "")

    def update(self) -> dict[str, Any]:
        return {
            "per_channel": self.per_channel,
            "activation_quantizer": self.activation_quantizer,
            "activation_bitwidth": self.activation_bitwidth,
            "bias_bitwidth": self.bias_bitwidth,
            "float_downstream_of": self.float_downstream_of,
        }


def settings_for(base: QuantSettings | None) -> list[Setting]:
    """The sweep of one entry whose target quantizes with ``base`` (:meth:`qc.targets.base.Target.requantize`;
    None for a target compared as it is): :data:`SWEEP` x ``float_downstream_of`` in (none, the entry's own)."""
    own = base.float_downstream_of if base is not None else ()
    downstream = list(dict.fromkeys([(), own]))
    out = []
    for pc, quantizer, bits, bias, fdo in itertools.product(*SWEEP.values(), downstream):
        out.append(Setting(bool(pc), str(quantizer), int(bits), int(bias), tuple(fdo)))
    return out


def variant_spec(spec: ModelSpec, setting: Setting, base: QuantSettings | None = None) -> ModelSpec:
    """The entry quantized with ``setting`` on the host (``ort-int8``); the other quantization settings of ``base``
    (the entry's own, when its target re-quantizes) are kept."""
    kept = {k: getattr(base, k) for k in QuantSettings.model_fields} if base is not None else {}
    target = OrtInt8Target(kind="ort-int8", **{**kept, **setting.update()})
    name = f"{spec.name}-cal-{setting.label()}".replace("+float:", "-float-").replace(",", "-")
    return spec.model_copy(update={"target": target, "name": name, "expect": "pass", "gates": None})


def with_threshold(spec: ModelSpec, field_name: str, value: float) -> ModelSpec:
    """The entry with one :class:`qc.config.Thresholds` field replaced (the gate reads it from there)."""
    return spec.model_copy(update={"thresholds": spec.thresholds.model_copy(update={field_name: value})})


@dataclass
class Point:
    """One measured variant: the labelled drops, the agreement, and the verdicts of the task's gates."""

    task: str
    models: list[str]
    variant: str
    setting: Setting
    images: int
    objects: int
    metrics: dict[str, float]
    labelled_failing: list[str]
    """The labelled budget gates that fail."""
    spec: ModelSpec
    outcome: Any = field(repr=False, default=None)

    def over(self, gates: Sequence[str]) -> bool:
        """Whether one of the labelled ``gates`` fails: the variant is over that budget."""
        return any(g in self.labelled_failing for g in gates)


@dataclass
class Fit:
    """The fitted agreement threshold of one task, and the false pass / false fail counts at each threshold shown."""

    task: str
    calibration: Calibration
    gates: tuple[str, ...]
    """The labelled gates whose failure makes a variant over budget (default: the task's first, e.g. map_drop)."""
    threshold: float | None
    """None when no over-budget variant was found (nothing to separate) or when no threshold <= 1 separates."""
    reason: str
    points: list[Point]
    counts: dict[float, tuple[int, int]] = field(default_factory=dict)
    """Threshold -> (false passes, false fails)."""
    strict: Fit | None = None
    """The same fit with every labelled gate of the task as the budget (reported beside it)."""

    def over_budget(self, point: Point) -> bool:
        return point.over(self.gates)

    @property
    def over_budget_count(self) -> int:
        return sum(self.over_budget(p) for p in self.points)


@dataclass
class CalibrationRun:
    fits: list[Fit]
    skipped: list[str]
    """Entries not calibrated, each with the reason."""
    written: list[Path] = field(default_factory=list)


def _task_calibration(spec: ModelSpec) -> Calibration:
    from qc.tasks import task_class

    assert spec.task is not None
    cls = task_class(spec.task.kind)
    calibration = getattr(cls, "calibration", None)
    if not isinstance(calibration, Calibration):
        raise ConfigError(
            f"{spec.name}: task kind {spec.task.kind!r} ({cls.__module__}.{cls.__name__}) declares no 'calibration' "
            "(its labelled budget gates and its label-free agreement gate); qc calibrate cannot relate them."
        )
    return calibration


def _why_not(stages: ModelStages) -> str | None:
    spec = stages.spec
    if spec.task is None:
        return f"{spec.name}: no 'task' section (nothing to calibrate)"
    from qc.tasks.base import is_labelled

    task = stages.task()
    missing = getattr(task, "labels_missing", None)  # optional hook (qc.tasks.base.LabelsHook): the precise reason
    why = missing(stages.eval_images()) if callable(missing) else None
    if why:
        return f"{spec.name}: {why}"
    if not is_labelled(task, stages.eval_images()):
        return f"{spec.name}: the evaluation data has no labels for its task; the labelled drop cannot be measured"
    if spec.calibration is None:
        return f"{spec.name}: no 'calibration' image set to quantize the sweep's variants with"
    try:
        _task_calibration(spec)
    except ConfigError as exc:
        return str(exc)
    return None


def gate_passes(point: Point, gate: str, threshold_field: str | None = None, value: float | None = None) -> bool:
    """The task's own verdict of ``gate`` on the variant (with one threshold replaced when asked)."""
    from qc.tasks import task_of

    spec = (
        point.spec if threshold_field is None or value is None else with_threshold(point.spec, threshold_field, value)
    )
    return task_of(spec).check(gate, point.outcome).passed


def measure(
    stages_list: Sequence[ModelStages],
    ctx: Context,
    *,
    progress: Callable[[str], None] | None = None,
) -> tuple[list[Point], list[str]]:
    """Every variant of every calibratable entry, measured through the cached stages; and the skipped entries."""
    from qc.pipeline import ModelStages
    from qc.tasks import task_of

    points: dict[str, Point] = {}
    skipped: list[str] = []
    for stages in stages_list:
        reason = _why_not(stages)
        if reason is not None:
            skipped.append(reason)
            continue
        spec = stages.spec
        assert spec.task is not None
        calibration = _task_calibration(spec)
        images = stages.eval_images()
        coco = images.coco or {}
        base = stages.target_impl().requantize()
        settings = settings_for(base)
        for i, setting in enumerate(settings, 1):
            vspec = variant_spec(spec, setting, base)
            variant = ModelStages(vspec, ctx)
            try:
                key = variant.accuracy_key()
                if key in points:
                    points[key].models.append(spec.name)
                    continue
                outcome = variant.accuracy()
            finally:
                variant.close()
            task = task_of(vspec)
            metrics = task.calibration_metrics(outcome)
            failing = [b.gate for b in calibration.budgets if not task.check(b.gate, outcome).passed]
            point = Point(
                task=spec.task.kind,
                models=[spec.name],
                variant=setting.label(),
                setting=setting,
                images=len(coco.get("images", [])) if coco else len(images),
                objects=len(coco.get("annotations", [])) if coco else len(images),
                metrics=metrics,
                labelled_failing=failing,
                spec=vspec,
                outcome=outcome,
            )
            points[key] = point
            if progress is not None:
                shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
                over = f"labelled gates failing: {', '.join(failing)}" if failing else "every labelled gate passes"
                progress(f"{spec.name} [{i}/{len(settings)}] {setting.label()}: {shown}; {over}")
    return list(points.values()), skipped


def counts_at(
    points: Iterable[Point], calibration: Calibration, value: float, gates: Sequence[str] | None = None
) -> tuple[int, int]:
    """(false passes, false fails) of the agreement gate at threshold ``value``, by the task's own verdicts; over
    budget means one of ``gates`` fails (default: the task's first budget gate)."""
    gates = gates if gates is not None else (calibration.budgets[0].gate,)
    false_pass = false_fail = 0
    for p in points:
        passes = gate_passes(p, calibration.agreement.gate, calibration.agreement.threshold, value)
        false_pass += passes and p.over(gates)
        false_fail += (not passes) and not p.over(gates)
    return false_pass, false_fail


def fit(
    task: str,
    points: list[Point],
    calibration: Calibration,
    *,
    gates: Sequence[str] | None = None,
    step: float = STEP,
) -> Fit:
    """The smallest threshold on the ``step`` grid with no false pass (see the module docstring); over budget means
    one of ``gates`` fails (default: the task's first budget gate, e.g. ``map_drop``)."""
    chosen = tuple(gates) if gates is not None else (calibration.budgets[0].gate,)
    bad = [p for p in points if p.over(chosen)]
    agreement = calibration.agreement
    values = [p.metrics.get(agreement.metric, math.nan) for p in bad]
    finite = [v for v in values if math.isfinite(v)]
    if not bad:
        why = f"no variant fails {list(chosen)}: the set holds no over-budget variant to separate"
        return Fit(task, calibration, chosen, None, why, points)
    start = math.floor(max(finite) / step + 1e-9) + 1 if finite else 0
    for k in range(start, round(1 / step) + 1):
        value = round(k * step, 10)
        if counts_at(bad, calibration, value, chosen)[0] == 0:
            return Fit(task, calibration, chosen, value, f"smallest multiple of {step:g} with no false pass", points)
    why = f"no {agreement.threshold} <= 1 keeps every over-budget variant from passing {agreement.gate}"
    return Fit(task, calibration, chosen, None, why, points)


def calibrate(
    stages_list: Sequence[ModelStages],
    ctx: Context,
    *,
    also: Sequence[float] = (),
    step: float = STEP,
    progress: Callable[[str], None] | None = None,
) -> CalibrationRun:
    """Measure the sweep, fit one threshold per task, count false passes / fails at the fit, the defaults, ``also``."""
    points, skipped = measure(stages_list, ctx, progress=progress)
    if not points:
        raise ConfigError(
            "qc calibrate: no entry could be calibrated (it needs a task, labelled eval_data and calibration "
            "images): " + "; ".join(skipped)
        )
    fits = []
    for task in dict.fromkeys(p.task for p in points):
        mine = [p for p in points if p.task == task]
        calibration = _task_calibration(mine[0].spec)
        result = fit(task, mine, calibration, step=step)
        every = tuple(b.gate for b in calibration.budgets)
        if every != result.gates:
            result.strict = fit(task, mine, calibration, gates=every, step=step)
        shown = {float(v) for v in also}
        shown.add(_default(calibration.agreement.threshold))
        shown.update(float(getattr(p.spec.thresholds, calibration.agreement.threshold)) for p in mine)
        for f in (result, result.strict):
            if f is not None and f.threshold is not None:
                shown.add(f.threshold)
        for f in (result, result.strict):
            if f is not None:
                f.counts = {v: counts_at(mine, calibration, v, f.gates) for v in sorted(shown)}
        fits.append(result)
    return CalibrationRun(fits, skipped)


def _default(field_name: str) -> float:
    value = Thresholds.model_fields[field_name].default
    return float(value)


# -- outputs ---------------------------------------------------------------------------------------------------


def _fmt(value: float) -> str:
    return "nan" if not math.isfinite(value) else f"{value:.4f}"


def table_rows(run: CalibrationRun) -> list[dict[str, str]]:
    rows = []
    for f in run.fits:
        agreement = f.calibration.agreement
        for p in sorted(f.points, key=lambda q: (-_sort_value(q, agreement.metric), q.variant)):
            row = {
                "task": p.task,
                "models": " ".join(p.models),
                "variant": p.variant,
                "per_channel": str(p.setting.per_channel).lower(),
                "activation_quantizer": p.setting.activation_quantizer,
                "activation_bitwidth": str(p.setting.activation_bitwidth),
                "bias_bitwidth": str(p.setting.bias_bitwidth),
                "float_downstream_of": " ".join(p.setting.float_downstream_of),
                "images": str(p.images),
                "objects": str(p.objects),
            }
            for b in f.calibration.budgets:
                row[b.metric] = _fmt(p.metrics.get(b.metric, math.nan))
            row[agreement.metric] = _fmt(p.metrics.get(agreement.metric, math.nan))
            row["labelled_failing"] = " ".join(p.labelled_failing) or "none"
            row["over_budget"] = "yes" if f.over_budget(p) else "no"
            if f.threshold is not None:
                row["agreement_at_fit"] = (
                    "pass" if gate_passes(p, agreement.gate, agreement.threshold, f.threshold) else "fail"
                )
            rows.append(row)
    return rows


def _sort_value(p: Point, metric: str) -> float:
    v = p.metrics.get(metric, math.nan)
    return v if math.isfinite(v) else -1.0


def write_csv(run: CalibrationRun, path: Path) -> Path:
    from qc.cache import atomic_write_text

    rows = table_rows(run)
    columns: list[str] = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())
    return path


def write_svg(run: CalibrationRun, path: Path) -> Path:
    """Agreement (y) against the first labelled drop (x), one panel per task: over-budget variants in red, the
    budget as a vertical line, the fitted threshold and the current default as horizontal lines."""
    from qc.cache import atomic_write_text

    width, height, pad = 520, 380, 56
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width * len(run.fits)}" height="{height}" '
        'font-family="sans-serif" font-size="11">'
    ]
    for n, f in enumerate(run.fits):
        ox = n * width
        budget = f.calibration.budgets[0]
        agreement = f.calibration.agreement
        xs = [p.metrics.get(budget.metric, math.nan) for p in f.points]
        finite_x = [x for x in xs if math.isfinite(x)]
        budget_value = float(getattr(f.points[0].spec.thresholds, budget.threshold))
        x_lo = min([*finite_x, 0.0, -0.02])
        x_hi = max([*finite_x, budget_value * 2, 0.1])
        x_span = x_hi - x_lo

        def sx(x: float, ox: int = ox, x_lo: float = x_lo, x_span: float = x_span) -> float:
            return ox + pad + (x - x_lo) / x_span * (width - 2 * pad)

        def sy(y: float) -> float:
            return height - pad - y * (height - 2 * pad)

        parts.append(f'<rect x="{ox}" y="0" width="{width}" height="{height}" fill="white"/>')
        parts.append(
            f'<text x="{ox + width / 2}" y="18" text-anchor="middle" font-size="13">{escape(f.task)}: '
            f"{escape(agreement.metric)} against {escape(budget.metric)} ({len(f.points)} variants)</text>"
        )
        x0, x1, y0, y1 = sx(x_lo), sx(x_hi), sy(0.0), sy(1.0)
        parts.append(f'<rect x="{x0}" y="{y1}" width="{x1 - x0}" height="{y0 - y1}" fill="none" stroke="#444"/>')
        for k in range(6):
            y = k / 5
            parts.append(f'<text x="{x0 - 6}" y="{sy(y) + 4}" text-anchor="end">{y:.1f}</text>')
        for k in range(6):
            x = x_lo + k * x_span / 5
            parts.append(f'<text x="{sx(x)}" y="{y0 + 16}" text-anchor="middle">{x:.2f}</text>')
        parts.append(
            f'<text x="{(x0 + x1) / 2}" y="{height - 12}" text-anchor="middle">{escape(budget.metric)} '
            "(labelled; NaN drawn at the right edge)</text>"
        )
        parts.append(
            f'<text x="{ox + 14}" y="{(y0 + y1) / 2}" text-anchor="middle" '
            f'transform="rotate(-90 {ox + 14} {(y0 + y1) / 2})">'
            f"{escape(agreement.metric)} (label-free; NaN at 0)</text>"
        )
        bx = sx(budget_value)
        parts.append(f'<line x1="{bx}" y1="{y1}" x2="{bx}" y2="{y0}" stroke="#888" stroke-dasharray="4 3"/>')
        parts.append(f'<text x="{bx + 3}" y="{y1 + 12}" fill="#666">{escape(budget.threshold)} {budget_value:g}</text>')
        default = _default(agreement.threshold)
        lines = [(f.threshold, "#1a7f37", "fitted" + (" = default" if f.threshold == default else ""))]
        if f.threshold != default:
            lines.append((default, "#9a6700", "default"))
        for value, colour, what in lines:
            if value is None:
                continue
            parts.append(f'<line x1="{x0}" y1="{sy(value)}" x2="{x1}" y2="{sy(value)}" stroke="{colour}"/>')
            parts.append(
                f'<text x="{x1 - 4}" y="{sy(value) - 4}" text-anchor="end" fill="{colour}">'
                f"{what} {escape(agreement.threshold)} {value:g}</text>"
            )
        for p, x in zip(f.points, xs, strict=True):
            y = p.metrics.get(agreement.metric, math.nan)
            cx = sx(x) if math.isfinite(x) else x1 - 4
            cy = sy(y) if math.isfinite(y) else y0
            colour = "#cf222e" if f.over_budget(p) else ("#bc4c00" if p.labelled_failing else "#0969da")
            parts.append(
                f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="4" fill="{colour}" fill-opacity="0.7">'
                f"<title>{escape(p.variant)}</title></circle>"
            )
        legend = [
            ("#cf222e", f"over budget ({' or '.join(f.gates)} fails)"),
            ("#bc4c00", "within it, another labelled gate fails"),
            ("#0969da", "every labelled gate passes"),
        ]
        for k, (colour, text) in enumerate(legend):
            parts.append(f'<text x="{x0 + 6}" y="{y0 - 34 + 14 * k}" fill="{colour}">{escape(text)}</text>')
    parts.append("</svg>")
    atomic_write_text(path, "\n".join(parts) + "\n")
    return path


def _fit_sentence(f: Fit, verb: str) -> str:
    name = f.calibration.agreement.threshold
    if f.threshold is None:
        return f"**No `{name}` fitted**: {f.reason} ({len(f.points)} variants)."
    fp, ff = f.counts[f.threshold]
    return (
        f"**{verb} `{name}` = {f.threshold:g}** ({f.reason}): {fp} false pass(es), {ff} false fail(s) among "
        f"{len(f.points)} variants, {f.over_budget_count} of them over budget ({' or '.join(f.gates)} fails)."
    )


def _counts_table(f: Fit) -> list[str]:
    name = f.calibration.agreement.threshold
    default = _default(name)
    configured = {float(getattr(p.spec.thresholds, name)) for p in f.points}
    out = [f"| `{name}` | false passes | false fails | which |", "|---|---|---|---|"]
    for value, (fp, ff) in sorted(f.counts.items()):
        which = []
        if value == f.threshold:
            which.append("fitted")
        if value == default:
            which.append("current default")
        if value in configured:
            which.append("set in the entries")
        out.append(f"| {value:g} | {fp} | {ff} | {', '.join(which) or 'asked (--also)'} |")
    return out


def _md_table(rows: list[dict[str, str]], columns: Sequence[str]) -> list[str]:
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        out.append("| " + " | ".join(r.get(c, "").replace("|", "\\|") for c in columns) + " |")
    return out


def markdown(run: CalibrationRun, command: str, svg: str) -> str:
    """``calibration.md``: the fit per task with its false pass / false fail counts, how to re-run, the table."""
    lines = [
        "# Calibration of the label-free agreement gates",
        "",
        f"Written by `{command}`; re-run it rather than editing this file.",
        "",
        "Without labels, a task's agreement gate (the target against the reference, no ground truth) is the only gate",
        "that speaks about the task. Its threshold is calibrated here against the labelled budget gates: every",
        "labelled models.yaml entry is re-quantized with a sweep of settings (per-channel or per-tensor weights x",
        "activation quantizer tf / enhanced / symmetric x 8 / 16-bit activations x 32 / 8-bit biases x the entry's",
        "`float_downstream_of` or none), each variant runs through the normal cached stages, and its labelled drops",
        "and its agreement are recorded. A variant is **over budget** when the task's first labelled gate fails",
        "with the entry's budget (detection: `map_drop`, AP@[.5:.95] drop over `max_map_drop`). The fitted threshold",
        "is the smallest value on a 0.01 grid at which no over-budget variant passes the agreement gate (**no false",
        "pass**); a **false fail** is a variant within budget that the agreement gate fails at that threshold. The",
        "same fit with every labelled gate as the budget (detection: `map50_drop` too) is reported beside it.",
        "",
    ]
    rows = table_rows(run)
    for f in run.fits:
        agreement = f.calibration.agreement
        images = max((p.images for p in f.points), default=0)
        objects = max((p.objects for p in f.points), default=0)
        budgets = ", ".join(
            f"`{b.gate}` ({b.threshold} {getattr(f.points[0].spec.thresholds, b.threshold):g})"
            for b in f.calibration.budgets
        )
        lines += [f"## {f.task}: `{agreement.threshold}`", ""]
        lines += [_fit_sentence(f, "Fitted"), ""]
        lines += [
            f"Budgets (labelled gates): {budgets}. Label-free gate: `{agreement.gate}` (`{agreement.metric}` at least "
            f"`{agreement.threshold}`). Measured on {images} labelled images with {objects} labelled objects.",
            "",
            *_counts_table(f),
        ]
        if f.strict is not None:
            lines += ["", f"With every labelled gate as the budget ({', '.join(f'`{g}`' for g in f.strict.gates)}):"]
            lines += ["", _fit_sentence(f.strict, "It would fit"), "", *_counts_table(f.strict)]
        lines += ["", f"![{agreement.metric} against the labelled drop]({svg})", ""]
        mine = [r for r in rows if r["task"] == f.task]
        columns = [
            "variant",
            *(b.metric for b in f.calibration.budgets),
            agreement.metric,
            "labelled_failing",
            "over_budget",
            *(["agreement_at_fit"] if f.threshold is not None else []),
            "models",
        ]
        lines += _md_table(mine, columns)
        lines += [
            "",
            "Variant ids: `pc`/`pt` per-channel / per-tensor weights, then the activation quantizer, `a8`/`a16` the",
            "activation bitwidth, `b32`/`b8` the bias bitwidth, `+float:` the tensors downstream of which every node",
            "stays in float. NaN: the target found nothing (its drop and agreement are undefined; both gates fail).",
            "",
        ]
        lines += [
            "### How far to trust it",
            "",
            f"{images} images with {objects} labelled objects make a **small calibration set**: one object found or",
            f"missed moves AP50 by roughly 1/{max(objects, 1)} on its class, so a drop near the budget can land on",
            "either side of it, and the fitted threshold inherits that noise. The fit says which threshold separates",
            "these variants on these images; it is a default, not a guarantee for your model and data.",
            "",
        ]
    lines += [
        "## Re-running it on your own labelled data",
        "",
        "1. Write a models.yaml entry for your model with `eval_data: {coco: {annotations: ..., images: ...}}` (your",
        "   labelled images, COCO format), a `calibration` image folder, a `task` section and your budgets in",
        "   `thresholds` (any target kind: the sweep quantizes the reference on the host with `ort-int8`).",
        "2. Run `qc calibrate my-models.yaml --out my-calibration/` (add `--model NAME` to pick entries,",
        "   `--also 0.5` to count false passes / fails at another threshold). Every variant is cached: a second run",
        "   only re-fits.",
        "3. Set the fitted value as `thresholds.min_agreement_ap` (detection; each task's agreement threshold) in the",
        "   entries you run without labels.",
        "",
    ]
    if run.skipped:
        lines += ["## Entries not calibrated", "", *(f"- {s}" for s in run.skipped), ""]
    return "\n".join(lines)


def write_outputs(run: CalibrationRun, out: Path, command: str) -> list[Path]:
    from qc.cache import atomic_write_text

    out.mkdir(parents=True, exist_ok=True)
    written = [write_csv(run, out / "calibration.csv"), write_svg(run, out / "calibration.svg")]
    md = out / "calibration.md"
    atomic_write_text(md, markdown(run, command, "calibration.svg"))
    written.append(md)
    run.written = written
    return written


def main(
    models: Path,
    names: Sequence[str],
    out: Path,
    *,
    images: int | None = None,
    also: Sequence[float] = (),
    step: float = STEP,
    command: str = "qc calibrate",
    progress: Callable[[str], None] | None = None,
) -> CalibrationRun:
    """``qc calibrate``: the named entries of ``models`` (default: all), outputs written to ``out``."""
    from qc.config import load_models
    from qc.pipeline import open_stages

    if not 0 < step <= 0.5:
        raise ConfigError(f"qc calibrate: --step must be in (0, 0.5], found {step}")
    bad_also = [v for v in also if not 0 <= v <= 1]
    if bad_also:
        raise ConfigError(f"qc calibrate: --also thresholds must be in [0, 1], found {bad_also}")
    chosen = list(names) or [s.name for s in load_models(Path(models))]
    stages_list = open_stages(Path(models), chosen, out / "calibration-reports", images)
    run = calibrate(stages_list, stages_list[0].ctx, also=also, step=step, progress=progress)
    write_outputs(run, out, command)
    return run
