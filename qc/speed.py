"""Speed: latency statistics, per-layer time tables (onnxruntime profiler or snpe-diagview), op-type shares."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qc.errors import ParseError


@dataclass(frozen=True)
class LatencyStats:
    fps: float
    latency_ms_mean: float
    latency_ms_p50: float
    latency_ms_p90: float
    latency_ms_p99: float
    rounds: int
    source: str

    @classmethod
    def from_seconds(cls, samples: Sequence[float], source: str) -> LatencyStats:
        if not samples:
            raise ValueError("no timing samples")
        ms = np.asarray(samples, dtype=np.float64) * 1000.0
        mean = float(ms.mean())
        return cls(
            fps=1000.0 / mean if mean > 0 else math.inf,
            latency_ms_mean=mean,
            latency_ms_p50=float(np.percentile(ms, 50)),
            latency_ms_p90=float(np.percentile(ms, 90)),
            latency_ms_p99=float(np.percentile(ms, 99)),
            rounds=len(samples),
            source=source,
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LayerTimeRow:
    layer: str
    op_type: str
    time: float
    unit: str
    share: float


@dataclass(frozen=True)
class LayerProfile:
    """Per-layer times plus the mean wall time of a profiled run (to measure the profiler's own overhead).

    ``io`` holds input/output transfer rows that are not layers (the HTP's ``Input OpId_n`` / ``Output OpId_n``):
    their ``share`` is of everything profiled (layers and transfers); the layer rows' shares are of the layers only.
    """

    rows: list[LayerTimeRow]
    run_ms: float | None = None
    io: list[LayerTimeRow] = field(default_factory=list)


def with_shares(rows: Iterable[tuple[str, str, float]], unit: str) -> list[LayerTimeRow]:
    items = list(rows)
    total = sum(t for _, _, t in items)
    return [LayerTimeRow(n, op, t, unit, t / total if total > 0 else math.nan) for n, op, t in items]


def parse_ort_profile(path: Path, *, skip_runs: int = 1) -> LayerProfile:
    """Per-node kernel time in microseconds, the mean over the profiled runs, from an onnxruntime trace.

    The first ``skip_runs`` runs (warm-up: allocation, kernel selection) are left out, found by the ``model_run``
    session events that frame each run.
    """
    try:
        events = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ParseError(f"onnxruntime profile {path}: cannot read it as JSON: {exc}") from None
    if not isinstance(events, list):
        raise ParseError(f"onnxruntime profile {path}: expected a list of trace events, found {type(events).__name__}")
    events = [ev for ev in events if isinstance(ev, dict)]
    runs = sorted(
        (float(ev.get("ts", 0)), float(ev.get("ts", 0)) + float(ev.get("dur", 0)))
        for ev in events
        if ev.get("cat") == "Session" and ev.get("name") == "model_run"
    )
    if len(runs) <= skip_runs:
        raise ParseError(f"onnxruntime profile {path}: {len(runs)} model_run event(s); need more than {skip_runs}")
    start = runs[skip_runs][0]
    counted = len(runs) - skip_runs
    total: dict[str, float] = defaultdict(float)
    ops: dict[str, str] = {}
    for ev in events:
        name = str(ev.get("name", ""))
        if ev.get("cat") != "Node" or not name.endswith("_kernel_time") or float(ev.get("ts", 0)) < start:
            continue
        node = name.removesuffix("_kernel_time")
        total[node] += float(ev.get("dur", 0.0))
        args = ev.get("args")
        ops[node] = str(args.get("op_name", "?")) if isinstance(args, dict) else "?"
    if not total:
        raise ParseError(f"onnxruntime profile {path}: no node kernel-time events after the warm-up run")
    run_ms = sum(end - begin for begin, end in runs[skip_runs:]) / counted / 1000.0
    return LayerProfile(with_shares(((n, ops[n], t / counted) for n, t in total.items()), "us"), run_ms)


def op_type_shares(rows: Sequence[LayerTimeRow]) -> list[tuple[str, float, float, int]]:
    """(op type, time, share, layer count), largest share first."""
    time: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    for r in rows:
        time[r.op_type] += r.time
        count[r.op_type] += 1
    total = sum(time.values())
    out = [(op, t, t / total if total > 0 else math.nan, count[op]) for op, t in time.items()]
    return sorted(out, key=lambda x: -x[1])
