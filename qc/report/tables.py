"""CSV reports: ``models/<model>/{layers,outputs,unmatched}.csv`` and ``summary.csv``.

The column lists are a stable contract that CI scripts read: add columns only at the end.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from qc.cache import atomic_write_text
from qc.compare.layerwise import Comparison
from qc.compare.metrics import MetricSummary
from qc.config import Thresholds

LAYER_COLUMNS = (
    "index",
    "tensor",
    "op_type",
    "shape",
    "target_tensor",
    "cosine_mean",
    "cosine_min",
    "sqnr_db_mean",
    "sqnr_db_min",
    "mse_mean",
    "max_abs",
    "undefined",
    "cosine_threshold",
    "input_independent",
)
OUTPUT_COLUMNS = (
    "output",
    "shape",
    "cosine_mean",
    "cosine_min",
    "sqnr_db_mean",
    "sqnr_db_min",
    "mse_mean",
    "max_abs",
    "undefined",
    "cosine_threshold",
    "sqnr_db_threshold",
)
UNMATCHED_COLUMNS = ("tensor", "op_type", "reason")


def fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return f"{value:.6g}"
    return "" if value is None else str(value)


def to_csv(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([fmt(row.get(c)) for c in columns])
    return buf.getvalue()


def _metrics(m: MetricSummary) -> dict[str, Any]:
    return {
        "cosine_mean": m.cosine_mean,
        "cosine_min": m.cosine_min,
        "sqnr_db_mean": m.sqnr_db_mean,
        "sqnr_db_min": m.sqnr_db_min,
        "mse_mean": m.mse_mean,
        "max_abs": m.max_abs,
        "undefined": m.undefined,
    }


def write_comparison(result: Comparison, folder: Path, thresholds: Thresholds) -> list[Path]:
    """Write the per-model tables, each row with the threshold its gate applies to it; returns the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    layers = [
        {
            "index": r.index,
            "tensor": r.tensor,
            "op_type": r.op_type,
            "shape": r.shape,
            "target_tensor": r.target_tensor,
            **_metrics(r.metrics),
            "cosine_threshold": thresholds.for_tensor(r.tensor).layer_cosine,
            "input_independent": "true" if r.input_independent else "false",
        }
        for r in result.layers
    ]
    outputs = []
    for r in result.outputs:
        t = thresholds.for_tensor(r.output)
        outputs.append(
            {
                "output": r.output,
                "shape": r.shape,
                **_metrics(r.metrics),
                "cosine_threshold": t.output_cosine,
                "sqnr_db_threshold": t.output_sqnr_db,
            }
        )
    unmatched = [{"tensor": u.tensor, "op_type": u.op_type, "reason": u.reason} for u in result.unmatched]
    files = {
        "layers.csv": to_csv(LAYER_COLUMNS, layers),
        "outputs.csv": to_csv(OUTPUT_COLUMNS, outputs),
        "unmatched.csv": to_csv(UNMATCHED_COLUMNS, unmatched),
    }
    written = []
    for name, text in files.items():
        atomic_write_text(folder / name, text)
        written.append(folder / name)
    return written


def write_summary(rows: Sequence[Mapping[str, Any]], path: Path, gates: Sequence[str]) -> None:
    """One row per model: each gate's outcome and the headline metrics."""
    head = ["model", "target", "images", *gates]
    extra = sorted({k for r in rows for k in r} - set(head))
    atomic_write_text(path, to_csv([*head, *extra], rows))
