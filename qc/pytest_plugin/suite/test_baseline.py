"""Regression against an earlier run (--qc-baseline last or a run id): the task's headline metrics, worst-layer
cosine, FPS."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qc import gates
from qc.compare.layerwise import Comparison
from qc.config import ModelSpec
from qc.gates import BaselineEvidence, Evidence, GateResult
from qc.pipeline import ModelStages
from qc.pytest_plugin.run import run_state
from qc.report.paths import model_dir

Check = Callable[[GateResult], None]


def _fps(stages: ModelStages, feed: dict[str, np.ndarray], started: float) -> float:
    """This run's FPS: speed.json when the fps gate wrote it during this session, else a timing of our own."""
    path = model_dir(stages.ctx.report_dir, stages.spec.name) / "speed.json"
    if path.is_file() and path.stat().st_mtime >= started:
        return float(json.loads(path.read_text())["target"]["fps"])
    settings = stages.spec.speed
    return stages.target().speed(feed, rounds=settings.rounds, warmup=settings.warmup).fps


@pytest.mark.qc_gate("baseline")
def test_baseline(
    qc_model: ModelSpec,
    qc_stages: ModelStages,
    comparison: Comparison,
    speed_feed: dict[str, np.ndarray],
    request: pytest.FixtureRequest,
    check_gate: Check,
) -> None:
    from qc.report.history import History

    which = str(request.config.getoption("--qc-baseline"))
    run = run_state(request.config)
    current: dict[str, float] = {}
    worst = gates.layer_cosine(comparison, qc_model.thresholds).metrics.get("worst_layer_cosine")
    if isinstance(worst, float):
        current["worst_layer_cosine"] = worst
    if qc_model.task is not None:
        outcome: Any = request.getfixturevalue("accuracy")
        task = qc_stages.task()
        headline = task.metrics(outcome)
        tolerated = qc_model.thresholds.baseline.table(task.headlines)
        current.update({k: v for k, v in headline.items() if k in tolerated})
    current["target_fps"] = _fps(qc_stages, speed_feed, run.started)
    history = History(Path(qc_stages.ctx.report_dir) / "history.sqlite")
    found = history.baseline(which, qc_model.name, before=run.run_id)
    check_gate(gates.check("baseline", Evidence(qc_model, baseline=BaselineEvidence(current, found, which))))
