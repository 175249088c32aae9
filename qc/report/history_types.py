"""Plain data shared by the history database and the dashboard."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HistoryPoint:
    """One metric of one model in one run."""

    run_id: str
    time: str  # ISO 8601, UTC
    git_commit: str | None
    model: str
    target: str
    metric: str
    value: float
