"""Model page, comparison sections: per-layer similarity (chart and table), outputs and slices, unmatched tensors.

The threshold lines are drawn from the ``cosine_threshold`` / ``sqnr_db_threshold`` columns the comparison wrote
(the tolerance actually applied to each tensor, overrides included); a CSV without them draws no line and says so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from qc.report.dashboard.charts import Charts, layout
from qc.report.dashboard.data import ModelFiles, finite, num, threshold
from qc.report.dashboard.markup import Cell, esc, note, number, plot_text, table, text, why_missing


def layer_section(m: ModelFiles, settings: Mapping[str, Any], charts: Charts) -> str:
    missing = why_missing(m.layers, "layer comparison", empty="the comparison produced no layers.")
    if missing:
        return note(missing)
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    cos_thr = threshold(settings, "layer_cosine")
    sqnr_thr = threshold(settings, "layer_sqnr_db")
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
        bad = c is not None and (math.isnan(c) or (cos_thr is not None and c < cos_thr))
        if bad and first_bad is None:
            first_bad = (x, c if finite(c) else None, row.get("tensor", ""))
    defined = [c for c in cos if c is not None]
    colors = ["#cf222e" if c is None or (cos_thr is not None and c < cos_thr) else "#0969da" for c in cos]
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
    if undefined_x:
        bottom = min(defined) if defined else 0.0
        fig.add_trace(
            go.Scatter(
                x=undefined_x,
                y=[bottom] * len(undefined_x),
                customdata=undefined_info,
                mode="markers",
                name="undefined metric",
                marker={"symbol": "x", "color": "#cf222e", "size": 10},
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
    if cos_thr is not None:
        fig.add_hline(
            y=cos_thr,
            line_dash="dash",
            line_color="#cf222e",
            row=1,
            col=1,
            annotation_text=f"threshold {cos_thr:g}",
            annotation_position="bottom left",
        )
    if sqnr_thr is not None:
        fig.add_hline(
            y=sqnr_thr,
            line_dash="dash",
            line_color="#cf222e",
            row=2,
            col=1,
            annotation_text=f"threshold {sqnr_thr:g} dB",
            annotation_position="bottom left",
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
            bordercolor="#cf222e",
        )
    layout(fig, title="Per-layer cosine and SQNR along the topological order", height=620)
    fig.update_yaxes(title_text="cosine", row=1, col=1)
    fig.update_yaxes(title_text="SQNR dB", row=2, col=1)
    fig.update_xaxes(title_text="layer (topological order)", row=2, col=1)
    parts = [charts.render(fig)]
    n = len(m.layers.rows)
    summary = f"{n} layers compared"
    if cos_thr is not None:
        below = sum(1 for c in cos if c is not None and c < cos_thr)
        summary += f"; {below} below the cosine threshold {cos_thr:g}"
    else:
        summary += "; no layer cosine threshold was given in the settings"
    if undefined_x:
        summary += f"; {len(undefined_x)} with an undefined metric"
    if first_bad is not None:
        summary += f"; the first failing layer is {first_bad[2]}"
    parts.append(f"<p>{esc(summary)}.</p>")
    rows = []
    for row in m.layers.rows:
        c = num(row.get("cosine_mean"))
        flag = "bad" if c is not None and (math.isnan(c) or (cos_thr is not None and c < cos_thr)) else ""
        rows.append(
            [
                number(num(row.get("index")), 0),
                text(row.get("tensor"), "name"),
                text(row.get("op_type")),
                text(row.get("shape")),
                text(row.get("target_tensor"), "name"),
                *_metric_cells(row, c, flag),
            ]
        )
    heads = ["#", "tensor", "op type", "shape", "target tensor", *METRIC_HEADS]
    parts.append(f"<details><summary>All {n} layers (table)</summary>{table(heads, rows)}</details>")
    return "\n".join(parts)


METRIC_HEADS = ("cosine mean", "cosine min", "SQNR mean", "SQNR min", "MSE", "max abs", "undefined")


def _metric_cells(row: Mapping[str, str], cosine: float | None, flag: str) -> list[Cell]:
    """The metric columns shared by layers.csv and outputs.csv rows."""
    return [
        number(cosine, 5, flag),
        number(num(row.get("cosine_min")), 5),
        number(num(row.get("sqnr_db_mean"))),
        number(num(row.get("sqnr_db_min"))),
        number(num(row.get("mse_mean"))),
        number(num(row.get("max_abs"))),
        text(row.get("undefined"), "wrap"),
    ]


def outputs_section(m: ModelFiles, settings: Mapping[str, Any]) -> str:
    missing = why_missing(m.outputs, "output comparison", empty="the model has no compared outputs.")
    if missing:
        return note(missing)
    thr = threshold(settings, "output_cosine")
    rows = []
    for row in m.outputs.rows:
        c = num(row.get("cosine_mean"))
        bad = "bad" if c is not None and (math.isnan(c) or (thr is not None and c < thr)) else ""
        name = row.get("output", "")
        rows.append(
            [
                Cell(esc(name) if "[" not in name else f"&nbsp;&nbsp;↳ {esc(name)}", sort=name, cls="name"),
                text(row.get("shape")),
                *_metric_cells(row, c, bad),
            ]
        )
    heads = ["output / slice", "shape", *METRIC_HEADS]
    lead = f"Output cosine threshold: {thr:g}." if thr is not None else "No output cosine threshold in the settings."
    return f"<p>{esc(lead)} Slices (↳) are named parts of an output.</p>\n{table(heads, rows)}"


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
