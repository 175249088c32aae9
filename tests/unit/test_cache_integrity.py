"""Cache entries are verified before use: a tampered, truncated, replaced or incomplete entry is a warning naming
the entry and the file, and a rebuild; never a wrong value or a traceback."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qc.cache import MANIFEST, CacheWarning, StageCache


class Stage:
    """A stage writing ``result.json`` and an array file; counts its builds."""

    def __init__(self, cache: StageCache) -> None:
        self.cache = cache
        self.builds = 0

    def build(self, folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
        self.builds += 1
        np.savez_compressed(folder / "target.npz", boxes=np.arange(400, dtype=np.float32))
        data = {"ap": 0.108, "images": 3}
        return data, data

    @staticmethod
    def load(data: Any, folder: Path) -> dict[str, Any]:
        with np.load(folder / "target.npz") as arrays:
            assert arrays["boxes"].shape == (400,)
        return dict(data)

    def __call__(self) -> dict[str, Any]:
        return self.cache.cached("accuracy", "k1", self.build, self.load)


@pytest.fixture
def stage(tmp_path: Path) -> Stage:
    s = Stage(StageCache(tmp_path))
    s()
    assert s.builds == 1
    return s


def entry(stage: Stage) -> Path:
    return stage.cache.root / "accuracy" / "k1"


def test_an_intact_entry_is_a_hit(stage: Stage) -> None:
    assert stage() == {"ap": 0.108, "images": 3}
    assert stage.builds == 1
    assert stage.cache.hits == ["accuracy/k1"]
    manifest = json.loads((entry(stage) / MANIFEST).read_text())
    assert set(manifest["files"]) == {"result.json", "target.npz"}


def test_a_changed_digit_in_result_json_is_a_warning_and_a_rebuild(stage: Stage) -> None:
    result = entry(stage) / "result.json"
    result.write_text(result.read_text().replace("0.108", "0.908"))
    with pytest.warns(CacheWarning, match=r"accuracy/k1 .*file result\.json changed since it was written"):
        value = stage()
    assert value["ap"] == 0.108  # recomputed, not the tampered number
    assert stage.builds == 2
    assert stage() == value  # and the rebuilt entry is trusted again
    assert stage.builds == 2


def test_a_replaced_file_of_the_same_size_is_detected(stage: Stage) -> None:
    npz = entry(stage) / "target.npz"
    data = bytearray(npz.read_bytes())
    data[len(data) // 2] ^= 0xFF
    npz.write_bytes(bytes(data))
    with pytest.warns(CacheWarning, match=r"file target\.npz changed since it was written"):
        stage()
    assert stage.builds == 2


def test_a_truncated_array_file_is_a_warning_not_a_bad_zip_traceback(stage: Stage) -> None:
    npz = entry(stage) / "target.npz"
    npz.write_bytes(npz.read_bytes()[:100])
    with pytest.warns(CacheWarning, match=r"file target\.npz has 100 bytes"):
        assert stage()["ap"] == 0.108
    assert stage.builds == 2


def test_a_missing_file_is_a_warning_and_a_rebuild(stage: Stage) -> None:
    (entry(stage) / "target.npz").unlink()
    with pytest.warns(CacheWarning, match=r"file target\.npz is missing"):
        stage()
    assert stage.builds == 2


def test_an_entry_without_manifest_is_incomplete(stage: Stage) -> None:
    (entry(stage) / MANIFEST).unlink()  # as after a crash between writing the files and committing
    with pytest.warns(CacheWarning, match=r"accuracy/k1 .*has no manifest\.json"):
        stage()
    assert stage.builds == 2


def test_a_file_added_after_the_manifest_is_detected(stage: Stage) -> None:
    (entry(stage) / "model.int8.onnx").write_bytes(b"dropped in")
    with pytest.warns(CacheWarning, match=r"\['model\.int8\.onnx'\] are not in manifest\.json"):
        stage()
    assert stage.builds == 2
    assert not (entry(stage) / "model.int8.onnx").exists()  # the rebuild starts from an empty folder


def test_an_unreadable_manifest_is_a_warning(stage: Stage) -> None:
    (entry(stage) / MANIFEST).write_text("{not json")
    with pytest.warns(CacheWarning, match=r"manifest\.json is unreadable"):
        stage()
    assert stage.builds == 2


def test_a_verified_entry_that_does_not_load_is_rebuilt(tmp_path: Path) -> None:
    cache = StageCache(tmp_path)
    builds = []

    def build(folder: Path) -> tuple[int, dict[str, int]]:
        builds.append(1)
        return 1, {"version": len(builds)}

    def load(data: Any, folder: Path) -> int:
        raise KeyError("field written by another qc version")

    cache.cached("s", "k", build, load)
    with pytest.warns(CacheWarning, match=r"s/k .*does not load \(KeyError"):
        cache.cached("s", "k", build, load)
    assert len(builds) == 2


def test_an_absent_or_refreshed_entry_is_a_plain_miss(tmp_path: Path, recwarn: pytest.WarningsRecorder) -> None:
    stage = Stage(StageCache(tmp_path))
    stage()
    again = Stage(StageCache(tmp_path, refresh_since=time.time() + 1))
    again()
    assert again.builds == 1  # written before the refresh moment: rebuilt
    assert again.cache.misses == ["accuracy/k1"]
    assert not [w for w in recwarn if issubclass(w.category, CacheWarning)]


def test_json_entries_are_verified_too(tmp_path: Path) -> None:
    cache = StageCache(tmp_path)
    with cache.locked("compare", "k"):
        cache.save_json("compare", "k", {"sqnr_db": 41.5})
    result = tmp_path / "compare" / "k" / "result.json"
    result.write_text(result.read_text().replace("41.5", "91.5"))
    with cache.locked("compare", "k"), pytest.warns(CacheWarning, match="result.json changed"):
        assert cache.load_json("compare", "k") is None
    assert cache.problems
