"""Plotly figures as page fragments: numbered chart divs, the common layout, threshold lines read from a CSV."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from qc.report.dashboard.assets import PLOTLY_JS
from qc.report.dashboard.markup import plot_text


class Charts:
    """Numbers chart divs on one page and renders Plotly figures as a div plus an inline ``Plotly.newPlot``."""

    def __init__(self) -> None:
        self.count = 0

    def render(self, fig: Any, *, small: bool = False) -> str:
        self.count += 1
        div = f"chart-{self.count}"
        spec = fig.to_json()  # plotly escapes "<", ">" and "/" inside strings, so no "</script>" can appear
        config = json.dumps({"displaylogo": False, "responsive": True, "showLink": False})
        cls = "chart small" if small else "chart"
        return (
            f'<div id="{div}" class="{cls}"></div>\n<script>(function () {{\n'
            f'  var el = document.getElementById("{div}"), fig = {spec};\n'
            f"  if (window.Plotly) {{ Plotly.newPlot(el, fig.data, fig.layout, {config}); }}\n"
            f'  else {{ el.textContent = "Charts need {PLOTLY_JS} next to index.html; it could not be loaded."; }}\n'
            f"}})();</script>"
        )


def layout(fig: Any, *, title: str, height: int) -> None:
    fig.update_layout(
        title={"text": plot_text(title), "x": 0.01, "font": {"size": 14}},
        template="plotly_white",
        height=height,
        margin={"l": 60, "r": 20, "t": 40, "b": 40},
        hoverlabel={"namelength": -1},
        legend={"orientation": "h", "y": -0.15},
    )


THRESHOLD_COLOR = "#cf222e"


def threshold_steps(xs: Sequence[float], values: Sequence[float | None], *, name: str, unit: str = "") -> Any:
    """A per-layer threshold read from a CSV column, as a dashed step line that follows it value by value (a gap
    where a layer has none): one horizontal step per layer, so an override shows as a step up or down."""
    import plotly.graph_objects as go

    return go.Scatter(
        x=list(xs),
        y=list(values),
        name=plot_text(name),
        mode="lines",
        line={"color": THRESHOLD_COLOR, "dash": "dash", "width": 1.5, "shape": "hvh"},
        hovertemplate=f"layer %{{x}}: threshold %{{y:.6g}}{plot_text(unit)}<extra>%{{fullData.name}}</extra>",
    )


def threshold_marks(labels: Sequence[str], values: Sequence[float | None], *, name: str, unit: str = "") -> Any:
    """Per-category thresholds read from a CSV column (one per output or slice), as a short red bar on each."""
    import plotly.graph_objects as go

    return go.Scatter(
        x=list(labels),
        y=list(values),
        name=plot_text(name),
        mode="markers",
        marker={"symbol": "line-ew", "size": 26, "line": {"color": THRESHOLD_COLOR, "width": 3}},
        hovertemplate=f"%{{x}}: threshold %{{y:.6g}}{plot_text(unit)}<extra></extra>",
    )


def no_threshold_column(file: str, column: str) -> str:
    """The note shown instead of a threshold line when a CSV predates its threshold column."""
    return f"{file} has no {column} column (written by an older qc): no {column.replace('_', ' ')} line is drawn."
