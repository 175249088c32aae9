"""Remote path safety: a control character in a remote path cannot steer a delete outside the run folder.

Reproduces issue 13: with ``remote_root = f"{tmp}/a\\n{tmp}/victim"``, ``RunDir.create()`` then ``remove("data")``
deleted ``{tmp}/victim/qc-r1/data``, because ``_resolve`` took the last line of ``pwd -P``; and ``qc validate``
accepted such a root.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from qc.config import load_project
from qc.device import LocalTransport, RunDir
from qc.errors import ConfigError, DeviceError


def _victim(tmp_path: Path) -> Path:
    data = tmp_path / "victim" / "qc-r1" / "data"
    data.mkdir(parents=True)
    (data / "keep.txt").write_text("keep")
    return data


def _create_then_remove(run_dir_root: str, tricky: Path | None = None) -> str | None:
    """create() then remove("data") as in the issue; the DeviceError text, or None when nothing refused."""
    try:
        run_dir = RunDir(LocalTransport(), run_dir_root, "r1")
        run_dir.create()
        if tricky is not None:
            (tricky / "qc-r1" / "data").mkdir(exist_ok=True)
        run_dir.remove("data")
    except DeviceError as exc:
        return str(exc)
    return None


def test_newline_in_the_root_is_refused_and_deletes_nothing(tmp_path: Path) -> None:
    data = _victim(tmp_path)
    (tmp_path / "a").mkdir()
    refused = _create_then_remove(f"{tmp_path}/a\n{tmp_path}/victim")
    assert (data / "keep.txt").exists(), "remove('data') deleted a folder outside the run folder"
    assert refused is not None
    assert "control character" in refused


def test_a_physical_path_with_a_newline_cannot_fool_the_resolution(tmp_path: Path) -> None:
    """The root itself is clean, but it is a symlink to a folder whose name holds a newline."""
    data = _victim(tmp_path)
    tricky = Path(f"{tmp_path}/a\n{tmp_path}/victim")
    tricky.mkdir(parents=True)
    (tmp_path / "link").symlink_to(tricky)
    refused = _create_then_remove(str(tmp_path / "link"), tricky)
    assert (data / "keep.txt").exists(), "remove('data') deleted a folder outside the run folder"
    assert refused is not None
    assert "control character" in refused


@pytest.mark.parametrize("char", ["\n", "\r", "\t", "\x1b", "\x7f", "\x00"])
def test_every_control_character_is_refused_in_the_root(tmp_path: Path, char: str) -> None:
    with pytest.raises(DeviceError, match=r"control character"):
        RunDir(LocalTransport(), f"{tmp_path}/x{char}y", "r1")


def test_removal_refuses_a_resolved_target_outside_the_run_folder(tmp_path: Path) -> None:
    """If the device resolves the run folder's subfolder elsewhere, the error names both paths."""
    (tmp_path / "root").mkdir()
    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    with RunDir(LocalTransport(), str(tmp_path / "root"), "r1") as run_dir:
        Path(run_dir.path, "sub").symlink_to(outside / "sub")
        with pytest.raises(DeviceError) as info:
            run_dir.remove("sub/x")
        message = str(info.value)
        assert str(outside / "sub") in message
        assert run_dir.path in message
    assert (outside / "sub").is_dir()


def _project(tmp_path: Path, root: str) -> Path:
    path = tmp_path / "models.yaml"
    path.write_text(
        "devices:\n"
        "  - name: dev\n"
        "    host: 10.0.0.2\n"
        "    user: root\n"
        "    auth: {key_file: id}\n"
        f"    remote_root: {root}\n"
        "models:\n"
        "  - name: m\n"
        "    reference: model.onnx\n"
        "    target: {kind: snpe, dlc: model.dlc, devices: [dev]}\n"
        "    eval_data: {folder: images}\n"
    )
    return path


@pytest.mark.parametrize(
    ("root", "shown"),
    [
        ('"/data/a\\n/data/victim"', r"'\\n'"),
        ('"/data/a\\t"', r"'\\t'"),
        ('"/data/\\x1b[2J"', r"'\\x1b'"),
    ],
)
def test_config_rejects_control_characters_in_remote_root(tmp_path: Path, root: str, shown: str) -> None:
    path = _project(tmp_path, root)
    with pytest.raises(ConfigError) as info:
        load_project(path, check_files=False)
    message = str(info.value)
    assert message.startswith(f"{path}:6:18: devices[0].remote_root: "), message
    assert "control character" in message
    assert shown.replace("\\\\", "\\") in message


def test_config_rejects_a_relative_remote_root(tmp_path: Path) -> None:
    path = _project(tmp_path, "data/local/tmp")
    with pytest.raises(ConfigError, match=r"models.yaml:6:18: devices\[0\]\.remote_root: .*absolute"):
        load_project(path, check_files=False)


def test_config_accepts_a_plain_remote_root(tmp_path: Path) -> None:
    project = load_project(_project(tmp_path, "/data/local/tmp/qc runs"), check_files=False)
    assert project.devices[0].remote_root == "/data/local/tmp/qc runs"
