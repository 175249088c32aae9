"""Detection containers and the inverse box mapping (network-input pixels -> original image pixels).

Coordinate conventions used by every module of :mod:`qc.eval`:

* boxes are ``x1, y1, x2, y2`` in continuous pixel coordinates (a box covering the whole ``W x H`` image is
  ``0, 0, W, H``);
* :class:`RawDetections` hold boxes in **network-input** pixels (what decoders produce);
* :class:`Detections` hold boxes in **original image** pixels (after :meth:`RawDetections.to_original`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np
import numpy.typing as npt

from qc.errors import DataError

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]


@runtime_checkable
class BoxInverse(Protocol):
    """Maps boxes from network-input pixels back to original image pixels (clipping to the image)."""

    def to_original(self, boxes_xyxy: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """Return an ``(N, 4)`` array of ``x1, y1, x2, y2`` boxes in original image pixels."""
        ...


def _check(name: str, boxes: Any, scores: Any, classes: Any) -> tuple[FloatArray, FloatArray, IntArray]:
    b = np.asarray(boxes, dtype=np.float32)
    s = np.asarray(scores, dtype=np.float32)
    c = np.asarray(classes, dtype=np.int64)
    if b.size == 0 and b.ndim != 2:
        b = b.reshape(0, 4)
    if b.ndim != 2 or b.shape[1] != 4:
        raise DataError(f"{name}.boxes must have shape (N, 4), got {b.shape}.")
    n = b.shape[0]
    if s.shape != (n,):
        raise DataError(f"{name}.scores must have shape ({n},) to match the boxes, got {s.shape}.")
    if c.shape != (n,):
        raise DataError(f"{name}.classes must have shape ({n},) to match the boxes, got {c.shape}.")
    return b, s, c


_B = TypeVar("_B", bound="_BoxSet")


@dataclass(frozen=True, eq=False, init=False)
class _BoxSet:
    """Boxes, scores and class indices of one image, converted and shape-checked on construction."""

    boxes: FloatArray
    scores: FloatArray
    classes: IntArray

    def __init__(self, boxes: npt.ArrayLike, scores: npt.ArrayLike, classes: npt.ArrayLike) -> None:
        b, s, c = _check(type(self).__name__, boxes, scores, classes)
        object.__setattr__(self, "boxes", b)
        object.__setattr__(self, "scores", s)
        object.__setattr__(self, "classes", c)

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @classmethod
    def empty(cls: type[_B]) -> _B:
        """No detections."""
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))


@dataclass(frozen=True, eq=False, init=False)
class RawDetections(_BoxSet):
    """Detections of one image in network-input pixels, as produced by a decoder.

    ``boxes`` float32 ``(N, 4)`` x1, y1, x2, y2; ``scores`` float32 ``(N,)``; ``classes`` int64 ``(N,)`` model
    class indices. Any array-like input is converted to those dtypes; a shape mismatch raises
    :class:`qc.errors.DataError`.
    """

    def to_original(self, inverse: BoxInverse) -> Detections:
        """Map the boxes to original image pixels with ``inverse`` (scores and classes unchanged)."""
        boxes = np.asarray(inverse.to_original(self.boxes), dtype=np.float32).reshape(-1, 4)
        return Detections(boxes, self.scores.copy(), self.classes.copy())


@dataclass(frozen=True, eq=False, init=False)
class Detections(_BoxSet):
    """Detections of one image in ORIGINAL image pixels.

    ``boxes`` float32 ``(N, 4)`` x1, y1, x2, y2; ``scores`` float32 ``(N,)``; ``classes`` int64 ``(N,)`` model
    class indices (map them to dataset category ids with :func:`qc.eval.coco.category_map_by_name`).
    """

    def above(self, threshold: float) -> Detections:
        """The detections whose score is ``>= threshold``."""
        keep = self.scores >= threshold
        return Detections(self.boxes[keep], self.scores[keep], self.classes[keep])
