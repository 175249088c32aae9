"""The SQLite run history: one transaction per run, baselines, regressions."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from qc.cli import main
from qc.errors import ConfigError, DataError
from qc.report.history import History, MetricRow, RunInfo, regressions


def _run(h: History, run_id: str, time: str, **values: float) -> None:
    h.append(RunInfo(run_id, time, "abc"), [MetricRow("m", "ort-int8", k, v) for k, v in values.items()])


def test_append_and_read_back(tmp_path: Path) -> None:
    h = History(tmp_path / "history.sqlite")
    _run(h, "r1", "2026-01-01T00:00:00+00:00", target_ap=0.3, target_fps=50.0)
    _run(h, "r2", "2026-01-02T00:00:00+00:00", target_ap=0.29, target_fps=float("nan"))
    assert [r.run_id for r in h.runs()] == ["r1", "r2"]
    points = h.points(metrics=["target_ap"])
    assert [(p.run_id, p.value) for p in points] == [("r1", 0.3), ("r2", 0.29)]
    assert not [p for p in h.points() if p.run_id == "r2" and p.metric == "target_fps"]  # NaN is not stored


def test_a_failing_append_leaves_earlier_history_intact(tmp_path: Path) -> None:
    h = History(tmp_path / "history.sqlite")
    _run(h, "r1", "2026-01-01T00:00:00+00:00", target_ap=0.3)
    rows = [MetricRow("m", "t", "target_ap", 0.1), MetricRow("m", "t", "target_ap", 0.2)]  # duplicate key
    with pytest.raises(sqlite3.IntegrityError):
        h.append(RunInfo("r2", "2026-01-02T00:00:00+00:00", None), rows)
    assert [r.run_id for r in h.runs()] == ["r1"]  # the run row was rolled back with its metrics
    with pytest.raises(DataError, match="already recorded"):
        _run(h, "r1", "2026-01-03T00:00:00+00:00", target_ap=0.3)


def test_baseline_last_and_by_id(tmp_path: Path) -> None:
    h = History(tmp_path / "history.sqlite")
    assert h.baseline("last", "m") is None
    _run(h, "r1", "2026-01-01T00:00:00+00:00", target_ap=0.3)
    _run(h, "r2", "2026-01-02T00:00:00+00:00", target_ap=0.2)
    found = h.baseline("last", "m", before="r3")
    assert found is not None
    assert found[0].run_id == "r2"
    found = h.baseline("last", "m", before="r2")
    assert found is not None
    assert found[0].run_id == "r1"
    by_id = h.baseline("r1", "m")
    assert by_id is not None
    assert by_id[1]["target_ap"] == 0.3
    with pytest.raises(ConfigError, match="no such run"):
        h.baseline("nope", "m")


def test_regressions_respect_direction_and_relative_tolerance() -> None:
    tol = {"target_ap": (0.01, False), "target_fps": (0.2, True), "worst_layer_cosine": (0.005, False)}
    base = {"target_ap": 0.30, "target_fps": 100.0, "worst_layer_cosine": 0.99}
    found, missing = regressions({"target_ap": 0.295, "target_fps": 85.0, "worst_layer_cosine": 0.97}, base, tol)
    assert [r.metric for r in found] == ["worst_layer_cosine"]
    found, _ = regressions({"target_ap": 0.25, "target_fps": 70.0, "worst_layer_cosine": 0.99}, base, tol)
    assert {r.metric for r in found} == {"target_ap", "target_fps"}
    assert "tolerance 20% relative" in next(r for r in found if r.metric == "target_fps").message()
    _, missing = regressions({"target_ap": float("nan")}, base, tol)
    assert set(missing) == {"target_ap", "target_fps", "worst_layer_cosine"}


@pytest.mark.parametrize(("last", "found"), [("-1", "found -1"), ("0", "found 0"), ("two", "found 'two'")])
def test_history_last_below_one_is_rejected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], last: str, found: str
) -> None:
    h = History(tmp_path / "history.sqlite")
    _run(h, "r1", "2026-01-01T00:00:00+00:00", target_ap=0.3)
    with pytest.raises(SystemExit) as exc:
        main(["history", "--report-dir", str(tmp_path), "--last", last])
    assert exc.value.code == 2
    captured = capsys.readouterr()
    assert "argument --last:" in captured.err
    assert found in captured.err
    assert "no runs recorded" not in captured.out


def test_history_last_keeps_the_last_n_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    h = History(tmp_path / "history.sqlite")
    for day, ap in ((1, 0.3), (2, 0.28), (3, 0.31)):
        _run(h, f"r{day}", f"2026-01-0{day}T00:00:00+00:00", target_ap=ap)
    assert main(["history", "--report-dir", str(tmp_path), "--last", "1"]) == 0
    out = capsys.readouterr().out
    assert "1 run(s): r3" in out
    assert "target_ap              0.31   (= since the first shown run)" in out
    assert main(["history", "--report-dir", str(tmp_path), "--last", "2"]) == 0
    out = capsys.readouterr().out
    assert "2 run(s): r2" in out
    assert "0.28  0.31   (better since the first shown run)" in out
