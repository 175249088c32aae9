"""qc merge: shard report folders of one run into one folder; folders of different runs or commits refused."""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from qc.cli import main
from qc.errors import DataError
from qc.report import paths
from qc.report.folder import FolderRun
from qc.report.history import History, MetricRow, RunInfo
from qc.report.merge import merge
from qc.report.tables import write_summary

EARLIER = RunInfo("night-1", "2026-01-01T02:00:00+00:00", "old")


def junit(cases: list[tuple[str, str]]) -> str:
    body = "".join(
        f'<testcase classname="benchmarks.test_similarity" name="{name}" time="0.5">'
        + ('<failure message="gate failed"/>' if outcome == "failed" else "")
        + "</testcase>"
        for name, outcome in cases
    )
    failures = sum(1 for _, o in cases if o == "failed")
    return (
        f'<?xml version="1.0"?><testsuites><testsuite name="pytest" errors="0" failures="{failures}" skipped="0" '
        f'tests="{len(cases)}" time="1.0">{body}</testsuite></testsuites>'
    )


def shard(
    root: Path, run_id: str, models: dict[str, str], *, group: str = "G", commit: str = "c0ffee", finished: bool = True
) -> Path:
    """A shard's report folder as a run leaves it: run.json, summary, JUnit, model folders, its own history."""
    root.mkdir(parents=True)
    run = FolderRun(
        run_id=run_id,
        run_group=group,
        started="2026-01-02T02:00:00+00:00",
        git_commit=commit,
        finished="2026-01-02T02:10:00+00:00" if finished else None,
        models=list(models),
        tests={f"benchmarks/test_similarity.py::test_layer_cosine[{m}]": 3.0 for m in models},
        settings={m: {"target": "ort-int8"} for m in models},
    )
    run.write(root)
    write_summary(
        [{"model": m, "target": "ort-int8", "layer_cosine": o} for m, o in models.items()],
        root / paths.SUMMARY,
        ["layer_cosine"],
    )
    (root / paths.JUNIT).write_text(junit([(f"test_layer_cosine[{m}]", o) for m, o in models.items()]))
    history = History(root / paths.HISTORY)
    history.append(EARLIER, [MetricRow(m, "ort-int8", "worst_layer_cosine", 0.9) for m in ("a", "b", "c")])
    history.append(
        RunInfo(run_id, run.started, commit), [MetricRow(m, "ort-int8", "worst_layer_cosine", 0.99) for m in models]
    )
    for m in models:
        paths.model_dir(root, m).mkdir(parents=True)
        (paths.model_dir(root, m) / "layers.csv").write_text("index,tensor,cosine_mean\n0,x,0.99\n")
    return root


def test_two_shards_merge_into_one_run(tmp_path: Path) -> None:
    s1 = shard(tmp_path / "s1", "run-1", {"a": "passed", "index.html": "failed"})
    s2 = shard(tmp_path / "s2", "run-2", {"history.sqlite": "passed"})
    out = tmp_path / "merged"
    assert main(["merge", str(out), str(s1), str(s2)]) == 0

    with (out / paths.SUMMARY).open() as f:
        rows = {r["model"]: r["layer_cosine"] for r in csv.DictReader(f)}
    assert rows == {"a": "passed", "index.html": "failed", "history.sqlite": "passed"}
    suite = ET.parse(out / paths.JUNIT).getroot().find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), len(suite.findall("testcase"))) == ("3", "1", 3)
    history = History(out / paths.HISTORY)
    assert [r.run_id for r in history.runs()] == ["night-1", "G"]  # the earlier night kept, one merged run
    merged = {p.model for p in history.points() if p.run_id == "G"}
    assert merged == {"a", "index.html", "history.sqlite"}
    assert {p.name for p in paths.model_dirs(out)} == {"a", "index.html", "history.sqlite"}
    assert (out / paths.DASHBOARD).is_file()
    assert (paths.model_dir(out, "index.html") / "index.html").is_file()
    info = json.loads((out / paths.RUN_INFO).read_text())
    assert (info["run_id"], info["git_commit"], info["finished"] is not None) == ("G", "c0ffee", True)
    assert len(json.loads((out / paths.DURATIONS).read_text())) == 3


def test_merging_into_an_existing_history_appends_one_run(tmp_path: Path) -> None:
    s1 = shard(tmp_path / "s1", "run-1", {"a": "passed"})
    s2 = shard(tmp_path / "s2", "run-2", {"b": "passed"})
    out = tmp_path / "merged"
    out.mkdir()
    History(out / paths.HISTORY).append(RunInfo("kept", "2025-12-31T00:00:00+00:00", None), [])
    result = merge(out, [s1, s2])
    assert result.history_rows == 2
    assert [r.run_id for r in History(out / paths.HISTORY).runs()] == ["kept", "G"]


@pytest.mark.parametrize(
    ("second", "message"),
    [
        ({"group": "other"}, "run group 'other' differs"),
        ({"commit": "deadbeef"}, "git commit deadbeef differs"),
        ({"finished": False}, "did not finish"),
        ({"models": {"a": "passed"}}, "model 'a' is in two shards"),
    ],
)
def test_folders_of_different_runs_are_refused(tmp_path: Path, second: dict[str, object], message: str) -> None:
    s1 = shard(tmp_path / "s1", "run-1", {"a": "passed"})
    models = second.pop("models", {"b": "passed"})
    assert isinstance(models, dict)
    s2 = shard(tmp_path / "s2", "run-2", models, **second)  # type: ignore[arg-type]
    with pytest.raises(DataError, match=message):
        merge(tmp_path / "merged", [s1, s2])
    assert not (tmp_path / "merged" / paths.SUMMARY).exists()


def test_a_folder_without_run_identity_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    s1 = shard(tmp_path / "s1", "run-1", {"a": "passed"})
    (tmp_path / "plain").mkdir()
    assert main(["merge", str(tmp_path / "merged"), str(s1), str(tmp_path / "plain")]) == 2
    assert "run.json: missing" in capsys.readouterr().err


def test_the_output_cannot_be_a_shard(tmp_path: Path) -> None:
    s1 = shard(tmp_path / "s1", "run-1", {"a": "passed"})
    s2 = shard(tmp_path / "s2", "run-2", {"b": "passed"})
    with pytest.raises(DataError, match="one of the shards"):
        merge(s1, [s1, s2])
