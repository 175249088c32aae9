"""An offline HTML dashboard built from a report folder, and a static per-model PNG sparkline.

``write_dashboard`` reads whatever the stages left in the report folder (``summary.csv``; per model ``layers.csv``,
``outputs.csv``, ``unmatched.csv``, ``accuracy.json``, ``detections_*.json``, ``pictures/*.png``, ``speed.json``,
``layer_times.csv``, ``op_types.csv``, ``lint.csv``; with ``--qc-diagnose`` also ``diagnosis.json``, ``local.csv``,
``ranges.csv``, ``sensitivity.csv``, ``advised.models.yaml``, ``snpe_overrides.json``, and ``patterns.csv`` in the
folder itself) and writes:

- ``index.html``: one sortable row per model (gate outcomes, headline metrics), every model's per-layer cosine
  along the topological order, headline-metric trends over runs, and the op types and patterns that lose the most
  SQNR locally across the diagnosed models;
- ``<model>/index.html``: one page per model, with its diagnosis when there is one;
- ``plotly.min.js``: Plotly's JavaScript, once, from the installed plotly package.

Every link is relative and nothing is fetched from the network, so the folder can be copied and opened offline.
A missing, empty or unreadable file never stops the dashboard: its section says so in a sentence.
"""

from __future__ import annotations

import csv
import datetime
import html
import io
import json
import math
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from qc import jsonio
from qc.cache import atomic_write_text
from qc.config import GATES
from qc.errors import DataError
from qc.report.history_types import HistoryPoint

OUTCOMES = ("passed", "failed", "xfailed", "xpassed(strict)", "xpassed", "error", "skipped")
# Headline metrics shown as trends (the names the history stores, taken from summary.csv's columns).
TREND_METRICS = (
    "worst_layer_cosine",
    "layers_failing",
    "target_ap",
    "ap_drop",
    "agreement.ap",
    "fps",
    "latency_ms_p50",
    "lint_findings",
)
DIAGNOSIS_FILES = (
    "diagnosis.json",
    "local.csv",
    "ranges.csv",
    "sensitivity.csv",
    "advised.models.yaml",
    "snpe_overrides.json",
)
MODEL_FILES = (
    "layers.csv",
    "outputs.csv",
    "unmatched.csv",
    "accuracy.json",
    "detections_reference.json",
    "detections_target.json",
    "speed.json",
    "layer_times.csv",
    "op_types.csv",
    "lint.csv",
    *DIAGNOSIS_FILES,
)
SEVERITY_BADGE = {"error": "failed", "warning": "xfailed"}
SEVERITY_RANK = {"info": 0, "warning": 1, "error": 2}
PAGE = "index.html"
PLOTLY_JS = "plotly.min.js"
TOP_LAYERS = 20
TOP_RANGES = 12
TOP_PATTERNS = 20
# Origin severities (qc.diagnose.origins) as badge colours: the loss starts here vs a layer that only amplifies it.
ORIGIN_BADGE = {"collapse": "failed", "local error": "failed", "worse than inputs": "xfailed", "sensitive": "xfailed"}
DIAGNOSE_HOW = "run <code>pytest benchmarks --qc-diagnose</code> or <code>qc diagnose {model}</code>"

esc = html.escape


# --------------------------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class Loaded:
    """A file as read. ``problem`` is None when it was read; otherwise a sentence fragment saying why not."""

    path: Path
    rows: list[dict[str, str]]
    data: Any = None
    problem: str | None = None

    @property
    def missing(self) -> bool:
        return self.problem == "missing"


def read_csv(path: Path) -> Loaded:
    if not path.is_file():
        return Loaded(path, [], problem="missing")
    try:
        text = path.read_text(encoding="utf-8")
        reader = csv.DictReader(io.StringIO(text))
        rows = [{str(k): v if isinstance(v, str) else "" for k, v in row.items() if k is not None} for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        return Loaded(path, [], problem=f"unreadable ({exc})")
    return Loaded(path, rows)


def read_json(path: Path) -> Loaded:
    if not path.is_file():
        return Loaded(path, [], problem="missing")
    try:
        text = path.read_text(encoding="utf-8")
        data = jsonio.loads(text) if text.strip() else None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return Loaded(path, [], problem=f"unreadable ({exc})")
    if data is None:
        return Loaded(path, [], problem="empty")
    return Loaded(path, [], data=data)


def num(value: Any) -> float | None:
    """A number from a CSV cell or JSON value; NaN stays NaN (an undefined metric), None when absent."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value).strip())
    except ValueError:
        return None


def finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def fmt_num(value: float | None, digits: int = 4) -> str:
    """``digits`` significant digits; integers as integers; large values with one decimal."""
    if value is None:
        return "—"
    if math.isnan(value):
        return "undefined"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    if abs(value) >= 10 ** max(digits, 1):
        return f"{value:.1f}" if abs(value) < 1e12 else f"{value:.3e}"
    return f"{value:.{max(digits, 1)}g}"


def unique_labels(labels: Iterable[str]) -> list[str]:
    """Category labels for a bar chart, duplicates padded with spaces so they stay separate bars."""
    out: list[str] = []
    for label in labels:
        while label in out:
            label += " "
        out.append(label)
    return out


def plot_text(text: str) -> str:
    """Text for Plotly labels: Plotly reads a subset of HTML in labels, so names are entity-escaped."""
    return esc(text, quote=False)


def safe_name(model: str) -> bool:
    return model not in ("", ".", "..") and not any(c in model for c in "/\\\x00")


def href(*parts: str) -> str:
    return "/".join(quote(p) for p in parts)


def threshold(settings: Mapping[str, Any], name: str) -> float | None:
    """``<name>_threshold``, ``thresholds.<name>`` or ``thresholds: {<name>: ...}`` in a model's settings."""
    nested = settings.get("thresholds")
    candidates = [settings.get(f"{name}_threshold"), settings.get(f"thresholds.{name}")]
    if isinstance(nested, Mapping):
        candidates.append(nested.get(name))
    for value in candidates:
        number = num(value)
        if finite(number):
            return number
    return None


def flatten(settings: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.extend(flatten(value, f"{name}."))
        elif isinstance(value, list | tuple | set | frozenset):
            out.append((name, ", ".join(str(v) for v in value)))
        else:
            out.append((name, "" if value is None else str(value)))
    return out


# --------------------------------------------------------------------------------------------------- HTML


@dataclass(frozen=True)
class Cell:
    """One table cell: ``markup`` is already escaped; ``sort`` is the key the column sorts on."""

    markup: str
    sort: str | None = None
    cls: str = ""


def text(value: Any, cls: str = "") -> Cell:
    return Cell(esc("" if value is None else str(value)), cls=cls)


def number(value: float | None, digits: int = 4, cls: str = "") -> Cell:
    if value is None:
        return Cell('<span class="muted">—</span>', sort="", cls=cls)
    key = "" if not finite(value) else repr(value)
    return Cell(esc(fmt_num(value, digits)), sort=key, cls=cls)


def outcome(value: str | None) -> Cell:
    if not value:
        return Cell('<span class="muted">—</span>', sort="", cls="gate")
    if value not in OUTCOMES:
        return Cell(f'<span class="muted" title="not an outcome: {esc(value)}">?</span>', sort="", cls="gate")
    kind = {"xpassed(strict)": "failed", "xpassed": "failed", "error": "failed"}.get(value, value)
    return Cell(f'<span class="badge {kind}">{esc(value)}</span>', sort=value, cls="gate")


def table(headers: Sequence[str], rows: Iterable[Sequence[Cell]], *, cls: str = "") -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for c in row:
            attrs = f' class="{esc(c.cls)}"' if c.cls else ""
            if c.sort is not None:
                attrs += f' data-sort="{esc(c.sort)}"'
            cells.append(f"<td{attrs}>{c.markup}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return (
        f'<div class="scroll"><table class="sortable {esc(cls)}"><thead><tr>{head}</tr></thead>'
        f"<tbody>\n{chr(10).join(body)}\n</tbody></table></div>"
    )


def note(sentence: str) -> str:
    return f'<p class="note">{esc(sentence)}</p>'


def why_missing(loaded: Loaded, stage: str, *, empty: str) -> str | None:
    """The sentence for a file with nothing to show, or None when it has rows/data."""
    name = loaded.path.name
    if loaded.missing:
        return f"No {stage} ran for this model ({name} is missing)."
    if loaded.problem == "empty":
        return f"{name} is empty: {empty}"
    if loaded.problem:
        return f"{name} could not be read: {loaded.problem}."
    if not loaded.rows and loaded.data is None:
        return f"{name} has no rows: {empty}"
    return None


CSS = """
:root { color-scheme: light; --fg: #1f2328; --muted: #6e7781; --line: #d0d7de; --bg2: #f6f8fa; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: var(--fg); margin: 0 auto; padding: 1rem 1.5rem 3rem; max-width: 1600px; line-height: 1.4; }
h1 { font-size: 1.5rem; margin: .3rem 0 .6rem; } h2 { font-size: 1.2rem; margin: 2rem 0 .5rem;
     border-bottom: 1px solid var(--line); padding-bottom: .2rem; } h3 { font-size: 1rem; margin: 1rem 0 .4rem; }
a { color: #0969da; } nav a { margin-right: .9rem; }
.note { color: var(--muted); font-style: italic; } .muted { color: var(--muted); }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: .85rem; margin: .3rem 0 1rem; }
th, td { border: 1px solid var(--line); padding: .25rem .5rem; text-align: left; vertical-align: top; }
th { background: var(--bg2); position: sticky; top: 0; }
table.sortable th { cursor: pointer; user-select: none; }
td.model { white-space: nowrap; font-weight: 600; }
table.models td { white-space: nowrap; } table.models td.name { white-space: normal; min-width: 16rem; }
table.sortable th[aria-sort="ascending"]::after { content: " ▲"; }
table.sortable th[aria-sort="descending"]::after { content: " ▼"; }
td[data-sort] { font-variant-numeric: tabular-nums; }
td.wrap { max-width: 28rem; } td.name { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  word-break: break-all; max-width: 30rem; }
tr:nth-child(even) td { background: #fbfcfd; }
td.bad, tr.bad td { background: #ffebe9 !important; }
.badge { display: inline-block; padding: 0 .45rem; border-radius: .6rem; font-size: .8rem; white-space: nowrap; }
.badge.passed { background: #dafbe1; color: #116329; } .badge.failed { background: #ffebe9; color: #a40e26; }
.badge.xfailed { background: #fff8c5; color: #7d4e00; } .badge.skipped { background: var(--bg2); color: var(--muted); }
.chart { width: 100%; min-height: 360px; }
.trends { display: grid; grid-template-columns: repeat(auto-fill, minmax(380px, 1fr)); gap: .5rem; }
.trends .chart { min-height: 260px; }
.pictures { display: flex; flex-wrap: wrap; gap: 1rem; }
figure { margin: 0; } figure img { max-width: 100%; border: 1px solid var(--line); }
figcaption { font-size: .8rem; color: var(--muted); }
details > summary { cursor: pointer; margin: .3rem 0; }
td.evidence { min-width: 18rem; max-width: 50rem; } table.origins td.name { min-width: 10rem; }
ul.tight { margin: 0; padding-left: 1.1rem; } ul.tight li { margin: .1rem 0; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .85em;
       background: var(--bg2); padding: 0 .25rem; border-radius: .2rem; }
footer { margin-top: 2rem; font-size: .8rem; color: var(--muted); }
"""

SORT_JS = """
(function () {
  function key(row, col) {
    var cell = row.cells[col];
    if (!cell) return "";
    var k = cell.getAttribute("data-sort");
    return k === null ? cell.textContent.trim() : k;
  }
  function numeric(v) { return v !== "" && isFinite(v); }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    var heads = table.tHead ? table.tHead.rows[0].cells : [];
    Array.prototype.forEach.call(heads, function (th, col) {
      th.tabIndex = 0;
      th.title = "sort";
      function sort() {
        var asc = th.getAttribute("aria-sort") !== "ascending";
        Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", asc ? "ascending" : "descending");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = key(a, col), y = key(b, col);
          if (x === "" || y === "") return (x === "" ? 1 : 0) - (y === "" ? 1 : 0);
          var r = numeric(x) && numeric(y) ? Number(x) - Number(y) : x.localeCompare(y);
          return asc ? r : -r;
        });
        rows.forEach(function (row) { body.appendChild(row); });
      }
      th.addEventListener("click", sort);
      th.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sort(); }
      });
    });
  });
})();
"""

# Nothing may be fetched: block the fetch kinds a page could use by accident (scripts and images are local files).
CSP = "connect-src 'none'; font-src 'none'; frame-src 'none'; object-src 'none'; form-action 'none'"


def page(title: str, body: str, *, root: str) -> str:
    made = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<title>{esc(title)}</title>
<style>{CSS}</style>
<script src="{root}{PLOTLY_JS}"></script>
</head>
<body>
{body}
<footer>Generated by qc on {esc(made)}; works offline (charts: {root}{PLOTLY_JS}).</footer>
<script>{SORT_JS}</script>
</body>
</html>
"""


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


def _layout(fig: Any, *, title: str, height: int) -> None:
    fig.update_layout(
        title={"text": plot_text(title), "x": 0.01, "font": {"size": 14}},
        template="plotly_white",
        height=height,
        margin={"l": 60, "r": 20, "t": 40, "b": 40},
        hoverlabel={"namelength": -1},
        legend={"orientation": "h", "y": -0.15},
    )


# --------------------------------------------------------------------------------------------------- model data


@dataclass
class ModelFiles:
    name: str
    folder: Path
    layers: Loaded
    outputs: Loaded
    unmatched: Loaded
    accuracy: Loaded
    speed: Loaded
    layer_times: Loaded
    op_types: Loaded
    lint: Loaded
    detections: dict[str, Loaded]
    pictures: list[Path]
    diagnosis: Loaded
    local: Loaded
    ranges: Loaded
    sensitivity: Loaded

    @classmethod
    def read(cls, report_dir: Path, name: str) -> ModelFiles:
        folder = report_dir / name
        pic_dir = folder / "pictures"
        pictures = sorted(p for p in pic_dir.glob("*.png") if p.is_file()) if pic_dir.is_dir() else []
        return cls(
            name=name,
            folder=folder,
            layers=read_csv(folder / "layers.csv"),
            outputs=read_csv(folder / "outputs.csv"),
            unmatched=read_csv(folder / "unmatched.csv"),
            accuracy=read_json(folder / "accuracy.json"),
            speed=read_json(folder / "speed.json"),
            layer_times=read_csv(folder / "layer_times.csv"),
            op_types=read_csv(folder / "op_types.csv"),
            lint=read_csv(folder / "lint.csv"),
            detections={side: read_json(folder / f"detections_{side}.json") for side in ("reference", "target")},
            pictures=pictures,
            diagnosis=read_json(folder / "diagnosis.json"),
            local=read_csv(folder / "local.csv"),
            ranges=read_csv(folder / "ranges.csv"),
            sensitivity=read_csv(folder / "sensitivity.csv"),
        )

    def accuracy_value(self, key: str) -> float | None:
        data = self.accuracy.data
        return num(data.get(key)) if isinstance(data, dict) else None

    def target_fps(self) -> float | None:
        data = self.speed.data
        target = data.get("target") if isinstance(data, dict) else None
        return num(target.get("fps")) if isinstance(target, dict) else None

    def worst_layer(self) -> tuple[str, float] | None:
        """The first undefined layer, else the lowest mean cosine."""
        worst: tuple[str, float] | None = None
        for row in self.layers.rows:
            value = num(row.get("cosine_mean"))
            if value is None:
                continue
            if math.isnan(value):
                return row.get("tensor", ""), value
            if worst is None or value < worst[1]:
                worst = (row.get("tensor", ""), value)
        return worst


def discover_models(report_dir: Path, summary: Loaded, settings: Mapping[str, Any]) -> list[str]:
    names: list[str] = [r.get("model", "") for r in summary.rows]
    if report_dir.is_dir():
        for sub in sorted(report_dir.iterdir()):
            if sub.is_dir() and (any((sub / f).is_file() for f in MODEL_FILES) or (sub / "pictures").is_dir()):
                names.append(sub.name)
    names.extend(settings)
    seen: dict[str, None] = {}
    for n in names:
        if n:
            seen.setdefault(n, None)
    return list(seen)


# --------------------------------------------------------------------------------------------------- model page


def _layer_section(m: ModelFiles, settings: Mapping[str, Any], charts: Charts) -> str:
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
    _layout(fig, title="Per-layer cosine and SQNR along the topological order", height=620)
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


def _outputs_section(m: ModelFiles, settings: Mapping[str, Any]) -> str:
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


def _unmatched_section(m: ModelFiles) -> str:
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
        _layout(fig, title=f"Top {len(top)} of {len(timed)} layers by time ({unit})", height=120 + 22 * len(top))
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
        _layout(fig, title="Share of profiled time by op type (%)", height=120 + 22 * len(ops))
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
        ref_pc, tgt_pc = data.get("reference.per_class_ap"), data.get("target.per_class_ap")
        ref_pc = ref_pc if isinstance(ref_pc, dict) else {}
        tgt_pc = tgt_pc if isinstance(tgt_pc, dict) else {}
        classes = list(dict.fromkeys([*ref_pc, *tgt_pc]))
        if classes:
            pc_rows = [[text(c), number(num(ref_pc.get(c))), number(num(tgt_pc.get(c)))] for c in classes]
            parts.append("<h3>AP per class</h3>" + table(["class", "reference AP", "target AP"], pc_rows))
        worst = data.get("most_disagreeing_images")
        if isinstance(worst, list) and worst:
            items = ", ".join(
                f"image {esc(str(w.get('image_id')))} ({esc(fmt_num(num(w.get('disagreement'))))})"
                for w in worst
                if isinstance(w, dict)
            )
            parts.append(f"<p>Most disagreeing images: {items}.</p>")
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
        figs = [
            f'<figure><a href="{href("pictures", p.name)}"><img src="{href("pictures", p.name)}" '
            f'alt="{esc(p.stem)}" loading="lazy" width="640"></a><figcaption>{esc(p.name)}</figcaption></figure>'
            for p in m.pictures
        ]
        parts.append(f'<div class="pictures">{"".join(figs)}</div>')
    return "\n".join(parts)


def _settings_section(settings: Mapping[str, Any] | None) -> str:
    if not settings:
        return note("No run settings were passed for this model.")
    rows = [[text(k, "name"), text(v, "wrap")] for k, v in flatten(settings)]
    return table(["setting", "value"], rows)


# --------------------------------------------------------------------------------------------------- diagnosis


def _as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _bullets(items: Iterable[str]) -> str:
    """Already-escaped items as a compact list ("" when there are none)."""
    lis = "".join(f"<li>{item}</li>" for item in items)
    return f'<ul class="tight">{lis}</ul>' if lis else ""


def _verdict(passed: Any) -> Cell:
    return outcome("passed" if passed is True else "failed" if passed is False else None)


def _diagnosis_missing(m: ModelFiles) -> str:
    how = DIAGNOSE_HOW.format(model=esc(m.name))
    return (
        f'<p class="note">No diagnosis ran for this model (diagnosis.json is missing): {how} to find where the loss '
        "starts, why, and which layers to keep in higher precision.</p>"
    )


def _origins_part(m: ModelFiles, data: Mapping[str, Any]) -> str:
    origins = [o for o in _as_list(data.get("origins")) if isinstance(o, dict)]
    if not origins:
        return note("The diagnosis names no origin: no layer's own (local) error stands out.")
    rows = []
    for o in origins:
        reasons = [str(r) for r in _as_list(o.get("reasons"))]
        ranges = _as_dict(o.get("ranges"))
        evidence = [esc(r) for r in reasons]
        evidence += [esc(f"range: {f}") for f in map(str, _as_list(ranges.get("findings"))) if f not in reasons]
        for name, s in _as_dict(o.get("slices_local")).items():
            s = _as_dict(s)
            if s.get("undefined"):
                value = f"undefined ({s['undefined']})"
            else:
                value = f"cosine {fmt_num(num(s.get('cosine')))}, SQNR {fmt_num(num(s.get('sqnr_db')), 3)} dB"
            evidence.append(esc(f"slice [{name}] fed reference inputs: {value}"))
        followers = [str(f) for f in _as_list(o.get("followers"))]
        if followers:
            evidence.append(esc(f"same cause downstream (not separate origins): {', '.join(followers)}"))
        severity = str(o.get("severity") or "")
        rows.append(
            [
                number(num(o.get("index")), 0),
                text(o.get("tensor"), "name"),
                text(o.get("op_type")),
                Cell(
                    f'<span class="badge {ORIGIN_BADGE.get(severity, "skipped")}">{esc(severity)}</span>', sort=severity
                ),
                text(o.get("pattern"), "wrap"),
                number(num(o.get("cosine")), 5),
                number(num(o.get("cosine_local")), 5),
                number(num(o.get("sqnr_db"))),
                number(num(o.get("sqnr_db_local"))),
                number(num(o.get("worst_sqnr_db_local"))),
                number(num(o.get("inputs_sqnr_db_local"))),
                Cell(_bullets(evidence), cls="evidence"),
            ]
        )
    heads = [
        "#",
        "tensor",
        "op type",
        "severity",
        "pattern",
        "cosine (accumulated)",
        "cosine (local)",
        "SQNR dB (accumulated)",
        "SQNR dB (local)",
        "worst local SQNR dB",
        "inputs' local SQNR dB",
        "evidence",
    ]
    lead = (
        f"{len(rows)} origin{'s' if len(rows) != 1 else ''}: layers whose own error is large when fed the reference's "
        "inputs (local), as opposed to error inherited from upstream (accumulated: the target run end to end)."
    )
    return f"<p>{esc(lead)}</p>\n{table(heads, rows, cls='origins')}"


def _origin_points(data: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {str(o.get("tensor")): o for o in _as_list(data.get("origins")) if isinstance(o, dict)}


def _local_chart(m: ModelFiles, data: Mapping[str, Any], settings: Mapping[str, Any], charts: Charts) -> str:
    missing = why_missing(m.local, "diagnosis", empty="the diagnosis compared no layers.")
    if missing:
        return note(missing)
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    origins = _origin_points(data)
    xs: list[float] = []
    info: list[list[str]] = []
    series: dict[str, list[float | None]] = {k: [] for k in ("sqnr_db", "sqnr_db_local", "cosine", "cosine_local")}
    marked: list[int] = []
    for pos, row in enumerate(m.local.rows):
        x = num(row.get("index"))
        xs.append(x if x is not None and finite(x) else float(pos))
        origin = origins.get(row.get("tensor", ""))
        info.append(
            [plot_text(row.get(k, "")) for k in ("tensor", "op_type")]
            + [plot_text(str(origin.get("severity") or "")) if origin else ""]
        )
        for key, values in series.items():
            v = num(row.get(key))
            values.append(v if finite(v) else None)
        if origin is not None:
            marked.append(pos)
    hover = "%{customdata[0]}<br>%{customdata[1]}<br>layer %{x}: %{y:.4f}<extra>%{fullData.name}</extra>"
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08, row_heights=[0.55, 0.45])
    for row_no, metric, unit in ((1, "sqnr_db", "SQNR dB"), (2, "cosine", "cosine")):
        for key, label, color, dash in (
            (metric, "accumulated (target end to end)", "#0969da", "solid"),
            (f"{metric}_local", "local (fed the reference's inputs)", "#bf8700", "dot"),
        ):
            fig.add_trace(
                go.Scatter(
                    x=xs,
                    y=series[key],
                    customdata=info,
                    name=f"{unit}, {label}",
                    mode="lines+markers",
                    marker={"size": 4, "color": color},
                    line={"color": color, "dash": dash},
                    legendgroup=label,
                    hovertemplate=hover,
                ),
                row=row_no,
                col=1,
            )
        if marked:
            local = series[f"{metric}_local"]
            floor = min((v for v in local if v is not None), default=0.0)
            fig.add_trace(
                go.Scatter(
                    x=[xs[i] for i in marked],
                    y=[local[i] if local[i] is not None else floor for i in marked],
                    customdata=[info[i] for i in marked],
                    name="origin (where the loss starts)",
                    mode="markers",
                    marker={"symbol": "x", "color": "#cf222e", "size": 11},
                    legendgroup="origin",
                    showlegend=row_no == 1,
                    hovertemplate="origin: %{customdata[0]}<br>%{customdata[1]}, %{customdata[2]}<br>layer %{x}: "
                    "local %{y:.4f}<extra></extra>",
                ),
                row=row_no,
                col=1,
            )
    for row_no, name, unit in ((1, "layer_sqnr_db", " dB"), (2, "layer_cosine", "")):
        thr = threshold(settings, name)
        if thr is not None:
            fig.add_hline(
                y=thr,
                line_dash="dash",
                line_color="#cf222e",
                row=row_no,
                col=1,
                annotation_text=f"threshold {thr:g}{unit}",
                annotation_position="bottom left",
            )
    _layout(fig, title="Accumulated vs local error along the topological order", height=620)
    fig.update_yaxes(title_text="SQNR dB", row=1, col=1)
    fig.update_yaxes(title_text="cosine", row=2, col=1)
    fig.update_xaxes(title_text="layer (topological order)", row=2, col=1)
    lead = (
        f"{len(m.local.rows)} layers; {len(marked)} origin{'s' if len(marked) != 1 else ''} marked ×. Where the "
        "accumulated curve drops but the local one does not, the error is inherited from upstream; an infinite SQNR "
        "(identical tensors) leaves a gap."
    )
    return f"{charts.render(fig)}\n<p>{esc(lead)}</p>"


def _range_cells(row: Mapping[str, str]) -> list[Cell]:
    flags = row.get("flags", "")
    below, channels = num(row.get("channels_below_step")), num(row.get("channels"))
    share = num(row.get("clipped_share"))
    return [
        text(row.get("tensor"), "name"),
        text(row.get("op_type")),
        text(f"{row.get('bits', '')} ({row.get('dtype', '')})" if row.get("dtype") else row.get("bits")),
        text(row.get("scale")),
        text(row.get("zero_point")),
        text(f"{fmt_num(num(row.get('representable_min')))} … {fmt_num(num(row.get('representable_max')))}"),
        text(f"{fmt_num(num(row.get('observed_min')))} … {fmt_num(num(row.get('observed_max')))}"),
        Cell(
            esc(f"{100 * share:.3g}%" if share is not None and finite(share) else fmt_num(share)),
            sort=repr(share) if finite(share) else "",
        ),
        number(num(row.get("rmse_steps")), 3),
        number(num(row.get("levels_used")), 4),
        number(num(row.get("level_share")), 3),
        number(num(row.get("zeroed_share")), 3),
        Cell(
            esc(f"{fmt_num(below)} of {fmt_num(channels)}") if channels else '<span class="muted">—</span>',
            sort=repr(below) if finite(below) else "",
        ),
        text(row.get("pattern"), "wrap"),
        text(flags, "wrap bad" if flags else "wrap"),
    ]


RANGE_HEADS = [
    "tensor",
    "op type",
    "bits",
    "scale",
    "zero point",
    "representable",
    "observed",
    "clipped",
    "error in steps",
    "levels used",
    "level share",
    "zeroed share",
    "channels below one step",
    "pattern",
    "flags",
]


def _ranges_part(m: ModelFiles) -> str:
    missing = why_missing(m.ranges, "diagnosis", empty="the target has no quantized activation to inspect.")
    if missing:
        return note(missing)
    rows = m.ranges.rows
    flagged = [r for r in rows if r.get("flags")]

    def steps(row: Mapping[str, str]) -> float:
        v = num(row.get("rmse_steps"))
        return v if v is not None and finite(v) else -math.inf

    ordered = sorted(rows, key=steps, reverse=True)
    shown = [r for i, r in enumerate(ordered) if i < TOP_RANGES or r.get("flags")]
    lead = (
        f"{len(rows)} quantized tensors, {len(flagged)} flagged (clipping, a range too wide, values below one step). "
        f"Shown: the flagged ones and the {min(TOP_RANGES, len(rows))} largest errors in steps, RMSE(DQ(Q(x)) − x) "
        "/ scale of the reference's own values: 0.29 is ideal rounding noise, well above it means clipping."
    )
    compact = table(RANGE_HEADS, (_range_cells(r) for r in shown))
    full = table(RANGE_HEADS, (_range_cells(r) for r in rows))
    return (
        f"<p>{esc(lead)}</p>\n{compact}\n<details><summary>All {len(rows)} quantized tensors "
        f'(table; <a href="{href("ranges.csv")}">ranges.csv</a>)</summary>{full}</details>'
    )


def _sensitivity_part(m: ModelFiles, data: Mapping[str, Any]) -> str:
    missing = why_missing(m.sensitivity, "diagnosis", empty="no layer was measured (no gate needed it).")
    if missing:
        return note(missing)
    s = _as_dict(data.get("sensitivity"))
    quick = next((r.get("quick_metric") for r in m.sensitivity.rows if r.get("quick_metric")), "") or "quick metric"
    task = next((r.get("task_metric") for r in m.sensitivity.rows if r.get("task_metric")), "") or "task metric"
    rows = [
        [
            number(num(r.get("rank")), 0),
            text(r.get("node"), "name"),
            text(r.get("tensor"), "name"),
            text(r.get("op_type")),
            number(num(r.get("local_sqnr_db"))),
            number(num(r.get("quick_float"))),
            number(num(r.get("quick_only"))),
            number(num(r.get("quick_gain"))),
            number(num(r.get("quick_drop"))),
            number(num(r.get("task_float"))),
            number(num(r.get("task_only"))),
            number(num(r.get("task_gain"))),
            number(num(r.get("task_drop"))),
        ]
        for r in m.sensitivity.rows
    ]
    heads = [
        "rank",
        "node",
        "tensor",
        "op type",
        "local SQNR dB",
        f"{quick}: kept float",
        f"{quick}: quantized alone",
        f"{quick}: gain",
        f"{quick}: drop",
        f"{task}: kept float",
        f"{task}: quantized alone",
        f"{task}: gain",
        f"{task}: drop",
    ]
    lead = (
        "Each candidate measured twice: kept float with everything else quantized (gain: how much it recovers) and "
        "quantized alone with everything else float (drop: how much it costs); ranked by the larger of the two."
    )
    if s:
        lead += (
            f" Quick pass on {s.get('quick_images', '?')} images (quantized model "
            f"{fmt_num(num(s.get('baseline_quick')))}, float {fmt_num(num(s.get('reference_quick')))}); "
            f"{s.get('metric', task)} on {s.get('images', '?')} images (quantized model "
            f"{fmt_num(num(s.get('baseline_task')))}, float {fmt_num(num(s.get('reference_task')))})."
        )
    extra = _bullets(esc(str(n)) for n in _as_list(s.get("notes")))
    return f"<p>{esc(lead)}</p>\n{table(heads, rows)}{extra}"


def _advice_part(m: ModelFiles, data: Mapping[str, Any]) -> str:
    advice = data.get("advice")
    if not isinstance(advice, dict):
        return note("The diagnosis gave no advice (no gate it could verify was failing).")
    parts = []
    if advice.get("message"):
        parts.append(f"<p><strong>{esc(str(advice['message']))}</strong></p>")
    if not advice.get("needed", True):
        parts.append(note("No advice needed: the goal gates already pass."))
    layers = [str(x) for x in _as_list(advice.get("layers"))]
    tensors = [str(x) for x in _as_list(advice.get("tensors"))]
    precision = str(advice.get("precision") or "higher precision")
    if layers:
        rows = [
            [number(float(i + 1), 0), text(n, "name"), text(t, "name")]
            for i, (n, t) in enumerate(zip(layers, [*tensors, *[""] * (len(layers) - len(tensors))], strict=False))
        ]
        parts.append(f"<p>Keep {len(layers)} layer{'s' if len(layers) != 1 else ''} in {esc(precision)}:</p>")
        parts.append(table(["#", "node", "output tensor"], rows))
    goal = [str(g) for g in _as_list(advice.get("goal"))]
    baseline = {str(v.get("gate")): v for v in _as_list(advice.get("baseline")) if isinstance(v, dict)}
    verification = _as_dict(advice.get("verification"))
    verified = {str(v.get("gate")): v for v in _as_list(verification.get("verdicts")) if isinstance(v, dict)}
    gates = list(dict.fromkeys([*goal, *baseline, *verified]))
    if gates:
        rows = [
            [
                text(f"{g} (goal)" if g in goal else g),
                _verdict(baseline.get(g, {}).get("passed")),
                _verdict(verified.get(g, {}).get("passed")),
                text(verified.get(g, baseline.get(g, {})).get("message"), "wrap"),
            ]
            for g in gates
        ]
        name = verification.get("name") or "advised variant"
        parts.append(
            f"<h3>Gates: as quantized vs the advised variant, verified ({esc(str(name))})</h3>"
            + table(["gate", "as quantized", "advised (verified)", "message"], rows)
        )
        if not verification:
            parts.append(note("The advice was not verified: no quantized variant was measured."))
    trials = [t for t in _as_list(advice.get("trials")) if isinstance(t, dict)]
    if trials:
        rows = [
            [
                number(float(i + 1), 0),
                text(", ".join(str(x) for x in _as_list(t.get("layers"))), "name"),
                _verdict(t.get("passed")),
                number(num(t.get("score"))),
                text(t.get("summary"), "wrap"),
            ]
            for i, t in enumerate(trials)
        ]
        parts.append(
            f"<details><summary>{len(trials)} trial{'s' if len(trials) != 1 else ''} (layer sets measured)</summary>"
            + table(["#", "layers kept", "passed", "score", "gates"], rows)
            + "</details>"
        )
    links = [
        f'<a href="{href(f)}">{esc(f)}</a> ({esc(what)})'
        for f, what in (
            ("advised.models.yaml", "the entry to paste under models:"),
            ("snpe_overrides.json", "SNPE quantization overrides"),
        )
        if (m.folder / f).is_file()
    ]
    if links:
        parts.append(f"<p>Files: {'; '.join(links)}.</p>")
    else:
        parts.append(note("No advised.models.yaml or snpe_overrides.json: the advice has no entry to write."))
    return "\n".join(parts)


def _diagnosis_section(m: ModelFiles, settings: Mapping[str, Any], charts: Charts) -> str:
    loaded = (m.diagnosis, m.local, m.ranges, m.sensitivity)
    if all(f.missing for f in loaded) and not any((m.folder / f).is_file() for f in DIAGNOSIS_FILES):
        return _diagnosis_missing(m)
    parts: list[str] = []
    data: dict[str, Any] = {}
    if m.diagnosis.missing:
        parts.append(_diagnosis_missing(m))
    elif m.diagnosis.problem or not isinstance(m.diagnosis.data, dict):
        parts.append(
            note(
                why_missing(m.diagnosis, "diagnosis", empty="the diagnosis wrote nothing.")
                or "diagnosis.json is not a JSON object."
            )
        )
    else:
        data = m.diagnosis.data
        gates = ", ".join(str(g) for g in _as_list(data.get("failing_gates"))) or "none"
        head = (
            f"Diagnosis of the {data.get('target_kind') or 'target'} on {data.get('images', '?')} images; "
            f"failing gates: {gates}."
        )
        timings = {k: num(v) for k, v in _as_dict(data.get("timings")).items()}
        total = sum(v for v in timings.values() if v is not None and finite(v))
        took = f' <span class="muted">(took {total:.1f} s)</span>' if total else ""
        parts.append(f"<p>{esc(head)}{took}</p>")
    parts.append("<h3>Where the loss starts</h3>")
    if data:
        parts.append(_origins_part(m, data))
        parts.append(_bullets(esc(str(n)) for n in _as_list(data.get("notes"))))
    else:
        parts.append(note("No origins without a readable diagnosis.json."))
    parts.append("<h3>Accumulated vs local error</h3>")
    parts.append(_local_chart(m, data, settings, charts))
    parts.append(f"<h3>Quantization ranges (top {TOP_RANGES} and flagged)</h3>")
    parts.append(_ranges_part(m))
    parts.append("<h3>Sensitivity ranking</h3>")
    parts.append(_sensitivity_part(m, data))
    parts.append("<h3>Advice</h3>")
    parts.append(_advice_part(m, data) if data else note("No advice without a readable diagnosis.json."))
    return "\n".join(p for p in parts if p)


def model_page(m: ModelFiles, settings: Mapping[str, Any], summary_row: Mapping[str, str] | None) -> str:
    charts = Charts()
    sections = [
        ("layers", "Per-layer comparison", _layer_section(m, settings, charts)),
        ("outputs", "Outputs and slices", _outputs_section(m, settings)),
        ("unmatched", "Unmatched tensors", _unmatched_section(m)),
        ("accuracy", "Accuracy", _accuracy_section(m)),
        ("speed", "Speed", _speed_section(m, charts)),
        ("lint", "Lint findings", _lint_section(m)),
        ("diagnosis", "Diagnosis", _diagnosis_section(m, settings, charts)),
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
        f'<nav><a href="../{PAGE}">← all models</a></nav>',
        f"<h1>{esc(m.name)}</h1>",
        f"<p>{gates}</p>",
        f"<nav>{nav}</nav>",
        f'<p class="muted">Raw files: {raw}.</p>',
    ]
    body.extend(f'<h2 id="{a}">{esc(t)}</h2>\n{html_part}' for a, t, html_part in sections)
    return page(f"qc: {m.name}", "\n".join(body), root="../")


# --------------------------------------------------------------------------------------------------- index page


def _index_table(
    models: list[str], files: Mapping[str, ModelFiles], summary: Loaded, settings: Mapping[str, Mapping[str, Any]]
) -> str:
    header = list(summary.rows[0]) if summary.rows else []
    gates = [g for g in GATES if g in header]
    by_model = {r.get("model", ""): r for r in summary.rows}
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
            Cell(f'<a href="{href(name, PAGE)}">{esc(name)}</a>', sort=name, cls="model"),
            text(target),
            *(outcome(row.get(g)) for g in gates),
            number(pick("reference_ap", m.accuracy_value("reference.ap"))),
            number(pick("target_ap", m.accuracy_value("target.ap"))),
            number(pick("ap_drop", m.accuracy_value("drop.ap"))),
            number(pick("agreement.ap", m.accuracy_value("agreement_ap"))),
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
        "reference AP",
        "target AP",
        "AP drop",
        "agreement AP",
        "worst layer cosine",
        "worst layer",
        "FPS",
        "lint findings",
    ]
    return table(heads, rows, cls="models")


def _overlay_chart(
    models: list[str], files: Mapping[str, ModelFiles], settings: Mapping[str, Mapping[str, Any]], charts: Charts
) -> str:
    import plotly.graph_objects as go

    fig = go.Figure()
    with_layers = 0
    for name in models:
        rows = files[name].layers.rows
        if not rows:
            continue
        with_layers += 1
        xs = [num(r.get("index")) for r in rows]
        fig.add_trace(
            go.Scatter(
                x=[x if finite(x) else float(i) for i, x in enumerate(xs)],
                y=[c if finite(c) else None for c in (num(r.get("cosine_mean")) for r in rows)],
                customdata=[[plot_text(r.get(k, "")) for k in ("tensor", "op_type", "shape")] for r in rows],
                name=plot_text(name),
                mode="lines+markers",
                marker={"size": 4},
                hovertemplate="%{customdata[0]}<br>%{customdata[1]}  %{customdata[2]}<br>layer %{x}: cosine "
                "%{y:.5f}<extra>%{fullData.name}</extra>",
            )
        )
    if not with_layers:
        return note("No model has a layer comparison (no layers.csv), so there is nothing to overlay.")
    thresholds = {threshold(settings.get(n, {}), "layer_cosine") for n in models if files[n].layers.rows}
    if len(thresholds) == 1 and None not in thresholds:
        (thr,) = thresholds
        assert thr is not None
        fig.add_hline(y=thr, line_dash="dash", line_color="#cf222e", annotation_text=f"threshold {thr:g}")
    _layout(fig, title="Per-layer cosine (mean over images) along the topological order", height=460)
    fig.update_xaxes(title_text="layer (topological order)")
    fig.update_yaxes(title_text="cosine")
    return charts.render(fig)


def _trends(history: Sequence[HistoryPoint], charts: Charts) -> str:
    import plotly.graph_objects as go

    runs = {p.run_id for p in history}
    if len(runs) < 2:
        held = "no run" if not runs else "one run"
        return note(f"Trends need at least two runs in the history; it holds {held}.")
    metrics = [m for m in TREND_METRICS if any(p.metric == m for p in history)]
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
        _layout(fig, title=metric, height=260)
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
        link = f'<a href="{href(model, PAGE)}#diagnosis">{esc(model)}</a>'
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
    _layout(
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
    body.append(_overlay_chart(models, files, settings, charts))
    body.append('<h2 id="trends">Trends over runs</h2>')
    body.append(_trends(history, charts))
    patterns = read_csv(report_dir / "patterns.csv")
    if not patterns.missing:
        body.append('<h2 id="patterns">Patterns across models</h2>')
        body.append(_patterns_section(patterns, models, charts))
    return page("qc report", "\n".join(body), root="")


# --------------------------------------------------------------------------------------------------- public API


def _write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def write_plotly_js(report_dir: Path) -> Path:
    """Plotly's JavaScript from the installed package, written once (left alone when already identical)."""
    from plotly.offline import get_plotlyjs

    path = report_dir / PLOTLY_JS
    data = get_plotlyjs().encode("utf-8")
    if not (path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data):
        _write_bytes(path, data)
    return path


def write_dashboard(
    report_dir: Path,
    *,
    history: Sequence[HistoryPoint] = (),
    settings: Mapping[str, Mapping[str, Any]] | None = None,
    junit_name: str = "junit.xml",
) -> list[Path]:
    """Write ``index.html``, ``<model>/index.html`` per model and ``plotly.min.js``; returns the files written."""
    report_dir = Path(report_dir)
    settings = settings or {}
    report_dir.mkdir(parents=True, exist_ok=True)
    summary = read_csv(report_dir / "summary.csv")
    names = discover_models(report_dir, summary, settings)
    models = [n for n in names if safe_name(n)]
    skipped = [n for n in names if not safe_name(n)]
    files = {n: ModelFiles.read(report_dir, n) for n in models}
    by_model = {r.get("model", ""): r for r in summary.rows}
    written = [write_plotly_js(report_dir)]
    for name in models:
        path = report_dir / name / PAGE
        atomic_write_text(path, model_page(files[name], settings.get(name, {}), by_model.get(name)))
        written.append(path)
    index = report_dir / PAGE
    atomic_write_text(index, index_page(report_dir, models, files, summary, settings, history, junit_name, skipped))
    written.append(index)
    return written


def dashboard_png(
    report_dir: Path, model: str, *, threshold: float | None = None, size: tuple[int, int] = (360, 80)
) -> Path:
    """A static per-layer cosine sparkline, ``<report_dir>/<model>/layers.png`` (Pillow only), for pytest-html."""
    from PIL import Image, ImageDraw, ImageFont

    if not safe_name(model):
        raise DataError(f"dashboard_png: {model!r} is not a model folder name.")
    report_dir = Path(report_dir)
    layers = read_csv(report_dir / model / "layers.csv")
    values = [num(r.get("cosine_mean")) for r in layers.rows]
    width, height = size
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=11)
    red, blue, grey = (207, 34, 46), (9, 105, 218), (140, 149, 159)
    defined = [v for v in values if v is not None and math.isfinite(v)]
    if not defined:
        reason = "no layer comparison" if layers.problem or not layers.rows else "no defined cosine"
        draw.text((6, height // 2 - 7), f"{model}: {reason}", fill=grey, font=font)
    else:
        left, right, top, bottom = 4, width - 5, 18, height - 5
        lo = min(*defined, threshold if threshold is not None else 1.0)
        hi = max(*defined, threshold if threshold is not None else -math.inf)
        if hi - lo < 1e-9:
            lo, hi = lo - 1e-3, hi + 1e-3

        def px(i: int) -> float:
            return left + (right - left) * i / max(len(values) - 1, 1)

        def py(v: float) -> float:
            return bottom - (bottom - top) * (v - lo) / (hi - lo)

        if threshold is not None:
            y = py(threshold)
            for x0 in range(left, right, 8):
                draw.line([(x0, y), (min(x0 + 4, right), y)], fill=red, width=1)
        segment: list[tuple[float, float]] = []
        for i, v in enumerate([*values, None]):
            if v is not None and math.isfinite(v):
                segment.append((px(i), py(v)))
                continue
            if len(segment) > 1:
                draw.line(segment, fill=blue, width=2)
            elif segment:
                draw.point(segment, fill=blue)
            segment = []
        for i, v in enumerate(values):
            if v is not None and math.isnan(v):
                draw.line([(px(i), bottom - 6), (px(i), bottom)], fill=red, width=2)
            elif v is not None and threshold is not None and v < threshold:
                x, y = px(i), py(v)
                draw.ellipse([x - 2.5, y - 2.5, x + 2.5, y + 2.5], fill=red)
        undefined = sum(1 for v in values if v is not None and math.isnan(v))
        label = f"{model}: {len(values)} layers, min cosine {min(defined):.4f}"
        if undefined:
            label += f", {undefined} undefined"
        draw.text((4, 2), label, fill=(31, 35, 40), font=font)
    out = report_dir / model / "layers.png"
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    _write_bytes(out, buf.getvalue())
    return out
