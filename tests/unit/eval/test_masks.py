"""Ground-truth label masks from COCO polygons / RLE and from VOC-style PNG / NPY folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from qc.errors import DataError
from qc.eval.masks import CocoMasks, FolderMasks
from qc.eval.segmentation import IGNORE


def _coco(tmp_path: Path) -> Path:
    square = np.zeros((20, 30), np.uint8, order="F")
    square[2:8, 20:28] = 1
    rle = mask_utils.encode(np.asfortranarray(square))
    rle["counts"] = rle["counts"].decode()
    crowd = np.zeros((20, 30), np.uint8)
    crowd[15:20, 0:5] = 1
    crowd_rle = mask_utils.encode(np.asfortranarray(crowd))
    crowd_rle["counts"] = crowd_rle["counts"].decode()
    data = {
        "images": [{"id": 7, "file_name": "sub/a.jpg", "width": 30, "height": 20}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 3, "segmentation": [[2, 2, 12, 2, 12, 12, 2, 12]], "iscrowd": 0},
            {"id": 2, "image_id": 7, "category_id": 5, "segmentation": rle, "iscrowd": 0},
            {"id": 3, "image_id": 7, "category_id": 9, "segmentation": [[8, 8, 16, 8, 16, 16, 8, 16]], "iscrowd": 0},
            {"id": 4, "image_id": 7, "category_id": 3, "segmentation": crowd_rle, "iscrowd": 1},
        ],
        "categories": [{"id": 3, "name": "a"}, {"id": 5, "name": "b"}, {"id": 9, "name": "c"}],
    }
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    return path


def test_coco_categories_polygons_rle_and_crowd(tmp_path: Path) -> None:
    masks = CocoMasks(_coco(tmp_path), category_labels={3: 1, 5: 2})
    m = masks.mask("a.jpg")
    assert m.shape == (20, 30)
    assert m[5, 5] == 1  # polygon
    assert m[4, 24] == 2  # RLE
    assert m[14, 14] == 0  # category 9 unlisted: background, painted over the first polygon
    assert m[10, 10] == 0
    assert m[17, 2] == IGNORE  # crowd region
    assert masks.names() == ["a.jpg"]


def test_coco_foreground_rule(tmp_path: Path) -> None:
    m = CocoMasks(_coco(tmp_path), foreground=True).mask("a.jpg")
    assert set(np.unique(m).tolist()) == {IGNORE, 0, 1}
    assert m[14, 14] == 1  # every annotated object is foreground
    with pytest.raises(DataError, match="no image named"):
        CocoMasks(_coco(tmp_path), foreground=True).mask("b.jpg")
    with pytest.raises(DataError, match="either category_labels or foreground"):
        CocoMasks(_coco(tmp_path))


def test_folder_png_palette_void_and_npy(tmp_path: Path) -> None:
    from PIL import Image

    arr = np.zeros((6, 8), np.uint8)
    arr[1:3, 1:3] = 15
    arr[0, :] = 255
    pic = Image.fromarray(arr, mode="L").convert("P")
    pic.putpalette([0, 0, 0] * 256)
    Image.fromarray(arr).save(tmp_path / "x.png")
    np.save(tmp_path / "y.npy", np.array([[0, 1], [-1, 2]], np.int16))
    folder = FolderMasks(tmp_path)
    m = folder.mask("dir/x.jpg", (6, 8))
    assert m[1, 1] == 15
    assert (m[0] == IGNORE).all()
    assert folder.mask("y.jpg").tolist() == [[0, 1], [IGNORE, 2]]
    with pytest.raises(DataError, match="mask is"):
        folder.mask("x.jpg", (5, 8))
    with pytest.raises(DataError, match="no label mask"):
        folder.mask("z.jpg")
    Image.new("RGB", (2, 2)).save(tmp_path / "rgb.png")
    with pytest.raises(DataError, match="palette or gray"):
        folder.mask("rgb.jpg")
