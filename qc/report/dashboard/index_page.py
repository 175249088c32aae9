"""The index page: the models table with gate outcomes, the per-layer overlay, trends over runs, patterns."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from qc.config import GATES
from qc.report.dashboard.assets import PAGE, page
from qc.report.dashboard.charts import Charts, layout, threshold_steps
from qc.report.dashboard.data import (
    COSINE_THRESHOLD,
    Loaded,
    ModelFiles,
    describe_thresholds,
    finite,
    num,
    read_csv,
    thresholds,
)
from qc.report.dashboard.markup import (
    OUTCOMES,
    Cell,
    esc,
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
from qc.report.history_types import HistoryPoint
from qc.report.paths import MODELS_DIR
from qc.tasks.base import all_headlines

TREND_HEAD = ("worst_layer_cosine", "layers_failing")
TREND_TAIL = ("fps", "latency_ms_p50", "lint_findings")


def trend_metrics() -> tuple[str, ...]:
    """The metrics drawn as trends: similarity, every registered task's headlines, speed, lint."""
    return (*TREND_HEAD, *(h.name for h in all_headlines()), *TREND_TAIL)


def accuracy_keys(headline: str) -> tuple[str, ...]:
    """Where accuracy.json holds a headline metric: ``reference_x`` -> ``reference.x``, ``target_x`` ->
    ``target.x``, ``x_drop`` -> ``drop.x``, ``a.b`` -> ``a_b``, else the name itself."""
    for side in ("reference", "target"):
        if headline.startswith(f"{side}_"):
            return (f"{side}.{headline.removeprefix(side + '_')}", headline)
    if headline.endswith("_drop"):
        return (f"drop.{headline.removesuffix('_drop')}", headline)
    return (headline, headline.replace(".", "_"))


TOP_PATTERNS = 20


# --------------------------------------------------------------------------------------------------- index page


def _headline_value(row: Mapping[str, str], m: ModelFiles, headline: str) -> float | None:
    value = num(row.get(headline))
    if value is not None:
        return value
    for key in accuracy_keys(headline):
        found = m.accuracy_value(key)
        if found is not None:
            return found
    return None


def _index_table(
    models: list[str], files: Mapping[str, ModelFiles], summary: Loaded, settings: Mapping[str, Mapping[str, Any]]
) -> str:
    header = list(summary.rows[0]) if summary.rows else []
    gates = [g for g in GATES if g in header]
    by_model = {r.get("model", ""): r for r in summary.rows}
    # the headline metrics of every task that has a value for some model (detection: AP, segmentation: mIoU, ...)
    headlines = [
        h
        for h in all_headlines()
        if any(_headline_value(by_model.get(n, {}), files[n], h.name) is not None for n in models)
    ]
    rows = []
    for name in models:
        m = files[name]
        row = by_model.get(name, {})

        def pick(key: str, fallback: float | None, row: Mapping[str, str] = row) -> float | None:
            value = num(row.get(key))
            return value if value is not None else fallback

        worst = m.worst_layer()
        worst_cos = pick("worst_layer_cosine", worst[1] if worst else None)
        worst_name = row.get("worst_layer") or (worst[0] if worst else "")
        fps = m.target_fps()
        if fps is None and row.get("fps") not in OUTCOMES:
            fps = num(row.get("fps"))
        lint_count = pick("lint_findings", None if m.lint.problem else float(len(m.lint.rows)))
        model_settings = settings.get(name, {})
        target = row.get("target") or str(
            model_settings.get("target") or model_settings.get("target.kind") or model_settings.get("target_kind") or ""
        )
        cells = [
            Cell(f'<a href="{href(MODELS_DIR, name, PAGE)}">{esc(name)}</a>', sort=name, cls="model"),
            text(target),
            *(outcome(row.get(g)) for g in gates),
            *(number(_headline_value(row, m, h.name)) for h in headlines),
            number(worst_cos, 5, "bad" if worst_cos is not None and math.isnan(worst_cos) else ""),
            text(worst_name, "name"),
            number(fps),
            number(lint_count, 0),
        ]
        rows.append(cells)
    heads = [
        "model",
        "target",
        *(g.replace("_", " ") for g in gates),
        *(h.label for h in headlines),
        "worst layer cosine",
        "worst layer",
        "FPS",
        "lint findings",
    ]
    return table(heads, rows, cls="models")


def _overlay_chart(models: list[str], files: Mapping[str, ModelFiles], charts: Charts) -> str:
    import plotly.graph_objects as go
    from plotly.colors import qualitative

    fig = go.Figure()
    with_layers = 0
    without_column: list[str] = []
    for name in models:
        rows = files[name].layers.rows
        if not rows:
            continue
        color = qualitative.Plotly[with_layers % len(qualitative.Plotly)]
        with_layers += 1
        xs = [x if x is not None and finite(x) else float(i) for i, x in enumerate(num(r.get("index")) for r in rows)]
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=[c if finite(c) else None for c in (num(r.get("cosine_mean")) for r in rows)],
                customdata=[[plot_text(r.get(k, "")) for k in ("tensor", "op_type", "shape")] for r in rows],
                name=plot_text(name),
                mode="lines+markers",
                marker={"size": 4, "color": color},
                line={"color": color},
                legendgroup=plot_text(name),
                hovertemplate="%{customdata[0]}<br>%{customdata[1]}  %{customdata[2]}<br>layer %{x}: cosine "
                "%{y:.5f}<extra>%{fullData.name}</extra>",
            )
        )
        read = thresholds(files[name].layers, COSINE_THRESHOLD)
        if read is None:
            without_column.append(name)
            continue
        steps = threshold_steps(xs, read, name=f"{name}: threshold {describe_thresholds(read, 'layer')}")
        steps.update(line={"color": color}, legendgroup=plot_text(name))
        fig.add_trace(steps)
    if not with_layers:
        return note("No model has a layer comparison (no layers.csv), so there is nothing to overlay.")
    layout(fig, title="Per-layer cosine (mean over images) along the topological order", height=460)
    fig.update_xaxes(title_text="layer (topological order)")
    fig.update_yaxes(title_text="cosine")
    chart = charts.render(fig)
    if without_column:
        chart += "\n" + note(
            f"No threshold line for {', '.join(without_column)}: its layers.csv has no {COSINE_THRESHOLD} column "
            "(written by an older qc)."
        )
    return chart


def _trends(history: Sequence[HistoryPoint], charts: Charts) -> str:
    import plotly.graph_objects as go

    runs = {p.run_id for p in history}
    if len(runs) < 2:
        held = "no run" if not runs else "one run"
        return note(f"Trends need at least two runs in the history; it holds {held}.")
    metrics = [m for m in trend_metrics() if any(p.metric == m for p in history)]
    if not metrics:
        metrics = sorted({p.metric for p in history})
    out = []
    single = []
    for metric in metrics:
        points = sorted((p for p in history if p.metric == metric and math.isfinite(p.value)), key=lambda p: p.time)
        if len({p.run_id for p in points}) < 2:
            single.append(metric)
            continue
        series: dict[tuple[str, str], list[HistoryPoint]] = {}
        for p in points:
            series.setdefault((p.model, p.target), []).append(p)
        targets = {t for _, t in series}
        fig = go.Figure()
        for (model, target), pts in series.items():
            label = f"{model} ({target})" if len(targets) > 1 and target else model
            fig.add_trace(
                go.Scatter(
                    x=[p.time for p in pts],
                    y=[p.value for p in pts],
                    customdata=[[plot_text(p.run_id), plot_text((p.git_commit or "no commit")[:12])] for p in pts],
                    name=plot_text(label),
                    mode="lines+markers",
                    hovertemplate="run %{customdata[0]} (%{customdata[1]})<br>%{x}: %{y:.5g}"
                    "<extra>%{fullData.name}</extra>",
                )
            )
        layout(fig, title=metric, height=260)
        fig.update_layout(
            height=300,
            margin={"l": 50, "r": 10, "t": 36, "b": 20},
            showlegend=len(series) > 1,
            legend={"orientation": "h", "y": -0.3, "font": {"size": 10}},
        )
        out.append(charts.render(fig, small=True))
    text_parts = [f"<p>{len(runs)} runs in the history.</p>"]
    if single:
        text_parts.append(note(f"Only one run holds {', '.join(single)}: no trend to draw."))
    if out:
        text_parts.append(f'<div class="trends">{"".join(out)}</div>')
    return "\n".join(text_parts)


def _patterns_section(patterns: Loaded, models: Sequence[str], charts: Charts) -> str:
    missing = why_missing(patterns, "diagnosis", empty="no diagnosed model had a quantized layer.")
    if missing:
        return note(missing)
    import plotly.graph_objects as go

    def worst(value: str) -> Cell:
        model = max((n for n in models if value.startswith(f"{n}:")), key=len, default=None)
        if model is None:
            return text(value, "name")
        tensor = value[len(model) + 1 :]
        link = f'<a href="{href(MODELS_DIR, model, PAGE)}#diagnosis">{esc(model)}</a>'
        return Cell(f"{link}: {esc(tensor)}", sort=value, cls="name")

    rows = [
        [
            text(r.get("op_type")),
            text(r.get("pattern"), "wrap"),
            number(num(r.get("count")), 0),
            number(num(r.get("models")), 0),
            number(num(r.get("mean_sqnr_db_local"))),
            number(num(r.get("min_sqnr_db_local"))),
            worst(r.get("worst_tensor", "")),
        ]
        for r in patterns.rows
    ]
    heads = ["op type", "pattern", "layers", "models", "mean local SQNR dB", "min local SQNR dB", "worst layer"]
    ranked = [(r, num(r.get("mean_sqnr_db_local"))) for r in patterns.rows]
    top = sorted(((r, v) for r, v in ranked if finite(v)), key=lambda rv: rv[1] or 0.0)[:TOP_PATTERNS]
    labels = unique_labels(
        plot_text(r.get("op_type", "") + ("" if r.get("pattern", "-") in ("", "-") else f" · {r.get('pattern')}"))
        for r, _ in top
    )
    custom = [[r.get("count", ""), r.get("models", ""), plot_text(r.get("worst_tensor", ""))] for r, _ in top][::-1]
    fig = go.Figure()
    fig.add_trace(
        go.Bar(
            x=[v for _, v in top][::-1],
            y=labels[::-1],
            orientation="h",
            name="mean local SQNR dB",
            customdata=custom,
            hovertemplate="%{y}<br>mean local SQNR %{x:.2f} dB over %{customdata[0]} layers of %{customdata[1]} "
            "models<extra></extra>",
            marker={"color": "#8250df"},
        )
    )
    fig.add_trace(
        go.Scatter(
            x=[num(r.get("min_sqnr_db_local")) if finite(num(r.get("min_sqnr_db_local"))) else None for r, _ in top][
                ::-1
            ],
            y=labels[::-1],
            mode="markers",
            name="worst layer",
            customdata=custom,
            hovertemplate="%{y}<br>worst: %{customdata[2]}, %{x:.2f} dB<extra></extra>",
            marker={"symbol": "x", "color": "#cf222e", "size": 9},
        )
    )
    layout(
        fig,
        title=f"Local SQNR by op type and pattern, lowest (most loss) first: top {len(top)}",
        height=160 + 24 * len(top),
    )
    fig.update_layout(yaxis={"automargin": True})
    fig.update_xaxes(title_text="local SQNR dB (each layer fed the reference's inputs)")
    chart = charts.render(fig) if top else note("patterns.csv has no numeric local SQNR.")
    lead = (
        f"{len(rows)} op type / pattern groups over the diagnosed models: the local SQNR of a layer is its own "
        "quantization error, fed the reference's inputs, so low groups are the constructs that quantize badly."
    )
    return f"<p>{esc(lead)}</p>\n{chart}\n{table(heads, rows)}"


def index_page(
    report_dir: Path,
    models: list[str],
    files: Mapping[str, ModelFiles],
    summary: Loaded,
    settings: Mapping[str, Mapping[str, Any]],
    history: Sequence[HistoryPoint],
    junit_name: str,
    skipped: list[str],
) -> str:
    charts = Charts()
    links = []
    if (report_dir / junit_name).is_file():
        relative = Path(os.path.relpath(report_dir / junit_name, report_dir)).as_posix()
        links.append(f'<a href="{href(*relative.split("/"))}">JUnit results ({esc(junit_name)})</a>')
    else:
        links.append(f'<span class="muted">no {esc(junit_name)} in this folder (run pytest with --junitxml)</span>')
    if summary.path.is_file():
        links.append(f'<a href="{href("summary.csv")}">summary.csv</a>')
    if (report_dir / "patterns.csv").is_file():
        links.append(f'<a href="{href("patterns.csv")}">patterns.csv</a>')
    body = [f"<h1>qc report: {len(models)} model{'s' if len(models) != 1 else ''}</h1>", f"<p>{' · '.join(links)}</p>"]
    body.append('<h2 id="models">Models and gates</h2>')
    if summary.missing:
        body.append(note("No summary.csv: gate outcomes are unknown; the numbers below come from each model's files."))
    elif summary.problem:
        body.append(note(f"summary.csv could not be read: {summary.problem}."))
    if skipped:
        body.append(note(f"Skipped folder names that cannot be a model page: {', '.join(skipped)}."))
    if models:
        body.append("<p>Click a column header to sort. AP drop is reference AP minus target AP.</p>")
        body.append(_index_table(models, files, summary, settings))
    else:
        body.append(note("This folder holds no model results yet."))
    body.append('<h2 id="similarity">Per-layer similarity</h2>')
    body.append(_overlay_chart(models, files, charts))
    body.append('<h2 id="trends">Trends over runs</h2>')
    body.append(_trends(history, charts))
    patterns = read_csv(report_dir / "patterns.csv")
    if not patterns.missing:
        body.append('<h2 id="patterns">Patterns across models</h2>')
        body.append(_patterns_section(patterns, models, charts))
    return page("qc report", "\n".join(body), root="")
