"""NMS against a plain Python greedy reference (examples and a hypothesis property test)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qc.eval.nms import box_iou, nms, nms_indices, pair_iou, select


def ref_iou(a: Sequence[float], b: Sequence[float]) -> float:
    iw = max(min(a[2], b[2]) - max(a[0], b[0]), 0.0)
    ih = max(min(a[3], b[3]) - max(a[1], b[1]), 0.0)
    inter = iw * ih
    area_a = max(a[2] - a[0], 0.0) * max(a[3] - a[1], 0.0)
    area_b = max(b[2] - b[0], 0.0) * max(b[3] - b[1], 0.0)
    union = area_a + area_b - inter
    return inter / union if union > 0 else 0.0


def ref_nms(
    boxes: npt.NDArray[np.float64],
    scores: npt.NDArray[np.float32],
    classes: npt.NDArray[np.int64] | None,
    thr: float,
    max_det: int | None,
) -> list[int]:
    """Textbook greedy NMS: visit by descending score (ties: lower index first), keep unless a kept box of the
    same class overlaps with IoU > thr."""
    n = len(scores)
    order = sorted(range(n), key=lambda i: (-float(scores[i]), i))
    bl = boxes.tolist()
    kept: list[int] = []
    for i in order:
        if max_det is not None and len(kept) >= max_det:
            break
        if all((classes is not None and classes[k] != classes[i]) or ref_iou(bl[k], bl[i]) <= thr for k in kept):
            kept.append(i)
    return kept


def test_simple_overlap_same_and_different_class() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10], [50, 50, 60, 60]], dtype=np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6], dtype=np.float32)
    classes = np.array([0, 0, 1, 0])
    assert nms(boxes, scores, classes, 0.5).tolist() == [0, 2, 3]
    assert nms(boxes, scores, classes, 0.5, class_agnostic=True).tolist() == [0, 3]
    assert nms(boxes, scores, None, 0.5).tolist() == [0, 3]
    assert nms(boxes, scores, classes, 0.5, max_detections=2).tolist() == [0, 2]


def test_degenerate_boxes_never_suppress() -> None:
    boxes = np.array([[5, 5, 5, 5], [5, 5, 5, 5], [10, 0, 0, 10], [0, 0, 10, 10]], dtype=np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6], dtype=np.float32)
    assert nms(boxes, scores, np.zeros(4, np.int64), 0.0).tolist() == [0, 1, 2, 3]
    iou = box_iou(boxes, boxes)
    assert np.all(np.isfinite(iou))
    assert iou[0, 1] == 0.0
    assert iou[3, 3] == 1.0


def test_ties_keep_input_order_and_threshold_is_strict() -> None:
    # IoU of these two boxes is exactly 0.5: suppressed only when the threshold is below 0.5.
    boxes = np.array([[0, 0, 2, 1], [0, 0, 1, 1], [1, 0, 3, 1]], dtype=np.float32)
    assert ref_iou([0, 0, 2, 1], [0, 0, 1, 1]) == 0.5
    scores = np.array([0.5, 0.5, 0.5], dtype=np.float32)
    assert nms(boxes, scores, None, 0.5).tolist() == [0, 1, 2]
    assert nms(boxes, scores, None, 0.49).tolist() == [0, 2]  # box 2 overlaps box 0 with IoU 1/3


def test_empty_inputs() -> None:
    assert nms(np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64), 0.5).size == 0
    assert nms(np.ones((3, 4)), np.ones(3), None, 0.5, max_detections=0).size == 0
    out = select(np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64), score_threshold=0.1, iou_threshold=0.5,
                 max_detections=10)  # fmt: skip
    assert len(out) == 0


def test_select_filters_scores_and_non_finite() -> None:
    boxes = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [np.nan, 0, 1, 1], [40, 40, 50, 50]], dtype=np.float32)
    scores = np.array([0.9, 0.0005, 0.8, np.nan], dtype=np.float32)
    out = select(boxes, scores, np.zeros(4, np.int64), score_threshold=0.001, iou_threshold=0.5, max_detections=10)
    np.testing.assert_array_equal(out.boxes, boxes[:1])
    assert out.scores.tolist() == pytest.approx([0.9])


def test_pair_iou_matches_box_iou() -> None:
    rng = np.random.default_rng(3)
    a = rng.uniform(0, 50, (30, 4))
    b = rng.uniform(0, 50, (30, 4))
    np.testing.assert_array_equal(pair_iou(a, b), np.diag(box_iou(a, b)))


@pytest.mark.parametrize("chunk", [1, 7, 512])
def test_large_random_matches_reference(chunk: int) -> None:
    """Many candidates, equal scores across chunk boundaries, three classes, several chunks."""
    rng = np.random.default_rng(chunk)
    n = 700
    xy = rng.uniform(0, 200, (n, 2))
    wh = rng.uniform(1, 60, (n, 2))
    boxes = np.concatenate([xy, xy + wh], axis=1)
    scores = rng.choice(np.linspace(0.01, 1.0, 40), n).astype(np.float32)
    classes = rng.integers(0, 3, n)
    for max_det in (None, 100):
        got = nms_indices(boxes, scores, classes, 0.45, max_det, chunk_size=chunk)
        assert got.tolist() == ref_nms(boxes, scores, classes, 0.45, max_det)


coord = st.integers(min_value=0, max_value=12).map(float)


@st.composite
def nms_case(draw: st.DrawFn) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    n = draw(st.integers(min_value=0, max_value=40))
    boxes = np.array(draw(st.lists(st.tuples(coord, coord, coord, coord), min_size=n, max_size=n)), np.float64)
    boxes = boxes.reshape(n, 4)
    levels = [0.1, 0.2, 0.3, 0.5, 0.9]
    scores = np.array(draw(st.lists(st.sampled_from(levels), min_size=n, max_size=n)), np.float32)
    classes = np.array(draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)), np.int64)
    return boxes, scores, classes


@settings(max_examples=300, deadline=None)
@given(
    case=nms_case(),
    thr=st.sampled_from([0.0, 0.25, 1 / 3, 0.5, 0.65, 1.0]),
    max_det=st.one_of(st.none(), st.integers(1, 10)),
    agnostic=st.booleans(),
    chunk=st.sampled_from([1, 2, 3, 512]),
)
def test_nms_equals_reference(
    case: tuple[npt.NDArray[np.float64], npt.NDArray[np.float32], npt.NDArray[np.int64]],
    thr: float,
    max_det: int | None,
    agnostic: bool,
    chunk: int,
) -> None:
    boxes, scores, classes = case
    cls = None if agnostic else classes
    got = nms_indices(boxes, scores, cls, thr, max_det, chunk_size=chunk)
    assert got.tolist() == ref_nms(boxes, scores, cls, thr, max_det)
