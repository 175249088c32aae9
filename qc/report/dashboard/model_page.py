"""The per-model page: its sections in order (comparison, accuracy, speed, lint, diagnosis, settings)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from qc.config import GATES
from qc.report.dashboard.assets import PAGE, page
from qc.report.dashboard.charts import Charts, layout
from qc.report.dashboard.comparison import layer_section, outputs_section, unmatched_section
from qc.report.dashboard.data import MODEL_FILES, ModelFiles, finite, fmt_num, num
from qc.report.dashboard.diagnosis import diagnosis_section
from qc.report.dashboard.markup import (
    Cell,
    esc,
    flatten,
    href,
    note,
    number,
    outcome,
    plot_text,
    table,
    text,
    unique_labels,
    why_missing,
)
from qc.report.dashboard.split import split_section

SEVERITY_BADGE = {"error": "failed", "warning": "xfailed"}
SEVERITY_RANK = {"info": 0, "warning": 1, "error": 2}


TOP_LAYERS = 20


def _speed_section(m: ModelFiles, charts: Charts) -> str:
    import plotly.graph_objects as go

    parts = ["<h3>Timed runs</h3>"]
    missing = why_missing(m.speed, "speed stage", empty="no timings were recorded.")
    data = m.speed.data
    if missing or not isinstance(data, dict):
        parts.append(note(missing or "speed.json is not a JSON object."))
    else:
        sides: dict[str, dict[str, Any]] = {}
        for side in ("target", "reference"):
            value = data.get(side)
            sides[side] = value if isinstance(value, dict) else {}
        keys = list(dict.fromkeys([*sides["target"], *sides["reference"]]))
        rows = []
        for k in keys:
            cells = [text(k)]
            for s in ("target", "reference"):
                v = sides[s].get(k)
                cells.append(number(num(v), 4) if num(v) is not None else text(v))
            rows.append(cells)
        parts.append(table(["", "target", "reference"], rows))
        extra = []
        for key, label in (
            ("fps_ratio", "FPS target / reference"),
            ("profiled_layer_time_total", "profiled layer time total"),
            ("profiling_overhead", "profiling overhead"),
        ):
            if key in data:
                v = num(data.get(key))
                unit = f" {data.get('profiled_unit', '')}" if key == "profiled_layer_time_total" else ""
                extra.append(f"<li>{esc(label)}: {esc(fmt_num(v))}{esc(unit)}</li>")
        if extra:
            parts.append(f"<ul>{''.join(extra)}</ul>")
        if data.get("note"):
            parts.append(f'<p class="muted">{esc(str(data["note"]))}</p>')

    parts.append(f"<h3>Per-layer time (top {TOP_LAYERS})</h3>")
    missing = why_missing(m.layer_times, "profiled run", empty="the profiler recorded no layers.")
    if missing:
        parts.append(note(missing))
    else:
        timed = [(r, num(r.get("time"))) for r in m.layer_times.rows]
        top = sorted(((r, t) for r, t in timed if finite(t)), key=lambda rt: -(rt[1] or 0.0))[:TOP_LAYERS]
        unit = top[0][0].get("unit", "") if top else ""
        labels = unique_labels(plot_text(r.get("layer", "")) for r, _ in top)
        fig = go.Figure(
            go.Bar(
                x=[t for _, t in top][::-1],
                y=labels[::-1],
                orientation="h",
                customdata=[[plot_text(r.get("op_type", "")), fmt_num(num(r.get("share")))] for r, _ in top][::-1],
                hovertemplate="%{y}<br>%{customdata[0]}: %{x} " + plot_text(unit) + ", share %{customdata[1]}"
                "<extra></extra>",
                marker={"color": "#0969da"},
            )
        )
        layout(fig, title=f"Top {len(top)} of {len(timed)} layers by time ({unit})", height=120 + 22 * len(top))
        fig.update_layout(margin={"l": 20}, yaxis={"automargin": True})
        parts.append(charts.render(fig) if top else note("layer_times.csv has no numeric times."))

    parts.append("<h3>Time share by op type</h3>")
    missing = why_missing(m.op_types, "profiled run", empty="the profiler recorded no op types.")
    if missing:
        parts.append(note(missing.replace("profiled run", "profiled run (op types)")))
    else:
        ops = [(r, num(r.get("share"))) for r in m.op_types.rows]
        ops = sorted(((r, s) for r, s in ops if finite(s)), key=lambda rs: rs[1] or 0.0)
        fig = go.Figure(
            go.Bar(
                x=[100 * (s or 0.0) for _, s in ops],
                y=[plot_text(r.get("op_type", "")) for r, _ in ops],
                orientation="h",
                customdata=[
                    [r.get("layers", ""), fmt_num(num(r.get("time"))), plot_text(r.get("unit", ""))] for r, _ in ops
                ],
                hovertemplate="%{y}: %{x:.1f}% (%{customdata[0]} layers, %{customdata[1]} %{customdata[2]})"
                "<extra></extra>",
                marker={"color": "#8250df"},
            )
        )
        layout(fig, title="Share of profiled time by op type (%)", height=120 + 22 * len(ops))
        fig.update_layout(yaxis={"automargin": True})
        parts.append(charts.render(fig) if ops else note("op_types.csv has no numeric shares."))
    return "\n".join(parts)


def _lint_section(m: ModelFiles) -> str:
    missing = why_missing(m.lint, "lint stage", empty="lint found nothing to report.")
    if missing:
        return note(missing)
    rows = []
    for r in m.lint.rows:
        share = num(r.get("time_share"))
        rows.append(
            [
                text(r.get("rule")),
                Cell(
                    f'<span class="badge {SEVERITY_BADGE.get(r.get("severity", ""), "skipped")}">'
                    f"{esc(r.get('severity', ''))}</span>",
                    sort=str(SEVERITY_RANK.get(r.get("severity", ""), "")),
                ),
                text(r.get("node"), "name"),
                text(r.get("op_type")),
                text(r.get("what"), "wrap"),
                text(r.get("why"), "wrap"),
                text(r.get("fix"), "wrap"),
                Cell(
                    esc(f"{100 * share:.2f}%" if finite(share) and share is not None else "—"),
                    sort=repr(share) if finite(share) else "",
                ),
            ]
        )
    heads = ["rule", "severity", "node", "op type", "what", "why", "fix", "time share"]
    return f"<p>{len(rows)} findings.</p>\n{table(heads, rows)}"


def _accuracy_section(m: ModelFiles) -> str:
    parts: list[str] = []
    missing = why_missing(m.accuracy, "accuracy stage", empty="no accuracy was measured.")
    data = m.accuracy.data
    if missing or not isinstance(data, dict):
        parts.append(note(missing or "accuracy.json is not a JSON object."))
    else:
        sides = ("reference", "target", "drop")
        pivot: dict[str, dict[str, Any]] = {}
        other: list[tuple[str, Any]] = []
        for key, value in data.items():
            if isinstance(value, dict | list):
                continue
            side, _, metric = key.partition(".")
            if side in sides and metric:
                pivot.setdefault(metric, {})[side] = value
            else:
                other.append((key, value))

        def cell(value: Any) -> Cell:
            n = num(value)
            return number(n) if n is not None else text(value, "wrap")

        rows = [[text(metric), *(cell(values.get(s)) for s in sides)] for metric, values in pivot.items()]
        if rows:
            parts.append(table(["metric", "reference", "target", "drop (reference − target)"], rows))
        if other:
            parts.append(table(["", "value"], [[text(k), cell(v)] for k, v in other]))
        per_class = [k.removeprefix("reference.per_class_") for k in data if k.startswith("reference.per_class_")]
        for metric in per_class:  # e.g. per_class_ap (detection), per_class_iou (segmentation)
            ref_pc, tgt_pc = data.get(f"reference.per_class_{metric}"), data.get(f"target.per_class_{metric}")
            ref_pc = ref_pc if isinstance(ref_pc, dict) else {}
            tgt_pc = tgt_pc if isinstance(tgt_pc, dict) else {}
            classes = list(dict.fromkeys([*ref_pc, *tgt_pc]))
            if classes:
                label = {"ap": "AP", "iou": "IoU"}.get(metric, metric)
                pc_rows = [[text(c), number(num(ref_pc.get(c))), number(num(tgt_pc.get(c)))] for c in classes]
                heads = ["class", f"reference {label}", f"target {label}"]
                parts.append(f"<h3>{esc(label)} per class</h3>" + table(heads, pc_rows))
        worst = data.get("most_disagreeing_images")
        if isinstance(worst, list) and worst:
            items = ", ".join(
                f"image {esc(str(w.get('image_id')))} ({esc(fmt_num(num(w.get('disagreement'))))})"
                for w in worst
                if isinstance(w, dict)
            )
            parts.append(f"<p>Most disagreeing images: {items}.</p>")
    shown = data.get("presentation") if isinstance(data, dict) else None
    if isinstance(shown, dict):  # a task that says what it wrote (segmentation, classification, ...)
        listed = shown.get("files")
        files: list[Any] = listed if isinstance(listed, list) else []
        links = [f'<a href="{href(str(f))}">{esc(str(f))}</a>' for f in files if (m.folder / str(f)).is_file()]
        if links:
            parts.append(f"<p>Files: {', '.join(links)}.</p>")
        caption = shown.get("pictures")
        if caption is None:  # a task that draws none
            return "\n".join(parts)
        parts.append(f"<h3>Pictures ({esc(str(caption))})</h3>")
        parts.append(_figures(m) if m.pictures else note("No pictures (pictures/ is missing or holds no PNG)."))
        return "\n".join(parts)
    counts = []
    for side, loaded in m.detections.items():
        if loaded.missing:
            counts.append(f"{side}: no detections_{side}.json")
        elif loaded.problem and loaded.problem != "empty":
            counts.append(f"{side}: detections_{side}.json could not be read ({loaded.problem})")
        else:
            n = len(loaded.data) if isinstance(loaded.data, list) else 0
            counts.append(f'<a href="{href(f"detections_{side}.json")}">{side}</a>: {n} detections')
    parts.append(
        "<p>Detections (COCO results format): "
        + "; ".join(c if c.startswith("<a ") else esc(c) for c in counts)
        + ".</p>"
    )
    parts.append("<h3>Detection pictures (reference | target)</h3>")
    if not m.pictures:
        parts.append(note("No detection pictures (pictures/ is missing or holds no PNG)."))
    else:
        parts.append(_figures(m))
    return "\n".join(parts)


def _figures(m: ModelFiles) -> str:
    figs = [
        f'<figure><a href="{href("pictures", p.name)}"><img src="{href("pictures", p.name)}" '
        f'alt="{esc(p.stem)}" loading="lazy" width="640"></a><figcaption>{esc(p.name)}</figcaption></figure>'
        for p in m.pictures
    ]
    return f'<div class="pictures">{"".join(figs)}</div>'


def _settings_section(settings: Mapping[str, Any] | None) -> str:
    if not settings:
        return note("No run settings were passed for this model.")
    rows = [[text(k, "name"), text(v, "wrap")] for k, v in flatten(settings)]
    return table(["setting", "value"], rows)


def model_page(m: ModelFiles, settings: Mapping[str, Any], summary_row: Mapping[str, str] | None) -> str:
    charts = Charts()
    sections = [
        ("layers", "Per-layer comparison", layer_section(m, charts)),
        ("outputs", "Outputs and slices", outputs_section(m, charts)),
        ("unmatched", "Unmatched tensors", unmatched_section(m)),
        *([("split", "Quantization vs runtime error", split_section(m, charts))] if not m.split.missing else []),
        ("accuracy", "Accuracy", _accuracy_section(m)),
        ("speed", "Speed", _speed_section(m, charts)),
        ("lint", "Lint findings", _lint_section(m)),
        ("diagnosis", "Diagnosis", diagnosis_section(m, charts)),
        ("settings", "Settings", _settings_section(settings)),
    ]
    nav = "".join(f'<a href="#{a}">{esc(t)}</a>' for a, t, _ in sections)
    gates = ""
    if summary_row:
        cells = [(g, outcome(summary_row.get(g))) for g in GATES if g in summary_row]
        gates = " ".join(f"<span>{esc(g)} {c.markup}</span>" for g, c in cells)
    else:
        gates = '<span class="muted">No summary.csv row for this model: gate outcomes unknown.</span>'
    files = [f for f in MODEL_FILES if (m.folder / f).is_file()]
    raw = ", ".join(f'<a href="{href(f)}">{esc(f)}</a>' for f in files) or "none"
    body = [
        f'<nav><a href="../../{PAGE}">← all models</a></nav>',
        f"<h1>{esc(m.name)}</h1>",
        f"<p>{gates}</p>",
        f"<nav>{nav}</nav>",
        f'<p class="muted">Raw files: {raw}.</p>',
    ]
    body.extend(f'<h2 id="{a}">{esc(t)}</h2>\n{html_part}' for a, t, html_part in sections)
    return page(f"qc: {m.name}", "\n".join(body), root="../../")
