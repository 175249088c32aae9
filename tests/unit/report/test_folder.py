"""The report folder's life: one run at a time (lock naming the holder), writable or a clear error, replace rule."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from qc.report import paths
from qc.report.folder import FolderError, FolderRun, ReportFolder


def run(run_id: str = "r1") -> FolderRun:
    return FolderRun(run_id=run_id, run_group=run_id, started="2026-01-01T00:00:00+00:00", git_commit="abc")


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    """A folder nobody may write: mode 0555, and immutable when the tests run as root (root ignores modes)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    immutable = os.geteuid() == 0
    if immutable:
        subprocess.run(["chattr", "+i", str(folder)], check=True)
    try:
        probe = folder / "probe"
        with pytest.raises(PermissionError):
            probe.write_bytes(b"")  # the fixture itself must give a folder that refuses writes
        yield folder
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        folder.chmod(0o755)


def test_a_second_run_is_refused_naming_the_holder(tmp_path: Path) -> None:
    first = ReportFolder(tmp_path / "reports", run("first-run")).open()
    with pytest.raises(FolderError) as err:
        ReportFolder(tmp_path / "reports", run("second-run")).open()
    message = str(err.value)
    assert "run first-run" in message
    assert f"pid {os.getpid()}" in message
    assert str(tmp_path / "reports") in message
    first.release()
    ReportFolder(tmp_path / "reports", run("second-run")).open().release()  # free again once released


def test_a_read_only_folder_is_one_clear_error(read_only: Path) -> None:
    with pytest.raises(FolderError, match="not writable") as err:
        ReportFolder(read_only, run()).open()
    assert str(read_only) in str(err.value)


def test_a_folder_that_cannot_be_made_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(FolderError, match="cannot create it"):
        ReportFolder(tmp_path / "file" / "reports", run()).open()


def test_a_new_run_replaces_results_and_keeps_history(tmp_path: Path) -> None:
    root = tmp_path / "reports"
    old = ReportFolder(root, run("old")).open()
    paths.model_dir(root, "old-model").mkdir(parents=True)
    (paths.model_dir(root, "old-model") / "layers.csv").write_text("x")
    for name in (paths.SUMMARY, paths.JUNIT, paths.DASHBOARD, paths.PATTERNS, paths.HISTORY, paths.DURATIONS):
        (root / name).write_text("old")
    (root / "notes.txt").write_text("a user's file")
    old.finish()
    old.release()

    new = ReportFolder(root, run("new")).open()
    new.release()
    assert not (root / paths.MODELS_DIR).exists()
    for name in (paths.SUMMARY, paths.JUNIT, paths.DASHBOARD, paths.PATTERNS):
        assert not (root / name).exists(), name
    for name in (paths.HISTORY, paths.DURATIONS, "notes.txt"):
        assert (root / name).read_text() != "", name
    assert json.loads((root / paths.RUN_INFO).read_text())["run_id"] == "new"


def test_a_folder_no_qc_run_wrote_is_never_cleared(tmp_path: Path) -> None:
    root = tmp_path / "mine"
    (root / paths.MODELS_DIR).mkdir(parents=True)
    (root / paths.MODELS_DIR / "weights.onnx").write_text("precious")
    (root / paths.SUMMARY).write_text("mine")
    ReportFolder(root, run()).open().release()
    assert (root / paths.MODELS_DIR / "weights.onnx").read_text() == "precious"
    assert (root / paths.SUMMARY).read_text() == "mine"


def test_model_folders_never_meet_run_files(tmp_path: Path) -> None:
    for name in ("index.html", "history.sqlite", "summary.csv", "plotly.min.js", "models", "run.json"):
        folder = paths.model_dir(tmp_path, name)
        assert folder.parent == tmp_path / paths.MODELS_DIR
    with pytest.raises(ValueError, match="cannot name a report folder"):
        paths.model_dir(tmp_path, "..")
