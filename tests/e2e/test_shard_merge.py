"""End to end: the gates sharded in two with pytest-split, merged by `qc merge`, give the verdicts of one run.

Also the report folder's life as a user meets it: model names that are run-level file names, a read-only folder,
a second run while one holds the folder.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from qc.gates import GATE_NAMES
from qc.report import paths
from qc.report.folder import FolderRun, ReportFolder
from qc.report.history import History
from tests.models import tiny_project

REPO = Path(__file__).resolve().parents[2]
GOOD = {"bits": 16, "layer": 0.95, "out": 0.95, "sqnr": 10}
BAD = {"bits": 8, "layer": 0.95, "out": 0.95, "sqnr": 10, "expect": "{output_cosine: fail, output_sqnr: fail}"}
# model names that are also run-level file names of a report folder
MODELS = [
    {"name": "index.html", **GOOD},
    {"name": "history.sqlite", **BAD},
    {"name": "plotly.min.js", **GOOD},
    {"name": "tiny-int8", **BAD},
]
GROUP = "ci-4242-1"


def pytest_run(folder: Path, report: str, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        str(REPO / "benchmarks"),
        "-p",
        "no:cacheprovider",
        "--qc-models",
        str(folder / "models.yaml"),
        "--qc-cache-dir",
        str(folder / "cache"),
        "--qc-report-dir",
        str(folder / report),
        *args,
    ]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)


def qc(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "qc.cli", *args]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)


def verdicts(report: Path) -> dict[str, dict[str, str]]:
    with (report / paths.SUMMARY).open(newline="") as f:
        return {r["model"]: {g: r[g] for g in GATE_NAMES if r.get(g)} for r in csv.DictReader(f)}


def cases(report: Path) -> dict[str, str]:
    out = {}
    for case in ET.parse(report / paths.JUNIT).getroot().iter("testcase"):
        kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        out[case.get("name", "")] = kinds[0] if kinds else "passed"
    return out


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("shards")
    tiny_project(folder, MODELS)
    return folder


@pytest.fixture(scope="module")
def whole(project: Path) -> subprocess.CompletedProcess[str]:
    """One unsharded run: the reference verdicts, and the durations the split is planned from."""
    return pytest_run(project, "whole", "--junitxml", str(project / "whole" / "junit.xml"))


@pytest.fixture(scope="module")
def sharded(project: Path, whole: subprocess.CompletedProcess[str]) -> list[subprocess.CompletedProcess[str]]:
    """Plan from the last run's durations, then two shards, each given the last run's history (as CI restores it)."""
    assert whole.returncode == 0, whole.stdout + whole.stderr
    planned = pytest_run(project, "whole", "--collect-only", "-q", "--qc-plan-durations", str(project / "plan.json"))
    assert planned.returncode == 0, planned.stdout + planned.stderr
    runs = []
    for group in (1, 2):
        report = project / f"shard{group}"
        report.mkdir()
        shutil.copy(project / "whole" / paths.HISTORY, report / paths.HISTORY)
        runs.append(
            pytest_run(
                project,
                f"shard{group}",
                "--splits",
                "2",
                "--group",
                str(group),
                "--durations-path",
                str(project / "plan.json"),
                "--qc-run-group",
                GROUP,
                "--junitxml",
                str(report / "junit.xml"),
            )
        )
    return runs


def test_model_names_that_are_report_file_names(project: Path, whole: subprocess.CompletedProcess[str]) -> None:
    assert whole.returncode == 0, whole.stdout + whole.stderr
    report = project / "whole"
    assert "<title>qc" in (report / "index.html").read_text(encoding="utf-8")  # the dashboard, not a model
    assert (paths.model_dir(report, "index.html") / "layers.csv").is_file()
    assert (paths.model_dir(report, "history.sqlite") / "index.html").is_file()
    runs = History(report / paths.HISTORY).runs()
    assert len(runs) == 1
    recorded = {p.model for p in History(report / paths.HISTORY).points()}
    assert recorded == {m["name"] for m in MODELS}
    assert not list(report.rglob("*.tmp")), "temporary files left behind"


def test_shards_merge_to_the_verdicts_of_one_run(
    project: Path, whole: subprocess.CompletedProcess[str], sharded: list[subprocess.CompletedProcess[str]]
) -> None:
    for run in sharded:
        assert run.returncode == 0, run.stdout + run.stderr
        assert "[pytest-split] Running group" in run.stdout
    one, two = (set(verdicts(project / f"shard{g}")) for g in (1, 2))
    assert one
    assert two
    assert not one & two  # whole models, each in one shard

    merged = qc("merge", str(project / "merged"), str(project / "shard1"), str(project / "shard2"))
    assert merged.returncode == 0, merged.stdout + merged.stderr
    out = project / "merged"
    assert verdicts(out) == verdicts(project / "whole")
    assert cases(out) == cases(project / "whole")
    history = History(out / paths.HISTORY)
    last_night = History(project / "whole" / paths.HISTORY).runs()[0].run_id
    assert [r.run_id for r in history.runs()] == [last_night, GROUP]
    assert {p.model for p in history.points() if p.run_id == GROUP} == {m["name"] for m in MODELS}
    assert {p.name for p in paths.model_dirs(out)} == {m["name"] for m in MODELS}

    # the unsharded folder is not part of this run group: refused
    mixed = qc("merge", str(project / "mixed"), str(project / "shard1"), str(project / "whole"))
    assert mixed.returncode == 2
    assert "not shards of one run" in mixed.stderr
    assert "Traceback" not in mixed.stderr


def test_a_shard_that_would_cut_a_model_stops(project: Path, whole: subprocess.CompletedProcess[str]) -> None:
    """Without the planned durations (every test 1 s), pytest-split would cut a model: the shard refuses to run."""
    assert whole.returncode == 0, whole.stdout + whole.stderr
    run = pytest_run(project, "cut", "--splits", "3", "--group", "1", "--durations-path", str(project / "none.json"))
    assert run.returncode == pytest.ExitCode.USAGE_ERROR, run.stdout + run.stderr
    assert "holds only part of model(s)" in run.stdout + run.stderr
    assert "passed" not in run.stdout


@pytest.fixture
def read_only(project: Path) -> Iterator[Path]:
    folder = project / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    immutable = os.geteuid() == 0  # root ignores modes: make it immutable
    if immutable:
        subprocess.run(["chattr", "+i", str(folder)], check=True)
    try:
        yield folder
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        folder.chmod(0o755)


def test_a_read_only_report_folder_is_one_error_at_start(project: Path, read_only: Path) -> None:
    run = pytest_run(project, read_only.name, "-n", "2")
    assert run.returncode == pytest.ExitCode.USAGE_ERROR, run.stdout + run.stderr
    text = run.stdout + run.stderr
    assert text.count("not writable") == 1
    assert str(read_only) in text
    assert "Traceback" not in text
    assert "passed" not in run.stdout


def test_a_second_run_into_a_held_folder_names_the_holder(project: Path) -> None:
    holder = FolderRun(run_id="holder-7", run_group="holder-7", started="2026-01-01T00:00:00+00:00", git_commit=None)
    held = ReportFolder(project / "held", holder).open()
    try:
        run = pytest_run(project, "held")
    finally:
        held.release()
    assert run.returncode == pytest.ExitCode.USAGE_ERROR, run.stdout + run.stderr
    assert f"in use by run holder-7 (pid {os.getpid()}" in run.stderr
