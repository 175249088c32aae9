"""Detection containers and the inverse box mappings."""

from __future__ import annotations

import numpy as np
import pytest

from qc.data.preprocess import Transform
from qc.errors import DataError
from qc.eval.types import BoxInverse, Detections, RawDetections


def test_letterbox_inverse_maps_and_clips() -> None:
    # 640x480 image letterboxed into 320x320: scale 0.5, resized 320x240, padded 40 px top and bottom.
    inv = Transform(scale_x=0.5, scale_y=0.5, pad_x=0.0, pad_y=40.0, orig_w=640, orig_h=480)
    boxes = np.array([[10, 50, 110, 90], [-5, 0, 330, 300]], dtype=np.float32)
    out = inv.to_original(boxes)
    np.testing.assert_allclose(out[0], [20, 20, 220, 100])
    np.testing.assert_allclose(out[1], [0, 0, 640, 480])  # clipped to the image
    np.testing.assert_allclose(boxes[0], [10, 50, 110, 90])  # input untouched


def test_resize_inverse_has_independent_scales() -> None:
    inv = Transform(scale_x=0.5, scale_y=0.25, pad_x=0.0, pad_y=0.0, orig_w=200, orig_h=400)
    out = inv.to_original(np.array([[10, 10, 50, 90]], dtype=np.float32))
    np.testing.assert_allclose(out, [[20, 40, 100, 360]])


def test_preprocessing_transform_satisfies_protocol() -> None:
    assert isinstance(Transform(1.0, 1.0, 0, 0, 1, 1), BoxInverse)


def test_raw_to_original_keeps_scores_and_classes() -> None:
    raw = RawDetections(np.array([[0, 0, 10, 10]]), np.array([0.5]), np.array([3]))
    det = raw.to_original(Transform(0.5, 0.5, 0, 0, 100, 100))
    assert isinstance(det, Detections)
    np.testing.assert_allclose(det.boxes, [[0, 0, 20, 20]])
    assert det.scores.dtype == np.float32
    assert det.classes.dtype == np.int64
    assert det.classes.tolist() == [3]


def test_shapes_are_validated() -> None:
    with pytest.raises(DataError, match=r"boxes must have shape \(N, 4\)"):
        Detections(np.zeros((2, 3)), np.zeros(2), np.zeros(2))
    with pytest.raises(DataError, match="scores"):
        Detections(np.zeros((2, 4)), np.zeros(3), np.zeros(2))
    with pytest.raises(DataError, match="classes"):
        RawDetections(np.zeros((2, 4)), np.zeros(2), np.zeros(1))
    with pytest.raises(DataError, match="scale"):
        Transform(0.0, 0.0, 0, 0, 1, 1)


def test_empty_and_above() -> None:
    assert len(Detections.empty()) == 0
    assert RawDetections.empty().boxes.shape == (0, 4)
    det = Detections(np.zeros((3, 4)), np.array([0.1, 0.25, 0.9]), np.array([0, 1, 2]))
    assert det.above(0.25).classes.tolist() == [1, 2]
