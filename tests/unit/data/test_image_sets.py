"""Image sets: a COCO annotation file is validated as a whole (file: json.path errors); limits must be >= 1."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from qc.cli import build_parser
from qc.cliutil import positive_int
from qc.config import CocoData, ImageData
from qc.data.images import load_image_set
from qc.errors import ConfigError, DataError


def _coco(tmp_path: Path, n: int = 4) -> tuple[Path, dict[str, Any]]:
    images = tmp_path / "images"
    images.mkdir(exist_ok=True)
    for i in range(n):
        Image.fromarray(np.full((8, 8, 3), i, np.uint8)).save(images / f"{i}.png")
    coco: dict[str, Any] = {
        "images": [{"id": i + 1, "file_name": f"{i}.png", "width": 8, "height": 8} for i in range(n)],
        "annotations": [{"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": [1, 1, 4, 4]} for i in range(n)],
        "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "car"}],
    }
    return images, coco


def _load(tmp_path: Path, coco: dict[str, Any], images: Path, limit: int | None = None) -> int:
    ann = tmp_path / "annotations.json"
    ann.write_text(json.dumps(coco))
    return len(load_image_set(ImageData(coco=CocoData(annotations=ann, images=images)), limit=limit))


def test_valid_coco_loads(tmp_path: Path) -> None:
    images, coco = _coco(tmp_path)
    assert _load(tmp_path, coco, images) == 4
    assert _load(tmp_path, coco, images, limit=2) == 2


def test_every_coco_problem_is_reported_with_its_json_path(tmp_path: Path) -> None:
    images, coco = _coco(tmp_path)
    del coco["images"][0]["file_name"]
    coco["images"][3]["id"] = "abc"
    coco["annotations"][1]["bbox"] = [0, 0, -5, 3]
    coco["annotations"][2]["image_id"] = 99
    coco["annotations"][3]["category_id"] = 7
    coco["annotations"].append({"image_id": 1, "category_id": 1, "bbox": [0, 0, 1]})
    with pytest.raises(DataError) as info:
        _load(tmp_path, coco, images)
    text = str(info.value)
    assert "annotations.json: images[0].file_name: required field is missing" in text
    assert "annotations.json: images[3].id: Input should be a valid integer, found 'abc'" in text
    assert (
        "annotations.json: annotations[1]: bbox [x, y, w, h] needs w >= 0 and h >= 0, found [0.0, 0.0, -5.0, 3.0]"
        in text
    )
    assert "annotations.json: annotations[4].bbox" in text
    assert "annotations.json: annotations[2].image_id: no image has id 99" in text
    assert "annotations.json: annotations[3].category_id: no category has id 7" in text
    assert "(7 problem(s))" in text  # all at once, the image whose id is "abc" too


def test_cross_references_are_checked(tmp_path: Path) -> None:
    images, coco = _coco(tmp_path)
    coco["annotations"][2]["image_id"] = 99
    coco["annotations"][3]["category_id"] = 7
    coco["images"][1]["id"] = 1
    coco["images"][1]["file_name"] = "1.png"
    with pytest.raises(DataError) as info:
        _load(tmp_path, coco, images)
    text = str(info.value)
    assert "annotations.json: annotations[2].image_id: no image has id 99" in text
    assert "annotations.json: annotations[3].category_id: no category has id 7" in text
    assert "annotations.json: images[1].id: duplicate id 1 (also images[0])" in text


def test_not_a_coco_file(tmp_path: Path) -> None:
    images, _ = _coco(tmp_path)
    with pytest.raises(DataError, match=r"annotations.json: images: required field is missing"):
        _load(tmp_path, {"annotations": [], "categories": []}, images)
    (tmp_path / "annotations.json").write_bytes(b"\xff\xfe")
    with pytest.raises(DataError, match="cannot read COCO annotations"):
        load_image_set(ImageData(coco=CocoData(annotations=tmp_path / "annotations.json", images=images)))


@pytest.mark.parametrize("limit", [0, -1, -3])
def test_image_limit_below_one_is_refused(tmp_path: Path, limit: int) -> None:
    images, coco = _coco(tmp_path)
    with pytest.raises(ConfigError, match=f"at least 1, found {limit}"):
        _load(tmp_path, coco, images, limit=limit)
    with pytest.raises(ConfigError, match=f"at least 1, found {limit}"):
        load_image_set(ImageData(folder=images), limit=limit)


@pytest.mark.parametrize("text", ["0", "-1", "-3", "two"])
def test_cli_images_must_be_positive(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        positive_int(text)
    for command in ("compare", "eval", "diagnose", "hostsim"):
        with pytest.raises(SystemExit):
            build_parser().parse_args([command, "m", "--images", text])
        assert "--images: " in capsys.readouterr().err
    assert build_parser().parse_args(["compare", "m", "--images", "3"]).images == 3
