"""Model page, comparison sections: per-layer similarity (chart and table), outputs and slices, unmatched tensors.

The threshold lines are drawn from the ``cosine_threshold`` / ``sqnr_db_threshold`` columns the comparison wrote
(the tolerance actually applied to each tensor, overrides included); a CSV without them draws no line and says so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from qc.report.dashboard.charts import (
    THRESHOLD_COLOR,
    Charts,
    layout,
    no_threshold_column,
    threshold_marks,
    threshold_steps,
)
from qc.report.dashboard.data import (
    COSINE_THRESHOLD,
    SQNR_THRESHOLD,
    ModelFiles,
    describe_thresholds,
    finite,
    num,
    thresholds,
)
from qc.report.dashboard.markup import Cell, esc, note, number, plot_text, table, text, unique_labels, why_missing


def below(value: float | None, limit: float | None) -> bool:
    """A metric that fails its threshold: undefined (NaN), or under the threshold applied to that tensor."""
    return value is not None and (math.isnan(value) or (limit is not None and value < limit))


def layer_section(m: ModelFiles, charts: Charts) -> str:
    missing = why_missing(m.layers, "layer comparison", empty="the comparison produced no layers.")
    if missing:
        return note(missing)
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    n = len(m.layers.rows)
    read = thresholds(m.layers, COSINE_THRESHOLD)
    cos_thr: list[float | None] = read if read is not None else [None] * n
    xs: list[float] = []
    cos: list[float | None] = []
    cos_min: list[float | None] = []
    sqnr: list[float | None] = []
    info: list[list[str]] = []
    undefined_x: list[float] = []
    undefined_info: list[list[str]] = []
    first_bad: tuple[float, float | None, str] | None = None
    for pos, row in enumerate(m.layers.rows):
        x = num(row.get("index"))
        x = x if finite(x) else float(pos)
        assert x is not None
        c = num(row.get("cosine_mean"))
        details = [plot_text(row.get(k, "")) for k in ("tensor", "op_type", "shape", "undefined")]
        xs.append(x)
        cos.append(c if finite(c) else None)
        cos_min.append(num(row.get("cosine_min")) if finite(num(row.get("cosine_min"))) else None)
        s = num(row.get("sqnr_db_mean"))
        sqnr.append(s if finite(s) else None)
        info.append(details)
        if c is not None and math.isnan(c):
            undefined_x.append(x)
            undefined_info.append(details)
        if below(c, cos_thr[pos]) and first_bad is None:
            first_bad = (x, c if finite(c) else None, row.get("tensor", ""))
    defined = [c for c in cos if c is not None]
    colors = [THRESHOLD_COLOR if c is None or below(c, t) else "#0969da" for c, t in zip(cos, cos_thr, strict=True)]
    hover = (
        "%{customdata[0]}<br>%{customdata[1]}  %{customdata[2]}<br>layer %{x}: %{y:.5f}<extra>%{fullData.name}</extra>"
    )
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08, row_heights=[0.6, 0.4])
    fig.add_trace(
        go.Scatter(
            x=xs,
            y=cos,
            customdata=info,
            name="cosine (mean over images)",
            mode="lines+markers",
            marker={"color": colors, "size": 6},
            line={"color": "#0969da"},
            hovertemplate=hover,
        ),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Scatter(
            x=xs,
            y=cos_min,
            customdata=info,
            name="cosine (worst image)",
            mode="lines",
            line={"color": "#8c959f", "dash": "dot", "width": 1},
            hovertemplate=hover,
        ),
        row=1,
        col=1,
    )
    if read is not None:
        fig.add_trace(threshold_steps(xs, read, name=f"threshold {describe_thresholds(read, 'layer')}"), row=1, col=1)
    if undefined_x:
        bottom = min(defined) if defined else 0.0
        fig.add_trace(
            go.Scatter(
                x=undefined_x,
                y=[bottom] * len(undefined_x),
                customdata=undefined_info,
                mode="markers",
                name="undefined metric",
                marker={"symbol": "x", "color": THRESHOLD_COLOR, "size": 10},
                hovertemplate="%{customdata[0]}<br>undefined: %{customdata[3]}<extra></extra>",
            ),
            row=1,
            col=1,
        )
    fig.add_trace(
        go.Scatter(
            x=xs,
            y=sqnr,
            customdata=info,
            name="SQNR dB (mean)",
            mode="lines+markers",
            marker={"size": 4, "color": "#8250df"},
            line={"color": "#8250df"},
            hovertemplate=hover,
        ),
        row=2,
        col=1,
    )
    if first_bad is not None:
        x, y, name = first_bad
        value = "undefined" if y is None else f"{y:.4f}"
        label = "first undefined" if y is None else "first below threshold"
        fig.add_annotation(
            x=x,
            y=y if y is not None else (min(defined) if defined else 0.0),
            row=1,
            col=1,
            text=plot_text(f"{label}: {name} ({value})"),
            showarrow=True,
            arrowhead=2,
            ax=40,
            ay=-40,
            bgcolor="rgba(255,255,255,0.85)",
            bordercolor=THRESHOLD_COLOR,
        )
    layout(fig, title="Per-layer cosine and SQNR along the topological order", height=620)
    fig.update_yaxes(title_text="cosine", row=1, col=1)
    fig.update_yaxes(title_text="SQNR dB", row=2, col=1)
    fig.update_xaxes(title_text="layer (topological order)", row=2, col=1)
    parts = [charts.render(fig)]
    summary = f"{n} layers compared"
    if read is not None:
        failing = sum(1 for c, t in zip(cos, read, strict=True) if c is not None and t is not None and c < t)
        summary += f"; {failing} below their cosine threshold, {describe_thresholds(read, 'layer')}"
    if undefined_x:
        summary += f"; {len(undefined_x)} with an undefined metric"
    if first_bad is not None:
        summary += f"; the first failing layer is {first_bad[2]}"
    parts.append(f"<p>{esc(summary)}.</p>")
    if read is None:
        parts.append(note(no_threshold_column("layers.csv", COSINE_THRESHOLD)))
    rows = []
    for pos, row in enumerate(m.layers.rows):
        c = num(row.get("cosine_mean"))
        rows.append(
            [
                number(num(row.get("index")), 0),
                text(row.get("tensor"), "name"),
                text(row.get("op_type")),
                text(row.get("shape")),
                text(row.get("target_tensor"), "name"),
                *_metric_cells(row, c, "bad" if below(c, cos_thr[pos]) else ""),
                number(cos_thr[pos], 6),
            ]
        )
    heads = ["#", "tensor", "op type", "shape", "target tensor", *METRIC_HEADS, "cosine threshold"]
    parts.append(f"<details><summary>All {n} layers (table)</summary>{table(heads, rows)}</details>")
    return "\n".join(parts)


METRIC_HEADS = ("cosine mean", "cosine min", "SQNR mean", "SQNR min", "MSE", "max abs", "undefined")


def _metric_cells(row: Mapping[str, str], cosine: float | None, flag: str, sqnr_flag: str = "") -> list[Cell]:
    """The metric columns shared by layers.csv and outputs.csv rows."""
    return [
        number(cosine, 5, flag),
        number(num(row.get("cosine_min")), 5),
        number(num(row.get("sqnr_db_mean")), 4, sqnr_flag),
        number(num(row.get("sqnr_db_min"))),
        number(num(row.get("mse_mean"))),
        number(num(row.get("max_abs"))),
        text(row.get("undefined"), "wrap"),
    ]


def outputs_section(m: ModelFiles, charts: Charts) -> str:
    missing = why_missing(m.outputs, "output comparison", empty="the model has no compared outputs.")
    if missing:
        return note(missing)
    n = len(m.outputs.rows)
    read_cos = thresholds(m.outputs, COSINE_THRESHOLD)
    read_sqnr = thresholds(m.outputs, SQNR_THRESHOLD)
    cos_thr: list[float | None] = read_cos if read_cos is not None else [None] * n
    sqnr_thr: list[float | None] = read_sqnr if read_sqnr is not None else [None] * n
    rows = []
    for pos, row in enumerate(m.outputs.rows):
        c, s = num(row.get("cosine_mean")), num(row.get("sqnr_db_mean"))
        name = row.get("output", "")
        rows.append(
            [
                Cell(esc(name) if "[" not in name else f"&nbsp;&nbsp;↳ {esc(name)}", sort=name, cls="name"),
                text(row.get("shape")),
                *_metric_cells(
                    row, c, "bad" if below(c, cos_thr[pos]) else "", "bad" if below(s, sqnr_thr[pos]) else ""
                ),
                number(cos_thr[pos], 6),
                number(sqnr_thr[pos]),
            ]
        )
    heads = ["output / slice", "shape", *METRIC_HEADS, "cosine threshold", "SQNR threshold dB"]
    lead = []
    notes = []
    for read, column, what, noun, unit in (
        (read_cos, COSINE_THRESHOLD, "cosine", "output", ""),
        (read_sqnr, SQNR_THRESHOLD, "SQNR", "output", " dB"),
    ):
        if read is None:
            notes.append(note(no_threshold_column("outputs.csv", column)))
        else:
            lead.append(f"{what} {describe_thresholds(read, noun, unit)}")
    sentence = f"Thresholds per output and slice: {'; '.join(lead)}. " if lead else ""
    parts = [_outputs_chart(m, read_cos, read_sqnr, charts), *notes]
    parts.append(f"<p>{esc(sentence)}Slices (↳) are named parts of an output.</p>")
    parts.append(table(heads, rows))
    return "\n".join(parts)


def _outputs_chart(
    m: ModelFiles, cos_thr: list[float | None] | None, sqnr_thr: list[float | None] | None, charts: Charts
) -> str:
    """Cosine and SQNR of each output and slice, each with the thresholds outputs.csv gives it."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    rows = m.outputs.rows
    labels = unique_labels(plot_text(r.get("output", "")) for r in rows)

    def column(key: str) -> list[float | None]:
        return [v if finite(v) else None for v in (num(r.get(key)) for r in rows)]

    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.1)
    for row_no, key, worst, label, unit, read in (
        (1, "cosine_mean", "cosine_min", "cosine", "", cos_thr),
        (2, "sqnr_db_mean", "sqnr_db_min", "SQNR dB", " dB", sqnr_thr),
    ):
        mean = column(key)
        limits = read if read is not None else [None] * len(rows)
        base = "#0969da" if row_no == 1 else "#8250df"
        failing = [THRESHOLD_COLOR if below(v, t) else base for v, t in zip(mean, limits, strict=True)]
        for values, name, color, symbol in (
            (mean, f"{label} (mean over images)", failing, "circle"),
            (column(worst), f"{label} (worst image)", "#8c959f", "circle-open"),
        ):
            fig.add_trace(
                go.Scatter(
                    x=labels,
                    y=values,
                    name=name,
                    mode="markers",
                    marker={"color": color, "size": 9, "symbol": symbol},
                    hovertemplate="%{x}: %{y:.5g}" + unit + "<extra>%{fullData.name}</extra>",
                ),
                row=row_no,
                col=1,
            )
        if read is not None:
            name = f"{label.split()[0]} threshold {describe_thresholds(read, 'output', unit)}"
            fig.add_trace(threshold_marks(labels, read, name=name, unit=unit), row=row_no, col=1)
    layout(fig, title="Outputs and slices: cosine and SQNR against their thresholds", height=520)
    fig.update_yaxes(title_text="cosine", row=1, col=1)
    fig.update_yaxes(title_text="SQNR dB", row=2, col=1)
    fig.update_xaxes(type="category", row=2, col=1)
    return charts.render(fig)


def unmatched_section(m: ModelFiles) -> str:
    if m.unmatched.missing:
        return note("No matching stage ran for this model (unmatched.csv is missing).")
    if m.unmatched.problem:
        return note(f"unmatched.csv could not be read: {m.unmatched.problem}.")
    if not m.unmatched.rows:
        return note("Every reference tensor has a counterpart in the target (unmatched.csv has no rows).")
    rows = [
        [text(r.get("tensor"), "name"), text(r.get("op_type")), text(r.get("reason"), "wrap")] for r in m.unmatched.rows
    ]
    return f"<p>{len(rows)} reference tensors have no counterpart in the target.</p>\n" + table(
        ["tensor", "op type", "reason"], rows
    )
