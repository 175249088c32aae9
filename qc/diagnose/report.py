"""Diagnosis reports: diagnosis.json, local.csv, ranges.csv, sensitivity.csv, the advice files, patterns.csv."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qc.cache import atomic_write_text
from qc.diagnose.advice import models_file
from qc.diagnose.stage import Diagnosis
from qc.jsonio import dumps, read_json
from qc.report.paths import MODELS_DIR

LOCAL_COLUMNS = ("index", "tensor", "op_type", "cosine", "cosine_local", "sqnr_db", "sqnr_db_local")


def _num(value: float | None) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return f"{value:.6g}"


def _csv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if v is None else v for v in row])
    return buf.getvalue()


def summary_json(d: Diagnosis) -> dict[str, Any]:
    """diagnosis.json: origins with their local error and range evidence, sensitivity, advice, verification."""
    local = d.local.by_tensor()
    inherited = [n for n in d.notes if "inherited" in n]
    data: dict[str, Any] = {
        "model": d.model,
        "target_kind": d.target_kind,
        "images": d.images,
        "runs_per_image": {
            "reference_run_all": d.local.reference_runs / max(d.local.images, 1),
            "local": d.local.local_runs / max(d.local.images, 1),
        },
        "failing_gates": d.failing_gates,
        "origins": [
            {
                **o.to_json(),
                "slices_local": {
                    k: {"cosine": m.cosine_mean, "sqnr_db": m.sqnr_db_mean, "undefined": m.undefined}
                    for k, m in local[o.tensor].slices.items()
                }
                if o.tensor in local
                else {},
            }
            for o in d.origins
        ],
        "inherited": inherited,
        "sensitivity": d.sensitivity.to_json() if d.sensitivity is not None else None,
        "advice": d.advice.to_json() if d.advice is not None else None,
        "notes": d.notes,
        "timings": d.timings,
    }
    return data


def local_csv(d: Diagnosis) -> str:
    rows = []
    for r in d.local.rows:
        acc = d.accumulated.get(r.tensor)
        rows.append(
            (
                r.index,
                r.tensor,
                r.op_type,
                _num(acc[0]) if acc else "",
                _num(r.metrics.cosine_mean),
                _num(acc[1]) if acc else "",
                _num(r.metrics.sqnr_db_mean),
            )
        )
    return _csv(LOCAL_COLUMNS, rows)


RANGE_COLUMNS = (
    "tensor",
    "op_type",
    "bits",
    "dtype",
    "scale",
    "zero_point",
    "axis",
    "representable_min",
    "representable_max",
    "observed_min",
    "observed_max",
    "clipped_share",
    "rmse_steps",
    "levels_used",
    "level_share",
    "zeroed_share",
    "channels_below_step",
    "channels",
    "channel_axis",
    "pattern",
    "flags",
)


def ranges_csv(d: Diagnosis) -> str:
    order = {r.tensor: r.index for r in d.local.rows}
    rows = []
    for name in sorted(d.ranges, key=lambda n: order.get(n, 1 << 30)):
        e = d.ranges[name]
        scale = _num(e.scale[0]) if len(e.scale) == 1 else f"{min(e.scale):.6g}..{max(e.scale):.6g}"
        zp = str(e.zero_point[0]) if len(e.zero_point) == 1 else f"{min(e.zero_point)}..{max(e.zero_point)}"
        rows.append(
            (
                name,
                d.graph.op_type.get(name, ""),
                e.bits,
                e.dtype,
                scale,
                zp,
                "" if e.axis is None else e.axis,
                _num(e.representable_min),
                _num(e.representable_max),
                _num(e.observed_min),
                _num(e.observed_max),
                _num(e.clipped_share),
                _num(e.rmse_steps),
                _num(e.levels_used),
                _num(e.level_share),
                _num(e.zeroed_share),
                e.channels_below_step,
                e.channels,
                "" if e.channel_axis is None else e.channel_axis,
                d.patterns.get(name, ""),
                "; ".join(e.flags),
            )
        )
    return _csv(RANGE_COLUMNS, rows)


SENSITIVITY_COLUMNS = (
    "rank",
    "node",
    "tensor",
    "op_type",
    "local_sqnr_db",
    "quick_metric",
    "quick_float",
    "quick_only",
    "quick_gain",
    "quick_drop",
    "task_metric",
    "task_float",
    "task_only",
    "task_gain",
    "task_drop",
)


def sensitivity_csv(d: Diagnosis) -> str:
    s = d.sensitivity
    if s is None:
        return _csv(SENSITIVITY_COLUMNS, [])
    rows = [
        (
            r.rank,
            r.node,
            r.tensor,
            r.op_type,
            _num(r.local_sqnr_db),
            "output_sqnr_db",
            _num(r.quick_float),
            _num(r.quick_only),
            _num(r.quick_gain),
            _num(r.quick_drop),
            s.metric if r.task_float is not None else "",
            _num(r.task_float),
            _num(r.task_only),
            _num(r.task_gain),
            _num(r.task_drop),
        )
        for r in s.rows
    ]
    return _csv(SENSITIVITY_COLUMNS, rows)


def write_diagnosis(d: Diagnosis, folder: Path) -> list[Path]:
    """Every per-model file into ``folder``; returns the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "diagnosis.json": dumps(summary_json(d), indent=1),
        "local.csv": local_csv(d),
        "ranges.csv": ranges_csv(d),
        "sensitivity.csv": sensitivity_csv(d),
    }
    advice = d.advice
    if advice is not None and advice.yaml_entry:
        files["advised.models.yaml"] = models_file(advice.yaml_entry)
        files["snpe_overrides.json"] = dumps(advice.snpe_overrides, indent=1)
    out = []
    for name, text in files.items():
        atomic_write_text(folder / name, text)
        out.append(folder / name)
    return out


# -- across models -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PatternRow:
    op_type: str
    pattern: str
    count: int
    models: int
    mean_sqnr_db_local: float
    min_sqnr_db_local: float
    worst_tensor: str


def pattern_rows(items: Iterable[tuple[str, Sequence[tuple[str, str, str, float]]]]) -> list[PatternRow]:
    """Group layers of several models by (op type, pattern); worst mean local SQNR first.

    ``items``: per model, its (tensor, op type, pattern, local SQNR dB) rows; the SQNR is the worst of the
    tensor's whole, slice and median-channel local SQNR (0 dB where nothing survives).
    """
    groups: dict[tuple[str, str], list[tuple[str, str, float]]] = {}
    for model, rows in items:
        for tensor, op_type, pattern, sqnr in rows:
            if math.isnan(sqnr):
                continue
            groups.setdefault((op_type, pattern or "-"), []).append((model, tensor, sqnr))
    out = []
    for (op_type, pattern), members in groups.items():
        finite = [min(s, 200.0) for _, _, s in members]
        worst = min(members, key=lambda m: m[2])
        out.append(
            PatternRow(
                op_type=op_type,
                pattern=pattern,
                count=len(members),
                models=len({m for m, _, _ in members}),
                mean_sqnr_db_local=sum(finite) / len(finite),
                min_sqnr_db_local=min(finite),
                worst_tensor=f"{worst[0]}:{worst[1]}",
            )
        )
    out.sort(key=lambda r: (r.mean_sqnr_db_local, r.op_type, r.pattern))
    return out


def pattern_items(d: Diagnosis) -> tuple[str, list[tuple[str, str, str, float]]]:
    rows = [(r.tensor, r.op_type, d.patterns.get(r.tensor, ""), r.worst_sqnr_db()) for r in d.local.rows if r.quantized]
    return d.model, [(t, o, p, 0.0 if s == -math.inf else s) for t, o, p, s in rows]


def patterns_csv(rows: Sequence[PatternRow]) -> str:
    header = ("op_type", "pattern", "count", "models", "mean_sqnr_db_local", "min_sqnr_db_local", "worst_tensor")
    return _csv(
        header,
        [
            (
                r.op_type,
                r.pattern,
                r.count,
                r.models,
                _num(r.mean_sqnr_db_local),
                _num(r.min_sqnr_db_local),
                r.worst_tensor,
            )
            for r in rows
        ],
    )


def write_patterns(diagnoses: Iterable[Diagnosis], path: Path) -> Path:
    atomic_write_text(path, patterns_csv(pattern_rows(pattern_items(d) for d in diagnoses)))
    return path


def write_patterns_from_reports(report_dir: Path) -> Path:
    """patterns.csv from every ``<report_dir>/models/*/patterns.json`` (one per diagnosed model, any process)."""
    items: list[tuple[str, list[tuple[str, str, str, float]]]] = []
    for file in sorted(report_dir.glob(f"{MODELS_DIR}/*/patterns.json")):
        data = read_json(file)
        items.append((data["model"], [(r[0], r[1], r[2], float(r[3])) for r in data["rows"]]))
    path = report_dir / "patterns.csv"
    atomic_write_text(path, patterns_csv(pattern_rows(items)))
    return path


def write_pattern_items(d: Diagnosis, folder: Path) -> Path:
    model, rows = pattern_items(d)
    path = folder / "patterns.json"
    atomic_write_text(path, dumps({"model": model, "rows": [list(r) for r in rows]}))
    return path
