"""The :class:`Poses` container (people of one image in original pixels), COCO keypoint constants, and the
mapping of points and poses from network-input pixels to original pixels."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from qc.data.preprocess import Transform
from qc.errors import ConfigError, DataError

FloatArray = npt.NDArray[np.float32]

COCO_KEYPOINT_NAMES: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
    "right_ankle",
)  # fmt: skip
#: COCO's per-keypoint OKS sigmas (pycocotools ``kpt_oks_sigmas``), in :data:`COCO_KEYPOINT_NAMES` order.
COCO_SIGMAS: tuple[float, ...] = (
    0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107, 0.087, 0.087,
    0.089, 0.089,
)  # fmt: skip
#: MediaPipe pose landmark indices (33 points) of COCO's 17 keypoints, in COCO order.
MEDIAPIPE_POSE_TO_COCO: tuple[int, ...] = (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)


@dataclass(frozen=True, eq=False, init=False)
class Poses:
    """People of one image: ``boxes (N, 4)`` x1, y1, x2, y2, ``scores (N,)``, ``keypoints (N, K, 3)`` x, y,
    score. Shapes are checked on construction (:class:`qc.errors.DataError`)."""

    boxes: FloatArray
    scores: FloatArray
    keypoints: FloatArray

    def __init__(self, boxes: npt.ArrayLike, scores: npt.ArrayLike, keypoints: npt.ArrayLike) -> None:
        b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        s = np.asarray(scores, dtype=np.float32).reshape(-1)
        k = np.asarray(keypoints, dtype=np.float32)
        n = b.shape[0]
        if s.shape != (n,):
            raise DataError(f"Poses.scores must have shape ({n},) to match the boxes, got {s.shape}.")
        if k.size == 0 and n == 0:
            k = k.reshape(0, k.shape[1] if k.ndim == 3 else 0, 3)
        if k.ndim != 3 or k.shape[0] != n or k.shape[2] != 3:
            raise DataError(f"Poses.keypoints must have shape ({n}, K, 3), got {k.shape}.")
        object.__setattr__(self, "boxes", b)
        object.__setattr__(self, "scores", s)
        object.__setattr__(self, "keypoints", k)

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @property
    def num_keypoints(self) -> int:
        return int(self.keypoints.shape[1])

    def select_keypoints(self, index: Sequence[int]) -> Poses:
        """The same people with keypoints ``index`` only (a keypoint map, e.g. :data:`MEDIAPIPE_POSE_TO_COCO`)."""
        idx = [int(i) for i in index]
        bad = [i for i in idx if not 0 <= i < self.num_keypoints]
        if bad:
            raise ConfigError(f"keypoint map indices {bad} are out of range for {self.num_keypoints} keypoints.")
        return Poses(self.boxes, self.scores, self.keypoints[:, idx])

    def above(self, threshold: float) -> Poses:
        keep = self.scores >= threshold
        return Poses(self.boxes[keep], self.scores[keep], self.keypoints[keep])

    @classmethod
    def stack(cls, people: Sequence[Poses], num_keypoints: int) -> Poses:
        """One image's people from single-person results (e.g. one top-down crop each)."""
        if not people:
            return cls(np.zeros((0, 4)), np.zeros(0), np.zeros((0, num_keypoints, 3)))
        return cls(
            np.concatenate([p.boxes for p in people]),
            np.concatenate([p.scores for p in people]),
            np.concatenate([p.keypoints for p in people]),
        )


def points_to_original(points_xy: npt.ArrayLike, transform: Transform) -> FloatArray:
    """Map ``(..., 2)`` points from network-input pixels to original pixels (no clipping: a point may lie
    outside the image)."""
    p = np.array(points_xy, dtype=np.float32, copy=True)
    p[..., 0] = (p[..., 0] - transform.pad_x) / transform.scale_x
    p[..., 1] = (p[..., 1] - transform.pad_y) / transform.scale_y
    return p


def poses_to_original(poses: Poses, transform: Transform) -> Poses:
    """Boxes (clipped) and keypoints (not clipped) of network-pixel poses mapped to original pixels."""
    k = poses.keypoints.copy()
    k[:, :, :2] = points_to_original(k[:, :, :2], transform)
    return Poses(transform.to_original(poses.boxes), poses.scores, k)
