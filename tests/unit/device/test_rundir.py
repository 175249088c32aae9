"""RunDir on this machine (LocalTransport runs the same shell commands a device would)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from qc.device import LocalTransport, RunDir
from qc.errors import DeviceError


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "device root"
    root.mkdir()
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "keep.txt").write_text("keep")
    return root, precious


def test_created_and_removed(layout: tuple[Path, Path]) -> None:
    root, _ = layout
    with RunDir(LocalTransport(), str(root), "run-1") as run_dir:
        assert run_dir.path == f"{root}/qc-run-1"
        assert Path(run_dir.path).is_dir()
        Path(run_dir.join("out", "x.raw")).parent.mkdir()
        Path(run_dir.join("out", "x.raw")).write_bytes(b"1")
    assert not Path(run_dir.path).exists()


def test_existing_run_dir_is_an_error(layout: tuple[Path, Path]) -> None:
    root, _ = layout
    (root / "qc-dup").mkdir()
    with pytest.raises(DeviceError, match="failed"):
        RunDir(LocalTransport(), str(root), "dup").create()


def test_kept_on_failure_when_asked(layout: tuple[Path, Path]) -> None:
    root, _ = layout
    run_dir = RunDir(LocalTransport(), str(root), "kept", keep_on_failure=True)
    with pytest.raises(RuntimeError), run_dir:
        raise RuntimeError("boom")
    assert Path(run_dir.path).is_dir()
    run_dir2 = RunDir(LocalTransport(), str(root), "gone", keep_on_failure=False)
    with pytest.raises(RuntimeError), run_dir2:
        raise RuntimeError("boom")
    assert not Path(run_dir2.path).exists()


def test_remove_inside(layout: tuple[Path, Path]) -> None:
    root, _ = layout
    with RunDir(LocalTransport(), str(root), "r") as run_dir:
        Path(run_dir.path, "a", "b").mkdir(parents=True)
        Path(run_dir.path, "f.txt").write_text("x")
        run_dir.remove("a")
        run_dir.remove(run_dir.join("f.txt"))
        run_dir.remove("does/not/exist")
        assert os.listdir(run_dir.path) == []


@pytest.mark.parametrize(
    "bad",
    [
        "..",
        "../..",
        "../qc-other",
        "a/../../x",
        "/etc/passwd",
        "/",
        "",
        ".",
        "./",
        "a/..",
        "//etc",
        "x\x00y",
    ],
)
def test_remove_outside_is_refused(layout: tuple[Path, Path], bad: str) -> None:
    root, precious = layout
    with RunDir(LocalTransport(), str(root), "r") as run_dir:
        with pytest.raises(DeviceError, match="Refusing to delete"):
            run_dir.remove(bad)
        with pytest.raises(DeviceError, match="Refusing to delete"):
            run_dir.remove(run_dir.path)
        with pytest.raises(DeviceError, match="Refusing to delete"):
            run_dir.remove(str(precious))
        assert (precious / "keep.txt").exists()


def test_sibling_with_common_prefix_is_outside(layout: tuple[Path, Path]) -> None:
    root, _ = layout
    (root / "qc-r2").mkdir()
    with RunDir(LocalTransport(), str(root), "r") as run_dir, pytest.raises(DeviceError, match="Refusing"):
        run_dir.remove(f"{run_dir.path}2")
    assert (root / "qc-r2").is_dir()


def test_symlink_tricks_are_refused(layout: tuple[Path, Path]) -> None:
    root, precious = layout
    with RunDir(LocalTransport(), str(root), "r") as run_dir:
        link = Path(run_dir.path, "escape")
        link.symlink_to(precious)
        with pytest.raises(DeviceError, match="outside the run folder"):
            run_dir.remove("escape/keep.txt")
        run_dir.remove("escape/../precious")  # normalised lexically to <run>/precious: stays inside
        assert (precious / "keep.txt").read_text() == "keep"
        run_dir.remove("escape")  # removes the link, not what it points to
        assert not link.is_symlink()
        assert (precious / "keep.txt").exists()


def test_run_dir_root_behind_a_symlink(tmp_path: Path, layout: tuple[Path, Path]) -> None:
    root, _ = layout
    alias = tmp_path / "alias"
    alias.symlink_to(root)
    with RunDir(LocalTransport(), str(alias), "r") as run_dir:
        Path(run_dir.path, "x").write_text("1")
        run_dir.remove("x")
        assert not Path(run_dir.path, "x").exists()


@pytest.mark.parametrize("run_id", ["", "..", "a/b", "-x", "a b", "x" * 200])
def test_bad_run_ids(run_id: str) -> None:
    with pytest.raises(DeviceError, match="Run id"):
        RunDir(LocalTransport(), "/tmp", run_id)


def test_relative_root_refused() -> None:
    with pytest.raises(DeviceError, match="absolute"):
        RunDir(LocalTransport(), "tmp", "r")
