"""Speed and lint artifacts: speed.json, layer_times.csv, op_types.csv, lint.csv."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

from qc.cache import atomic_write_text
from qc.graph.lint import Finding
from qc.jsonio import write_json
from qc.report.tables import to_csv
from qc.speed import LatencyStats, LayerTimeRow, op_type_shares

LAYER_TIME_COLUMNS = ("layer", "op_type", "time", "unit", "share")
OP_TYPE_COLUMNS = ("op_type", "time", "unit", "share", "layers")
LINT_COLUMNS = ("rule", "severity", "node", "op_type", "what", "why", "fix", "time_share")


def write_speed(
    folder: Path,
    target: LatencyStats,
    reference: LatencyStats | None,
    layers: Sequence[LayerTimeRow],
    *,
    profiling_overhead: float | None = None,
    io: Sequence[LayerTimeRow] = (),
    figures: Mapping[str, LatencyStats] | None = None,
    gated_source: str | None = None,
) -> list[Path]:
    """``figures``: every throughput figure by source (``host-wall``, ``device``, ``htp-cycles-estimate``), each
    written with its ``source``; ``gated_source`` is the one ``speed.fps_source`` chose (None: the default)."""
    folder.mkdir(parents=True, exist_ok=True)
    unit = layers[0].unit if layers else ""
    data = {
        "target": target.to_json(),
        "reference": reference.to_json() if reference is not None else None,
        "fps_ratio": target.fps / reference.fps if reference is not None and reference.fps > 0 else None,
        "profiled_layer_time_total": sum(r.time for r in layers),
        "profiled_unit": unit,
        "profiling_overhead": profiling_overhead,
        "io_transfers": [asdict(r) for r in io],
        "io_time_total": sum(r.time for r in io) if io else None,
        "io_share_of_profile": sum(r.share for r in io) if io else None,
        "note": "FPS and latency come from timed runs without profiling; layer times from a separate profiled run.",
    }
    if figures is not None:
        data["figures"] = {
            source: {**stats.to_json(), "source": source, "detail": stats.source, "estimate": "estimate" in source}
            for source, stats in figures.items()
        }
        data["fps_source"] = gated_source
        data["layer_times_source"] = f"profiled run, unit {unit or 'none'}"
    write_json(folder / "speed.json", data)
    atomic_write_text(folder / "layer_times.csv", to_csv(LAYER_TIME_COLUMNS, [asdict(r) for r in layers]))
    ops = [
        {"op_type": op, "time": t, "unit": unit, "share": share, "layers": n}
        for op, t, share, n in op_type_shares(layers)
    ]
    atomic_write_text(folder / "op_types.csv", to_csv(OP_TYPE_COLUMNS, ops))
    return [folder / "speed.json", folder / "layer_times.csv", folder / "op_types.csv"]


def write_lint(folder: Path, findings: Sequence[Finding]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{c: getattr(f, c) for c in LINT_COLUMNS} for f in findings]
    atomic_write_text(folder / "lint.csv", to_csv(LINT_COLUMNS, rows))
    return folder / "lint.csv"
