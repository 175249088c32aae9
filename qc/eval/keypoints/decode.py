"""Keypoint decoders: one top-down crop's regression or heatmap outputs, and YOLO-pose heads (score filter + NMS)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from qc.data.preprocess import Transform
from qc.errors import ConfigError, DataError
from qc.eval.keypoints.poses import FloatArray, Poses, points_to_original
from qc.eval.nms import nms, score_mask


def _activate(x: npt.NDArray[Any], activation: str) -> FloatArray:
    if activation == "sigmoid":
        out: FloatArray = (1.0 / (1.0 + np.exp(-np.clip(np.asarray(x, np.float64), -60, 60)))).astype(np.float32)
        return out
    if activation == "none":
        return np.asarray(x, dtype=np.float32)
    raise ConfigError(f"unknown activation {activation!r} (expected 'sigmoid' or 'none').")


@dataclass(frozen=True)
class RegressionSpec:
    """How a top-down model's landmark tensor is laid out.

    ``values_per_point`` numbers per point (MediaPipe pose: 5 = x, y, z, visibility, presence), of which
    ``x_index``, ``y_index`` and ``score_index`` (None: every point scores 1) are used; the first
    ``num_keypoints`` points are kept (MediaPipe: 33 of 39, the rest are auxiliary). ``coordinates`` are
    ``pixels`` of the network input or ``normalized`` to [0, 1]; ``score_activation`` is applied to the score
    value (MediaPipe: sigmoid of a logit).
    """

    num_keypoints: int
    values_per_point: int = 3
    x_index: int = 0
    y_index: int = 1
    score_index: int | None = 2
    score_activation: Literal["sigmoid", "none"] = "none"
    coordinates: Literal["pixels", "normalized"] = "pixels"

    def __post_init__(self) -> None:
        used = [self.x_index, self.y_index] + ([self.score_index] if self.score_index is not None else [])
        if self.num_keypoints < 1 or any(not 0 <= i < self.values_per_point for i in used):
            raise ConfigError(
                f"RegressionSpec: num_keypoints must be >= 1 and x/y/score indices in [0, {self.values_per_point}), "
                f"got num_keypoints={self.num_keypoints}, indices={used}."
            )


def decode_regression(landmarks: npt.ArrayLike, spec: RegressionSpec, input_hw: tuple[int, int]) -> FloatArray:
    """One crop's ``(K, 3)`` keypoints (x, y in network-input pixels, score) from a flat landmark tensor."""
    flat = np.asarray(landmarks, dtype=np.float32).reshape(-1)
    if flat.size % spec.values_per_point or flat.size // spec.values_per_point < spec.num_keypoints:
        raise DataError(
            f"landmark tensor has {flat.size} values: expected a multiple of {spec.values_per_point} with at least "
            f"{spec.num_keypoints} points."
        )
    pts = flat.reshape(-1, spec.values_per_point)[: spec.num_keypoints]
    x, y = pts[:, spec.x_index].copy(), pts[:, spec.y_index].copy()
    if spec.coordinates == "normalized":
        x *= input_hw[1]
        y *= input_hw[0]
    s = np.ones_like(x) if spec.score_index is None else _activate(pts[:, spec.score_index], spec.score_activation)
    return np.stack([x, y, s], axis=1).astype(np.float32)


def decode_heatmaps(heatmaps: npt.ArrayLike, input_hw: tuple[int, int]) -> FloatArray:
    """One crop's ``(K, 3)`` keypoints from ``(K, h, w)`` heatmaps (batch axis allowed): the argmax cell's
    centre moved a quarter cell towards the higher neighbour (HRNet/SimpleBaseline), scaled to input pixels;
    score = the heatmap maximum."""
    hm = np.asarray(heatmaps, dtype=np.float32)
    if hm.ndim == 4 and hm.shape[0] == 1:
        hm = hm[0]
    if hm.ndim != 3:
        raise DataError(f"heatmaps must have shape (K, h, w) or (1, K, h, w), got {hm.shape}.")
    k, h, w = hm.shape
    flat = hm.reshape(k, -1)
    idx = flat.argmax(axis=1)
    py, px = (idx // w).astype(np.int64), (idx % w).astype(np.int64)
    rows = np.arange(k)
    x = px.astype(np.float32)
    y = py.astype(np.float32)
    right, left = hm[rows, py, np.minimum(px + 1, w - 1)], hm[rows, py, np.maximum(px - 1, 0)]
    down, up = hm[rows, np.minimum(py + 1, h - 1), px], hm[rows, np.maximum(py - 1, 0), px]
    inner_x, inner_y = (px > 0) & (px < w - 1), (py > 0) & (py < h - 1)
    x += np.where(inner_x, 0.25 * np.sign(right - left), 0.0).astype(np.float32)
    y += np.where(inner_y, 0.25 * np.sign(down - up), 0.0).astype(np.float32)
    # cell centres (x + 0.5) in heatmap cells -> input pixels
    out_x = (x + 0.5) * (input_hw[1] / w)
    out_y = (y + 0.5) * (input_hw[0] / h)
    return np.stack([out_x, out_y, flat.max(axis=1)], axis=1).astype(np.float32)


def top_down_person(
    keypoints_net: npt.ArrayLike, transform: Transform, box_xyxy: Sequence[float], person_score: float = 1.0
) -> Poses:
    """A one-person :class:`Poses` in original pixels from a crop's ``(K, 3)`` network-pixel keypoints."""
    k = np.array(keypoints_net, dtype=np.float32, copy=True)
    k[:, :2] = points_to_original(k[:, :2], transform)
    return Poses(np.asarray(box_xyxy, np.float32)[None], [person_score], k[None])


@dataclass(frozen=True)
class YoloPoseSpec:
    """A YOLO-pose head ``(1, 4 + classes + 3K, anchors)`` (or transposed): cx, cy, w, h in input pixels,
    class scores, then x, y, visibility per keypoint (already decoded, visibility a probability, as exported by
    Ultralytics)."""

    num_keypoints: int = 17
    num_classes: int = 1
    score_threshold: float = 0.001
    iou_threshold: float = 0.65
    max_detections: int = 100
    visibility_activation: Literal["sigmoid", "none"] = "none"

    @property
    def channels(self) -> int:
        return 4 + self.num_classes + 3 * self.num_keypoints


def yolo_pose_slices(num_keypoints: int = 17, num_classes: int = 1, axis: int = 1) -> dict[str, dict[str, int]]:
    """``outputs:`` slices of a YOLO-pose head (models.yaml ``Slice`` fields): boxes, scores, keypoints, so
    that a scale shared by box and keypoint channels shows in per-slice metrics."""
    c = 4 + num_classes
    return {
        "boxes": {"axis": axis, "start": 0, "stop": 4},
        "scores": {"axis": axis, "start": 4, "stop": c},
        "keypoints": {"axis": axis, "start": c, "stop": c + 3 * num_keypoints},
    }


def decode_yolo_pose(output: npt.ArrayLike, spec: YoloPoseSpec) -> list[Poses]:
    """Per image, the people of a YOLO-pose head in network-input pixels (score filter, then NMS across
    classes; person score = best class score)."""
    out = np.asarray(output, dtype=np.float32)
    if out.ndim != 3:
        raise DataError(f"YOLO-pose output must have shape (batch, channels, anchors), got {out.shape}.")
    c = spec.channels
    if out.shape[1] == c:
        rows = np.transpose(out, (0, 2, 1))
    elif out.shape[2] == c:
        rows = out
    else:
        raise DataError(
            f"YOLO-pose output {out.shape} has no axis of 4 + {spec.num_classes} classes + 3 x {spec.num_keypoints} "
            f"keypoints = {c} channels."
        )
    people: list[Poses] = []
    k0 = 4 + spec.num_classes
    for r in rows:
        cxcywh = r[:, :4]
        boxes = np.concatenate([cxcywh[:, :2] - cxcywh[:, 2:] / 2, cxcywh[:, :2] + cxcywh[:, 2:] / 2], axis=1)
        cls = r[:, 4:k0]
        scores = cls.max(axis=1)
        keep = np.flatnonzero(score_mask(boxes, scores, spec.score_threshold))
        idx = keep[nms(boxes[keep], scores[keep], None, spec.iou_threshold, spec.max_detections)]
        kp = r[idx, k0:].reshape(-1, spec.num_keypoints, 3).copy()
        kp[:, :, 2] = _activate(kp[:, :, 2], spec.visibility_activation)
        people.append(Poses(boxes[idx], scores[idx], kp))
    return people
