"""Vectorized, exact greedy non-maximum suppression in numpy.

Semantics (those of ``torchvision.ops.batched_nms``, with a defined tie order):

* candidates are visited in descending score order (equal scores: lower input index first);
* a candidate is suppressed when its IoU with an already KEPT candidate of the same class is
  ``> iou_threshold`` (``class_agnostic=True`` ignores classes);
* IoU uses continuous coordinates, in float64; a box with ``x2 <= x1`` or ``y2 <= y1`` has area 0 and IoU 0
  with everything (so a degenerate box never suppresses and is never suppressed);
* at most ``max_detections`` indices are returned (the highest-scoring kept ones).

Exact greedy NMS without a Python loop per box: candidates are taken in score order in chunks (sorted
lazily, so a long tail of low scores is never sorted once ``max_detections`` boxes are kept). Only same-class
pairs are formed (sparse, the equivalent of the class-offset trick); a chunk's candidates are first checked
against the boxes already kept, then decided by a fixpoint iteration over the "may suppress" pairs: a box is
kept once every candidate that could suppress it is removed, and removed once a kept box suppresses it (a few
rounds in practice, each one vectorized).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

from qc.errors import DataError
from qc.eval.types import RawDetections

Float64Array = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.int64]

_BLOCK = 512


def box_area(boxes: npt.NDArray[np.floating]) -> Float64Array:
    """Area of ``(N, 4)`` x1, y1, x2, y2 boxes, 0 for degenerate boxes."""
    b = np.asarray(boxes, dtype=np.float64)
    w = np.maximum(b[:, 2] - b[:, 0], 0.0)
    h = np.maximum(b[:, 3] - b[:, 1], 0.0)
    out: Float64Array = w * h
    return out


def box_iou(a: npt.NDArray[np.floating], b: npt.NDArray[np.floating]) -> Float64Array:
    """Pairwise IoU ``(N, M)`` of x1, y1, x2, y2 boxes, computed in float64; 0 where the union is 0."""
    a64 = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b64 = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    iw = np.maximum(np.minimum(a64[:, None, 2], b64[None, :, 2]) - np.maximum(a64[:, None, 0], b64[None, :, 0]), 0.0)
    ih = np.maximum(np.minimum(a64[:, None, 3], b64[None, :, 3]) - np.maximum(a64[:, None, 1], b64[None, :, 1]), 0.0)
    inter = iw * ih
    union = box_area(a64)[:, None] + box_area(b64)[None, :] - inter
    out = np.zeros_like(inter)
    np.divide(inter, union, out=out, where=union > 0)
    result: Float64Array = out
    return result


def pair_iou(a: npt.NDArray[np.floating], b: npt.NDArray[np.floating]) -> Float64Array:
    """Element-wise IoU of two ``(P, 4)`` box arrays (same arithmetic as :func:`box_iou`)."""
    a64 = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b64 = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    iw = np.maximum(np.minimum(a64[:, 2], b64[:, 2]) - np.maximum(a64[:, 0], b64[:, 0]), 0.0)
    ih = np.maximum(np.minimum(a64[:, 3], b64[:, 3]) - np.maximum(a64[:, 1], b64[:, 1]), 0.0)
    inter = iw * ih
    union = box_area(a64) + box_area(b64) - inter
    out = np.zeros_like(inter)
    np.divide(inter, union, out=out, where=union > 0)
    result: Float64Array = out
    return result


class _Cols:
    """Boxes as contiguous float64 columns plus areas, for fast pair gathers."""

    __slots__ = ("area", "x1", "x2", "y1", "y2")

    def __init__(self, boxes: Float64Array) -> None:
        t = np.ascontiguousarray(boxes.T)
        self.x1, self.y1, self.x2, self.y2 = t[0], t[1], t[2], t[3]
        self.area = np.maximum(self.x2 - self.x1, 0.0) * np.maximum(self.y2 - self.y1, 0.0)


def _iou_pairs(a: _Cols, ia: IndexArray, b: _Cols, ib: IndexArray) -> Float64Array:
    """IoU of boxes ``a[ia[k]]`` and ``b[ib[k]]`` (same arithmetic as :func:`box_iou`)."""
    iw = np.maximum(np.minimum(a.x2[ia], b.x2[ib]) - np.maximum(a.x1[ia], b.x1[ib]), 0.0)
    ih = np.maximum(np.minimum(a.y2[ia], b.y2[ib]) - np.maximum(a.y1[ia], b.y1[ib]), 0.0)
    inter = iw * ih
    union = a.area[ia] + b.area[ib] - inter
    out = np.zeros_like(inter)
    np.divide(inter, union, out=out, where=union > 0)
    result: Float64Array = out
    return result


def _expand(starts: IndexArray, counts: IndexArray) -> IndexArray:
    """Concatenation of ``arange(start, start + count)`` for every (start, count), vectorized."""
    total = int(counts.sum())
    offsets = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    out: IndexArray = np.repeat(starts, counts) + offsets
    return out


def _pairs_within(classes: IndexArray) -> tuple[IndexArray, IndexArray]:
    """All index pairs ``(i, j)``, ``i < j``, of elements with the same class."""
    m = classes.shape[0]
    order = np.argsort(classes, kind="stable").astype(np.int64)  # ascending index inside each class
    cs = classes[order]
    pos = np.arange(m, dtype=np.int64)
    first = np.ones(m, dtype=np.bool_)
    first[1:] = cs[1:] != cs[:-1]
    group_start = np.maximum.accumulate(np.where(first, pos, 0))
    counts = pos - group_start  # earlier elements of the same class
    j_sorted = np.repeat(pos, counts)
    i_sorted = _expand(group_start, counts)
    return order[i_sorted], order[j_sorted]


def _pairs_across(kept_classes: IndexArray, classes: IndexArray) -> tuple[IndexArray, IndexArray]:
    """All pairs ``(k, j)`` of a kept element ``k`` and an element ``j`` with the same class."""
    order = np.argsort(kept_classes, kind="stable").astype(np.int64)
    ks = kept_classes[order]
    lo = np.searchsorted(ks, classes, side="left").astype(np.int64)
    hi = np.searchsorted(ks, classes, side="right").astype(np.int64)
    counts = hi - lo
    j = np.repeat(np.arange(classes.shape[0], dtype=np.int64), counts)
    return order[_expand(lo, counts)], j


def _greedy(boxes: Float64Array, classes: IndexArray, iou_threshold: float) -> npt.NDArray[np.bool_]:
    """Exact greedy NMS of score-sorted ``boxes`` (no previously kept boxes): the mask of kept boxes."""
    m = boxes.shape[0]
    if m <= 1:
        return np.ones(m, dtype=np.bool_)
    pi, pj = _pairs_within(classes)
    cols = _Cols(boxes)
    hit = _iou_pairs(cols, pi, cols, pj) > iou_threshold
    pi, pj = pi[hit], pj[hit]  # pi < pj: pi suppresses pj if pi is kept
    if pi.size == 0:
        return np.ones(m, dtype=np.bool_)
    kept = np.zeros(m, dtype=np.bool_)
    removed = np.zeros(m, dtype=np.bool_)
    undecided = np.ones(m, dtype=np.bool_)
    # A box is kept once all its possible suppressors are removed, removed once a kept box suppresses it.
    # Each round decides at least the first undecided box, so this terminates; in practice in a few rounds.
    while True:
        live_suppressor = np.zeros(m, dtype=np.bool_)
        live_suppressor[pj[~removed[pi]]] = True
        newly_kept = undecided & ~live_suppressor
        kept |= newly_kept
        undecided &= ~newly_kept
        if not undecided.any():
            return kept
        kept_suppressor = np.zeros(m, dtype=np.bool_)
        kept_suppressor[pj[kept[pi]]] = True
        newly_removed = undecided & kept_suppressor
        removed |= newly_removed
        undecided &= ~newly_removed
        if not undecided.any():
            return kept


def _score_chunks(scores: npt.NDArray[np.floating], size: int) -> Iterator[IndexArray]:
    """Indices in descending score order (ties by ascending index), ``size`` at a time, sorting lazily."""
    s = np.asarray(scores)
    remaining: IndexArray | None = None  # None: every index
    while True:
        vals = s if remaining is None else s[remaining]
        count = vals.shape[0]
        if count == 0:
            return
        take: npt.NDArray[np.bool_] | None = None
        if count <= size:
            sel = np.arange(count, dtype=np.int64) if remaining is None else remaining
        else:
            kth = np.partition(vals, count - size)[count - size]
            take = vals >= kth  # every tie of the boundary score: the order stays exact
            sel = np.flatnonzero(take) if remaining is None else remaining[take]
        ordered = sel[np.argsort(-s[sel], kind="stable")]
        for start in range(0, ordered.size, size):
            yield ordered[start : start + size]
        if take is None:
            return
        remaining = np.flatnonzero(~take) if remaining is None else remaining[~take]


def nms_indices(
    boxes: npt.NDArray[np.floating],
    scores: npt.NDArray[np.floating],
    classes: npt.NDArray[np.integer] | None,
    iou_threshold: float,
    max_detections: int | None = None,
    *,
    box_index: npt.NDArray[np.integer] | None = None,
    chunk_size: int = _BLOCK,
) -> IndexArray:
    """:func:`nms` where candidate ``i`` has box ``boxes[box_index[i]]`` (the classes of one anchor share a
    box: no copy of boxes per candidate). ``classes=None`` is class-agnostic. ``chunk_size`` (candidates sorted
    and decided at a time) only affects speed, never the result."""
    s = np.asarray(scores).reshape(-1)
    n = s.shape[0]
    b = np.asarray(boxes).reshape(-1, 4)
    bidx = None if box_index is None else np.asarray(box_index, dtype=np.int64).reshape(-1)
    if (b.shape[0] if bidx is None else bidx.shape[0]) != n:
        raise DataError(f"nms got {b.shape[0] if bidx is None else bidx.shape[0]} boxes but {n} scores.")
    if classes is None:
        c = np.zeros(n, dtype=np.int64)
    else:
        c = np.asarray(classes, dtype=np.int64).reshape(-1)
        if c.shape[0] != n:
            raise DataError(f"nms got {n} scores but {c.shape[0]} classes.")
    limit = n if max_detections is None else max(0, int(max_detections))
    if n == 0 or limit == 0:
        return np.zeros(0, dtype=np.int64)

    kept_parts: list[IndexArray] = []
    kept_boxes = np.zeros((0, 4), dtype=np.float64)
    kept_classes = np.zeros(0, dtype=np.int64)
    total = 0
    for chunk in _score_chunks(s, max(1, int(chunk_size))):
        bb = (b[chunk] if bidx is None else b[bidx[chunk]]).astype(np.float64)
        cc = c[chunk]
        if total > 0:
            pk, pj = _pairs_across(kept_classes, cc)
            hit = _iou_pairs(_Cols(kept_boxes), pk, _Cols(bb), pj) > iou_threshold
            if hit.any():
                suppressed = np.zeros(chunk.size, dtype=np.bool_)
                suppressed[pj[hit]] = True
                alive = np.flatnonzero(~suppressed)
                if alive.size == 0:
                    continue
                chunk, bb, cc = chunk[alive], bb[alive], cc[alive]
        keep = _greedy(bb, cc, iou_threshold)
        kept_parts.append(chunk[keep])
        kept_boxes = np.concatenate([kept_boxes, bb[keep]])
        kept_classes = np.concatenate([kept_classes, cc[keep]])
        total += int(np.count_nonzero(keep))
        if total >= limit:
            break
    out: IndexArray = np.concatenate(kept_parts)[:limit].astype(np.int64)
    return out


def nms(
    boxes: npt.NDArray[np.floating],
    scores: npt.NDArray[np.floating],
    classes: npt.NDArray[np.integer] | None,
    iou_threshold: float,
    max_detections: int | None = None,
    *,
    class_agnostic: bool = False,
) -> IndexArray:
    """Exact greedy NMS; returns indices into the inputs of the kept boxes, by descending score.

    ``classes=None`` or ``class_agnostic=True`` suppresses across classes. Scores must not be NaN (use
    :func:`select` to filter first).
    """
    return nms_indices(boxes, scores, None if class_agnostic else classes, iou_threshold, max_detections)


def score_mask(
    boxes: npt.NDArray[np.floating], scores: npt.NDArray[np.floating], threshold: float
) -> npt.NDArray[np.bool_]:
    """Candidates to keep before NMS: ``score >= threshold`` and a finite score and box."""
    s = np.asarray(scores)
    mask: npt.NDArray[np.bool_] = (s >= threshold) & np.isfinite(s) & np.isfinite(np.asarray(boxes)).all(axis=1)
    return mask


def select(
    boxes: npt.NDArray[np.floating],
    scores: npt.NDArray[np.floating],
    classes: npt.NDArray[np.integer],
    *,
    score_threshold: float,
    iou_threshold: float,
    max_detections: int,
    class_agnostic: bool = False,
) -> RawDetections:
    """Score-threshold filtering (:func:`score_mask`) then per-class NMS: the final detections of one
    image."""
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    s = np.asarray(scores, dtype=np.float32).reshape(-1)
    c = np.asarray(classes, dtype=np.int64).reshape(-1)
    keep = score_mask(b, s, score_threshold)
    b, s, c = b[keep], s[keep], c[keep]
    idx = nms(b, s, c, iou_threshold, max_detections, class_agnostic=class_agnostic)
    return RawDetections(b[idx], s[idx], c[idx])
