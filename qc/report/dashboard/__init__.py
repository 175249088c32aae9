"""An offline HTML dashboard built from a report folder, and a static per-model PNG sparkline.

``write_dashboard`` reads whatever the stages left in the report folder (``summary.csv``; per model ``layers.csv``,
``outputs.csv``, ``unmatched.csv``, ``accuracy.json``, ``detections_*.json``, ``pictures/*.png``, ``speed.json``,
``layer_times.csv``, ``op_types.csv``, ``lint.csv``; with ``--qc-diagnose`` also ``diagnosis.json``, ``local.csv``,
``ranges.csv``, ``sensitivity.csv``, ``advised.models.yaml``, ``snpe_overrides.json``, and ``patterns.csv`` in the
folder itself) and writes:

- ``index.html``: one sortable row per model (gate outcomes, headline metrics), every model's per-layer cosine
  along the topological order, headline-metric trends over runs, and the op types and patterns that lose the most
  SQNR locally across the diagnosed models;
- ``models/<model>/index.html``: one page per model, with its diagnosis when there is one;
- ``plotly.min.js``: Plotly's JavaScript, once, from the installed plotly package.

Every link is relative and nothing is fetched from the network, so the folder can be copied and opened offline.
A missing, empty or unreadable file never stops the dashboard: its section says so in a sentence.

Split into page builders: ``index_page`` (the index), ``model_page`` (one page per model) with ``comparison``
(layers, outputs) and ``diagnosis`` (its diagnosis section), ``assets`` (page frame, CSS, ``plotly.min.js``),
``charts``/``markup`` (shared helpers), ``data`` (reading the folder) and ``sparkline`` (the PNG).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from qc.cache import atomic_write_text
from qc.report.dashboard.assets import PAGE, PLOTLY_JS, write_plotly_js
from qc.report.dashboard.data import ModelFiles, discover_models, read_csv, safe_name
from qc.report.dashboard.index_page import index_page
from qc.report.dashboard.model_page import model_page
from qc.report.dashboard.sparkline import dashboard_png
from qc.report.history_types import HistoryPoint
from qc.report.paths import model_dir

__all__ = ["PLOTLY_JS", "dashboard_png", "write_dashboard", "write_plotly_js"]


def write_dashboard(
    report_dir: Path,
    *,
    history: Sequence[HistoryPoint] = (),
    settings: Mapping[str, Mapping[str, Any]] | None = None,
    junit_name: str = "junit.xml",
) -> list[Path]:
    """Write ``index.html``, ``models/<model>/index.html`` per model and ``plotly.min.js``; returns the files."""
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
        path = model_dir(report_dir, name) / PAGE
        atomic_write_text(path, model_page(files[name], settings.get(name, {}), by_model.get(name)))
        written.append(path)
    index = report_dir / PAGE
    atomic_write_text(index, index_page(report_dir, models, files, summary, settings, history, junit_name, skipped))
    written.append(index)
    return written
