"""Side-by-side pictures and the disagreement score."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from qc.errors import DataError
from qc.eval.pictures import disagreement, draw_side_by_side, picture_size
from qc.eval.types import Detections


def dets(boxes: list[list[float]], scores: list[float], classes: list[int]) -> Detections:
    return Detections(np.array(boxes, dtype=np.float32).reshape(-1, 4), np.array(scores), np.array(classes))


REF = dets([[10, 10, 50, 60], [60, 20, 90, 70]], [0.9, 0.6], [0, 1])
TGT = dets([[12, 10, 52, 60], [5, 5, 20, 20], [0, 0, 100, 80]], [0.8, 0.3, 0.1], [0, 2, 1])


def test_draw_side_by_side_writes_picture(tmp_path: Path) -> None:
    image = np.full((80, 100, 3), 128, dtype=np.uint8)
    out = tmp_path / "sub" / "pair.png"
    draw_side_by_side(image, REF, TGT, ["person", "car", "dog"], out, "img 1: disagreement 0.5")
    assert out.is_file()
    with Image.open(out) as im:
        assert im.size == picture_size(100, 80)
        assert im.size[0] > 200
        assert im.mode == "RGB"
        arr = np.asarray(im)
    # something was drawn on each panel (boxes are not grey)
    left = arr[24 : 24 + 80, :100]
    right = arr[24 : 24 + 80, 100 + 8 :]
    assert (left != 128).any()
    assert (right != 128).any()


def test_draw_rejects_bad_image(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"\(H, W, 3\) uint8"):
        draw_side_by_side(np.zeros((10, 10), np.uint8), REF, TGT, [], tmp_path / "x.png", "t")


def test_disagreement() -> None:
    assert disagreement(REF, REF) == 0.0
    assert disagreement(Detections.empty(), Detections.empty()) == 0.0
    assert disagreement(REF, Detections.empty()) == 1.0
    # target above 0.25: the matching person box and an unmatched dog box; reference: person + car -> F1 = 0.5
    assert disagreement(REF, TGT) == pytest.approx(0.5)
    wrong_class = Detections(REF.boxes, REF.scores, np.array([2, 2]))
    assert disagreement(REF, wrong_class) == 1.0
