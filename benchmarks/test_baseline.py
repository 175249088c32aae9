"""Regression against an earlier run (--qc-baseline last | RUN_ID): AP, worst-layer cosine and FPS."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from qc import gates
from qc.compare.layerwise import Comparison
from qc.config import ModelSpec
from qc.errors import QcError
from qc.eval.accuracy import AccuracyResult
from qc.gates import GateResult
from qc.pipeline import ModelStages
from qc.report.history import History

Check = Callable[[GateResult], None]


def _fps(stages: ModelStages, feed: dict[str, np.ndarray]) -> float:
    """This run's FPS: speed.json when the fps gate wrote it during this session, else a timing of our own."""
    path = Path(stages.ctx.report_dir) / stages.spec.name / "speed.json"
    started = float(os.environ.get("QC_RUN_STARTED", "inf"))
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
    which = str(request.config.getoption("--qc-baseline"))
    current: dict[str, float] = {}
    worst = gates.layer_cosine(comparison, qc_model.thresholds).metrics.get("worst_layer_cosine")
    if isinstance(worst, float):
        current["worst_layer_cosine"] = worst
    try:
        if qc_model.task is not None:
            accuracy: AccuracyResult = request.getfixturevalue("accuracy")
            if accuracy.target is not None:
                current["target_ap"] = accuracy.target.ap
        current["target_fps"] = _fps(qc_stages, speed_feed)
        history = History(Path(qc_stages.ctx.report_dir) / "history.sqlite")
        found = history.baseline(which, qc_model.name, before=os.environ.get("QC_RUN_ID"))
    except QcError as exc:
        pytest.fail(str(exc), pytrace=False)
    check_gate(gates.baseline(qc_model.name, current, found, qc_model.thresholds.baseline, which))
