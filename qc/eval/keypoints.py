"""Keypoints: person crops for top-down models, decoders, OKS AP against labels and label-free agreement.

Conventions (those of :mod:`qc.eval.types`): continuous pixel coordinates (pixel ``i`` covers ``[i, i + 1)``),
boxes ``x1, y1, x2, y2``. A :class:`Poses` holds the people of one image in ORIGINAL image pixels: boxes ``(N, 4)``,
person scores ``(N,)`` and keypoints ``(N, K, 3)`` = x, y, keypoint score (a visibility probability in [0, 1]).

Two model families:

* **top-down** (one person crop in, K points out): :func:`person_crop` cuts the crop a model expects from a
  person box (box centre kept, sides scaled by ``box_scale`` and grown to the input's aspect ratio, bilinear
  sampling, pixels outside the image replicated or filled) and returns the :class:`~qc.data.preprocess.Transform`
  that maps crop pixels back; :func:`decode_regression` (points regressed in input pixels or normalised, e.g.
  MediaPipe's pose landmark model) and :func:`decode_heatmaps` (one heatmap per keypoint, e.g. HRNet) decode
  one crop's outputs.
* **YOLO-pose heads** (:func:`decode_yolo_pose`): boxes + class scores + K x 3 values per anchor, decoded in
  input pixels, filtered and NMS-ed with :mod:`qc.eval.nms`.

Metrics: :func:`evaluate_oks` (COCO keypoint AP with faster-coco-eval, custom sigmas, a keypoint map from the
model's points to the labels' points) and :class:`KeypointAgreement` (label-free: OKS of target vs reference
points per person, per-keypoint errors, and the AP of the target against the reference as pseudo ground
truth). Accumulators keep only the points (what the COCO evaluation needs), never images or tensors.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from qc.data.preprocess import Transform
from qc.errors import ConfigError, DataError, MetricError
from qc.eval.nms import nms, score_mask

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


# --- containers ----------------------------------------------------------------------------------------------
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


# --- top-down crops ------------------------------------------------------------------------------------------
def crop_box(box_xyxy: Sequence[float], input_hw: tuple[int, int], box_scale: float = 1.25) -> tuple[float, ...]:
    """The crop region (x1, y1, x2, y2) of a person box: same centre, sides times ``box_scale``, then the
    shorter side grown so that the region has the input's aspect ratio (nothing of the box is cut)."""
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    if not (x2 > x1 and y2 > y1):
        raise DataError(f"person box {[x1, y1, x2, y2]} is empty (x2 <= x1 or y2 <= y1).")
    if box_scale <= 0:
        raise ConfigError(f"box_scale must be > 0, got {box_scale}.")
    h_in, w_in = input_hw
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    w, h = (x2 - x1) * box_scale, (y2 - y1) * box_scale
    aspect = w_in / h_in
    if w / h > aspect:
        h = w / aspect
    else:
        w = h * aspect
    return cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2


def person_crop(
    rgb: npt.NDArray[np.uint8],
    box_xyxy: Sequence[float],
    input_hw: tuple[int, int],
    *,
    box_scale: float = 1.25,
    border: Literal["replicate", "constant"] = "replicate",
    pad_value: float = 0.0,
) -> tuple[FloatArray, Transform]:
    """The ``(H, W, 3)`` float32 crop (0..255) a top-down model sees for one person, and its inverse.

    Crop pixel ``(u, v)`` samples the image bilinearly at ``x1 + (u + 0.5) * sx - 0.5`` (pixel centres; ``sx``
    = region width / input width). Samples outside the image replicate the border pixels (``border=
    "replicate"``, MediaPipe's default) or take ``pad_value``. The returned ``Transform`` maps crop pixels back
    to image pixels with ``orig = (net - pad) / scale`` (see :func:`points_to_original`).
    """
    img = np.asarray(rgb)
    if img.ndim != 3 or img.shape[2] != 3:
        raise DataError(f"person_crop needs an (H, W, 3) image, got shape {img.shape}.")
    H, W = img.shape[:2]
    h_in, w_in = input_hw
    rx1, ry1, rx2, ry2 = crop_box(box_xyxy, input_hw, box_scale)
    sx, sy = (rx2 - rx1) / w_in, (ry2 - ry1) / h_in
    xs = rx1 + (np.arange(w_in, dtype=np.float64) + 0.5) * sx - 0.5
    ys = ry1 + (np.arange(h_in, dtype=np.float64) + 0.5) * sy - 0.5
    x0 = np.floor(xs).astype(np.int64)
    y0 = np.floor(ys).astype(np.int64)
    fx = (xs - x0).astype(np.float32)[None, :, None]
    fy = (ys - y0).astype(np.float32)[:, None, None]
    src = img.astype(np.float32)

    def gather(yi: npt.NDArray[np.int64], xi: npt.NDArray[np.int64]) -> FloatArray:
        out: FloatArray = src[np.clip(yi, 0, H - 1)[:, None], np.clip(xi, 0, W - 1)[None, :]]
        if border == "constant":
            outside = ((yi < 0) | (yi >= H))[:, None] | ((xi < 0) | (xi >= W))[None, :]
            out[outside] = np.float32(pad_value)
        return out

    top = gather(y0, x0) * (1 - fx) + gather(y0, x0 + 1) * fx
    bottom = gather(y0 + 1, x0) * (1 - fx) + gather(y0 + 1, x0 + 1) * fx
    crop = (top * (1 - fy) + bottom * fy).astype(np.float32)
    return crop, Transform(1.0 / sx, 1.0 / sy, -rx1 / sx, -ry1 / sy, W, H)


# --- decoders ------------------------------------------------------------------------------------------------
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


def poses_to_original(poses: Poses, transform: Transform) -> Poses:
    """Boxes (clipped) and keypoints (not clipped) of network-pixel poses mapped to original pixels."""
    k = poses.keypoints.copy()
    k[:, :, :2] = points_to_original(k[:, :, :2], transform)
    return Poses(transform.to_original(poses.boxes), poses.scores, k)


# --- OKS -----------------------------------------------------------------------------------------------------
def _sigmas(sigmas: Sequence[float] | None, k: int) -> npt.NDArray[np.float64]:
    s = np.asarray(COCO_SIGMAS if sigmas is None else sigmas, dtype=np.float64)
    if s.shape != (k,):
        raise ConfigError(f"{s.size} OKS sigmas given for {k} keypoints; give one sigma per keypoint.")
    if (s <= 0).any():
        raise ConfigError("every OKS sigma must be > 0.")
    return s


def oks(
    pred_xy: npt.ArrayLike,
    ref_xy: npt.ArrayLike,
    visible: npt.ArrayLike,
    area: float,
    sigmas: Sequence[float] | None = None,
) -> float:
    """COCO object keypoint similarity of one person: the mean over ``visible`` keypoints of
    ``exp(-d^2 / (2 * area * (2 sigma)^2))``; NaN when no keypoint is visible."""
    p = np.asarray(pred_xy, np.float64).reshape(-1, 2)
    r = np.asarray(ref_xy, np.float64).reshape(-1, 2)
    v = np.asarray(visible, bool).reshape(-1)
    s = _sigmas(sigmas, r.shape[0])
    if not v.any():
        return math.nan
    d2 = ((p - r) ** 2).sum(axis=1)
    e = d2 / ((2 * s) ** 2) / (max(area, np.spacing(1)) * 2)
    return float(np.exp(-e)[v].mean())


@dataclass(frozen=True)
class KeypointScores:
    """COCO keypoint metrics (OKS AP@[.5:.95], AP50, AP75, AR; area 'all', the largest maxDets). NaN with
    ``empty=True`` and a ``reason`` when undefined."""

    ap: float
    ap50: float
    ap75: float
    ar: float
    num_images: int = 0
    num_people: int = 0
    num_ground_truth: int = 0
    empty: bool = False
    reason: str = ""

    def require(self) -> KeypointScores:
        if self.empty:
            raise MetricError(f"keypoint OKS AP is undefined: {self.reason}")
        return self

    @classmethod
    def flagged_empty(cls, reason: str, n_img: int = 0, n_det: int = 0, n_gt: int = 0) -> KeypointScores:
        nan = math.nan
        return cls(nan, nan, nan, nan, n_img, n_det, n_gt, True, reason)


def to_coco_keypoint_results(
    image_id: int, poses: Poses, category_id: int = 1, keypoint_map: Sequence[int] | None = None
) -> list[dict[str, Any]]:
    """COCO keypoint result dicts of one image (original pixels): ``keypoints`` flat x, y, score."""
    p = poses.select_keypoints(keypoint_map) if keypoint_map is not None else poses
    out: list[dict[str, Any]] = []
    for box, score, kp in zip(p.boxes.tolist(), p.scores.tolist(), p.keypoints.astype(np.float64), strict=True):
        x1, y1, x2, y2 = box
        out.append(
            {
                "image_id": int(image_id),
                "category_id": int(category_id),
                "keypoints": kp.reshape(-1).tolist(),
                "score": float(score),
                "bbox": [x1, y1, x2 - x1, y2 - y1],
            }
        )
    return out


def evaluate_oks(
    gt: Mapping[str, Any],
    results: Sequence[Mapping[str, Any]],
    image_ids: Iterable[int],
    sigmas: Sequence[float] | None = None,
) -> KeypointScores:
    """COCO keypoint AP (faster-coco-eval ``keypoints``) of ``results`` against ``gt`` (a COCO dict whose
    annotations carry ``keypoints`` and ``num_keypoints``), restricted to ``image_ids``. ``sigmas`` default to
    COCO's 17; their count must match the labels' keypoints."""
    ids = sorted({int(i) for i in image_ids})
    idset = set(ids)
    images = [dict(im) for im in gt.get("images", []) if int(im["id"]) in idset]
    missing = sorted(idset - {int(im["id"]) for im in images})
    if missing:
        raise DataError(f"{len(missing)} evaluated image id(s) are not in the ground truth 'images': {missing[:10]}.")
    anns = [dict(a) for a in gt.get("annotations", []) if int(a["image_id"]) in idset and "keypoints" in a]
    k_gt = {len(a["keypoints"]) // 3 for a in anns}
    if len(k_gt) > 1:
        raise DataError(f"ground-truth annotations have different keypoint counts: {sorted(k_gt)}.")
    res = [dict(r) for r in results if int(r["image_id"]) in idset]
    k_dt = {len(r["keypoints"]) // 3 for r in res}
    if k_gt and k_dt and k_dt != k_gt:
        raise ConfigError(
            f"results have {sorted(k_dt)} keypoints per person but the labels have {sorted(k_gt)}: set a keypoint "
            "map from the model's points to the labels' points."
        )
    n_gt = sum(1 for a in anns if not a.get("iscrowd", 0) and a.get("num_keypoints", 0) > 0)
    if not ids:
        return KeypointScores.flagged_empty("no images were evaluated.")
    if n_gt == 0:
        return KeypointScores.flagged_empty(
            f"the labels have no person with keypoints on the {len(ids)} image(s).", len(ids), len(res), 0
        )
    if not res:
        return KeypointScores.flagged_empty(f"no people were predicted on the {len(ids)} image(s).", len(ids), 0, n_gt)
    k = k_gt.pop()
    s = _sigmas(sigmas, k)
    for i, a in enumerate(anns):
        a.setdefault("id", i + 1)
        a.setdefault("iscrowd", 0)
        if "area" not in a:
            a["area"] = float(a["bbox"][2]) * float(a["bbox"][3])
    for i, r in enumerate(res):
        r["id"] = i + 1
        r["iscrowd"] = 0
        x, y, w, h = r.get("bbox") or _points_bbox(r["keypoints"])
        r["bbox"] = [x, y, w, h]
        r["area"] = float(w) * float(h)
    cats = [dict(c) for c in gt.get("categories", [])] or [{"id": 1, "name": "person"}]
    return _run_keypoint_eval({"images": images, "annotations": anns, "categories": cats}, res, ids, s)


def _points_bbox(flat: Sequence[float]) -> list[float]:
    p = np.asarray(flat, np.float64).reshape(-1, 3)
    x1, y1 = p[:, 0].min(), p[:, 1].min()
    return [float(x1), float(y1), float(p[:, 0].max() - x1), float(p[:, 1].max() - y1)]


def _run_keypoint_eval(
    gt: dict[str, Any], res: list[dict[str, Any]], ids: list[int], sigmas: npt.NDArray[np.float64]
) -> KeypointScores:
    from faster_coco_eval import COCO, COCOeval_faster

    def quiet(*_args: Any, **_kwargs: Any) -> None:
        return None

    coco_gt = COCO(gt, print_function=quiet)
    coco_dt = COCO({"images": gt["images"], "categories": gt["categories"], "annotations": res}, print_function=quiet)
    ev = COCOeval_faster(coco_gt, coco_dt, "keypoints", print_function=quiet, kpt_oks_sigmas=sigmas.tolist())
    ev.params.imgIds = ids
    ev.evaluate()
    ev.accumulate()
    precision = np.asarray(ev.eval["precision"])  # [T, R, K, A, M]
    recall = np.asarray(ev.eval["recall"])  # [T, K, A, M]
    area = list(ev.params.areaRngLbl).index("all")
    mdet = len(ev.params.maxDets) - 1
    thr = np.asarray(ev.params.iouThrs)

    def mean_valid(a: npt.NDArray[Any]) -> float:
        v = a[a > -1]
        return float(v.mean()) if v.size else math.nan

    p = precision[:, :, :, area, mdet]
    n_gt = sum(1 for a in gt["annotations"] if not a.get("iscrowd", 0) and a.get("num_keypoints", 0) > 0)
    ap = mean_valid(p)
    if math.isnan(ap):
        return KeypointScores.flagged_empty("COCO keypoint evaluation produced no valid precision.", len(ids))
    return KeypointScores(
        ap=ap,
        ap50=mean_valid(p[int(np.flatnonzero(np.isclose(thr, 0.5))[0])]),
        ap75=mean_valid(p[int(np.flatnonzero(np.isclose(thr, 0.75))[0])]),
        ar=mean_valid(recall[:, :, area, mdet]),
        num_images=len(ids),
        num_people=len(res),
        num_ground_truth=n_gt,
    )


# --- agreement -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class KeypointAgreementScores:
    """Target vs reference keypoints without labels.

    ``mean_oks``/``min_oks``: OKS of each matched target person against its reference person (reference
    keypoints with score >= ``keypoint_threshold`` count, area = reference box area); ``ap``/``ap50``: COCO
    keypoint AP of every target person against the reference people (score >= ``person_threshold``) as ground
    truth; ``per_keypoint_oks``: mean per-keypoint similarity; ``per_keypoint_error``: mean distance / sqrt(box
    area) per keypoint; ``per_keypoint_pixels``: mean distance in original pixels.
    """

    mean_oks: float
    min_oks: float
    ap: float
    ap50: float
    num_people: int
    num_matched: int
    num_absent: int = 0
    per_keypoint_oks: dict[str, float] = field(default_factory=dict)
    per_keypoint_error: dict[str, float] = field(default_factory=dict)
    per_keypoint_pixels: dict[str, float] = field(default_factory=dict)
    empty: bool = False
    reason: str = ""

    def worst(self, n: int = 3) -> list[tuple[str, float]]:
        """The ``n`` keypoints with the largest normalised error."""
        return sorted(self.per_keypoint_error.items(), key=lambda kv: -kv[1])[:n]

    def require(self) -> KeypointAgreementScores:
        if self.empty:
            raise MetricError(f"keypoint agreement is undefined: {self.reason}")
        return self


class KeypointAgreement:
    """Streaming keypoint agreement: :meth:`add` one image's reference and target poses at a time, then
    :meth:`result`. Top-down results (one person per given box, same order on both sides) pass
    ``paired=True``: pairs whose reference person score (e.g. a presence flag) is below ``person_threshold``
    are left out (the reference sees no person there; counted in ``num_absent``), but the target's person still
    enters the AP as a detection. Otherwise people are matched greedily by OKS (each reference person above
    ``person_threshold`` at most once)."""

    def __init__(
        self,
        num_keypoints: int,
        *,
        sigmas: Sequence[float] | None = None,
        names: Sequence[str] | None = None,
        keypoint_threshold: float = 0.5,
        person_threshold: float = 0.25,
    ) -> None:
        self.k = num_keypoints
        self.sigmas = _sigmas(sigmas, num_keypoints)
        self.names = list(names) if names is not None else [str(i) for i in range(num_keypoints)]
        if len(self.names) != num_keypoints:
            raise ConfigError(f"{len(self.names)} keypoint names given for {num_keypoints} keypoints.")
        self.keypoint_threshold = keypoint_threshold
        self.person_threshold = person_threshold
        self.person_oks: list[float] = []
        self.kp_sim = np.zeros(num_keypoints)
        self.kp_err = np.zeros(num_keypoints)
        self.kp_pix = np.zeros(num_keypoints)
        self.kp_count = np.zeros(num_keypoints)
        self.num_people = 0
        self.num_absent = 0
        self.images: list[dict[str, Any]] = []
        self.gt: list[dict[str, Any]] = []
        self.results: list[dict[str, Any]] = []

    def _check(self, p: Poses, side: str) -> None:
        if len(p) and p.num_keypoints != self.k:
            raise DataError(f"{side} poses have {p.num_keypoints} keypoints, the agreement expects {self.k}.")

    def add(self, image_id: int, reference: Poses, target: Poses, *, paired: bool = False) -> None:
        self._check(reference, "reference")
        self._check(target, "target")
        iid = int(image_id)
        if paired and len(reference) != len(target):
            raise DataError(f"image {iid}: paired poses need as many target ({len(target)}) as reference people "
                            f"({len(reference)}).")  # fmt: skip
        if paired:  # people the reference sees (score >= person_threshold), with their target counterparts
            keep = np.flatnonzero(reference.scores >= self.person_threshold)
            ref = Poses(reference.boxes[keep], reference.scores[keep], reference.keypoints[keep])
            counterpart = Poses(target.boxes[keep], target.scores[keep], target.keypoints[keep])
            self.num_absent += len(reference) - len(keep)
        else:
            ref = reference.above(self.person_threshold)
            counterpart = target
        w = float(max([1.0, *ref.boxes[:, 2].tolist(), *target.boxes[:, 2].tolist()]))
        h = float(max([1.0, *ref.boxes[:, 3].tolist(), *target.boxes[:, 3].tolist()]))
        self.images.append({"id": iid, "width": math.ceil(w), "height": math.ceil(h)})
        areas = np.maximum((ref.boxes[:, 2] - ref.boxes[:, 0]) * (ref.boxes[:, 3] - ref.boxes[:, 1]), 1.0)
        for j in range(len(ref)):
            vis = ref.keypoints[j, :, 2] >= self.keypoint_threshold
            x1, y1, x2, y2 = ref.boxes[j].tolist()
            flat = np.concatenate([ref.keypoints[j, :, :2], np.where(vis, 2.0, 0.0)[:, None]], axis=1)
            self.gt.append(
                {
                    "id": len(self.gt) + 1,
                    "image_id": iid,
                    "category_id": 1,
                    "keypoints": flat.reshape(-1).astype(np.float64).tolist(),
                    "num_keypoints": int(vis.sum()),
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": float(areas[j]),
                    "iscrowd": 0,
                }
            )
        self.results.extend(to_coco_keypoint_results(iid, target))
        self.num_people += len(ref)
        pairs = [(j, j) for j in range(len(ref))] if paired else self._match(ref, target, areas)
        for j, t in pairs:
            vis = ref.keypoints[j, :, 2] >= self.keypoint_threshold
            d = np.linalg.norm(counterpart.keypoints[t, :, :2].astype(np.float64) - ref.keypoints[j, :, :2], axis=1)
            sim = np.exp(-(d**2) / ((2 * self.sigmas) ** 2) / (2 * areas[j]))
            if vis.any():
                self.person_oks.append(float(sim[vis].mean()))
            self.kp_sim[vis] += sim[vis]
            self.kp_err[vis] += d[vis] / math.sqrt(areas[j])
            self.kp_pix[vis] += d[vis]
            self.kp_count[vis] += 1

    def _match(self, ref: Poses, target: Poses, areas: FloatArray) -> list[tuple[int, int]]:
        if not len(ref) or not len(target):
            return []
        table = np.full((len(ref), len(target)), -1.0)
        for j in range(len(ref)):
            vis = ref.keypoints[j, :, 2] >= self.keypoint_threshold
            for t in range(len(target)):
                v = oks(target.keypoints[t, :, :2], ref.keypoints[j, :, :2], vis, float(areas[j]), self.sigmas.tolist())
                table[j, t] = -1.0 if math.isnan(v) else v
        pairs: list[tuple[int, int]] = []
        used_r: set[int] = set()
        used_t: set[int] = set()
        for flat in np.argsort(-table, axis=None, kind="stable"):
            j, t = divmod(int(flat), len(target))
            if table[j, t] < 0 or j in used_r or t in used_t:
                continue
            pairs.append((j, t))
            used_r.add(j)
            used_t.add(t)
        return pairs

    def result(self) -> KeypointAgreementScores:
        nan = math.nan
        if not self.person_oks:
            return KeypointAgreementScores(
                nan, nan, nan, nan, self.num_people, 0, empty=True,
                reason=f"no matched person with a reference keypoint scoring >= {self.keypoint_threshold} "
                f"({self.num_people} reference people on {len(self.images)} image(s)).",
            )  # fmt: skip
        ids = [im["id"] for im in self.images]
        gt = {"images": self.images, "annotations": self.gt, "categories": [{"id": 1, "name": "person"}]}
        if self.results and any(a["num_keypoints"] > 0 for a in self.gt):
            ap_scores = _run_keypoint_eval(gt, [dict(r, id=i + 1, iscrowd=0, area=r["bbox"][2] * r["bbox"][3])
                                                for i, r in enumerate(self.results)], ids, self.sigmas)  # fmt: skip
        else:
            ap_scores = KeypointScores.flagged_empty("no target people or no visible reference keypoints.")
        seen = self.kp_count > 0
        per_oks = {n: float(self.kp_sim[i] / self.kp_count[i]) for i, n in enumerate(self.names) if seen[i]}
        per_err = {n: float(self.kp_err[i] / self.kp_count[i]) for i, n in enumerate(self.names) if seen[i]}
        per_pix = {n: float(self.kp_pix[i] / self.kp_count[i]) for i, n in enumerate(self.names) if seen[i]}
        return KeypointAgreementScores(
            mean_oks=float(np.mean(self.person_oks)),
            min_oks=float(np.min(self.person_oks)),
            ap=ap_scores.ap,
            ap50=ap_scores.ap50,
            num_people=self.num_people,
            num_matched=len(self.person_oks),
            num_absent=self.num_absent,
            per_keypoint_oks=per_oks,
            per_keypoint_error=per_err,
            per_keypoint_pixels=per_pix,
        )
