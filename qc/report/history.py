"""Run history in SQLite: every run appends its metrics in one transaction; baselines and trends read it back."""

from __future__ import annotations

import argparse
import functools
import math
import sqlite3
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from qc.errors import ConfigError, DataError
from qc.report.history_types import HistoryPoint

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    time TEXT NOT NULL,
    git_commit TEXT
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    model TEXT NOT NULL,
    target TEXT NOT NULL,
    metric TEXT NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (run_id, model, metric)
);
CREATE INDEX IF NOT EXISTS metrics_by_model ON metrics(model, metric);
"""

# Task-independent headline metrics: what trends and baselines look at, and which direction is better.
TASK_INDEPENDENT = {
    "worst_layer_cosine": True,
    "target_fps": True,
    "latency_ms_p50": False,
    "lint_findings": False,
}


@functools.cache
def higher_is_better() -> dict[str, bool]:
    """Every headline metric and whether higher is better: every registered task's headlines
    (:attr:`qc.tasks.base.Task.headlines`), then the task-independent ones."""
    from qc.tasks.base import all_headlines

    out = {h.name: h.higher_is_better for h in all_headlines()}
    out.update(TASK_INDEPENDENT)
    return out


@dataclass(frozen=True)
class MetricRow:
    model: str
    target: str
    metric: str
    value: float


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    time: str
    git_commit: str | None


def run_count(text: str) -> int:
    """``qc history --last N``: a whole number of runs, at least 1 (an argparse ``type``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of runs (1 or more), found {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected 1 or more runs, found {value}")
    return value


def git_commit(cwd: Path | None = None) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


class History:
    """``history.sqlite`` in the report folder."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(self.path, timeout=30)
            conn.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise DataError(f"{self.path}: not a usable history database: {exc}.") from None
        return conn

    def append(self, run: RunInfo, rows: Iterable[MetricRow]) -> int:
        """Insert the run and its finite metrics in ONE transaction: a crash leaves earlier history intact."""
        values = [(run.run_id, r.model, r.target, r.metric, r.value) for r in rows if math.isfinite(r.value)]
        conn = self._connect()
        try:
            if conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run.run_id,)).fetchone():
                raise DataError(f"{self.path}: run id {run.run_id!r} is already recorded.")
            with conn:  # commits on success, rolls back on any exception
                conn.execute(
                    "INSERT INTO runs(run_id, time, git_commit) VALUES (?, ?, ?)",
                    (run.run_id, run.time, run.git_commit),
                )
                conn.executemany(
                    "INSERT INTO metrics(run_id, model, target, metric, value) VALUES (?, ?, ?, ?, ?)", values
                )
        finally:
            conn.close()
        return len(values)

    def runs(self) -> list[RunInfo]:
        if not self.path.is_file():
            return []
        conn = self._connect()
        try:
            rows = conn.execute("SELECT run_id, time, git_commit FROM runs ORDER BY time, run_id").fetchall()
        finally:
            conn.close()
        return [RunInfo(*r) for r in rows]

    def points(
        self, *, models: Sequence[str] | None = None, metrics: Sequence[str] | None = None
    ) -> list[HistoryPoint]:
        if not self.path.is_file():
            return []
        conn = self._connect()
        try:
            rows = conn.execute(
                "SELECT r.run_id, r.time, r.git_commit, m.model, m.target, m.metric, m.value "
                "FROM metrics m JOIN runs r USING (run_id) ORDER BY r.time, r.run_id, m.model, m.metric"
            ).fetchall()
        finally:
            conn.close()
        return [
            HistoryPoint(*row)
            for row in rows
            if (models is None or row[3] in models) and (metrics is None or row[5] in metrics)
        ]

    def baseline(self, which: str, model: str, *, before: str | None = None) -> tuple[RunInfo, dict[str, float]] | None:
        """Metrics of ``model`` in the baseline run: ``last`` (latest run holding the model, other than ``before``)
        or an explicit run id. None when the history has no such run for the model."""
        runs = [r for r in self.runs() if r.run_id != before]
        if which != "last":
            known = {r.run_id for r in runs}
            if which not in known:
                raise ConfigError(
                    f"--qc-baseline {which!r}: no such run in {self.path} (runs: {', '.join(sorted(known)) or 'none'})."
                )
            runs = [r for r in runs if r.run_id == which]
        points = self.points(models=[model])
        for run in reversed(runs):
            values = {p.metric: p.value for p in points if p.run_id == run.run_id}
            if values:
                return run, values
        return None


@dataclass(frozen=True)
class Regression:
    metric: str
    baseline: float
    current: float
    tolerance: float
    relative: bool

    def message(self) -> str:
        unit = f"{self.tolerance:.0%} relative" if self.relative else f"{self.tolerance:g}"
        return f"{self.metric} {self.current:.4f} vs baseline {self.baseline:.4f} (tolerance {unit})"


def regressions(
    current: dict[str, float], baseline: dict[str, float], tolerances: dict[str, tuple[float, bool]]
) -> tuple[list[Regression], list[str]]:
    """Metrics worse than the baseline by more than their tolerance; also the metrics that could not be compared.

    ``tolerances`` maps metric -> (tolerance, relative?). A relative tolerance is a fraction of the baseline value.
    """
    found: list[Regression] = []
    missing: list[str] = []
    for metric, (tol, relative) in tolerances.items():
        if metric not in baseline:
            continue  # the baseline did not measure it: nothing to regress against
        now = current.get(metric)
        if now is None or not math.isfinite(now):
            missing.append(metric)
            continue
        base = baseline[metric]
        allowed = abs(base) * tol if relative else tol
        worse = (base - now) if higher_is_better().get(metric, True) else (now - base)
        if worse > allowed:
            found.append(Regression(metric, base, now, tol, relative))
    return found, missing
