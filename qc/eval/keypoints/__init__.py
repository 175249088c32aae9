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

Rooms: :mod:`.poses` (container, constants, coordinate mapping), :mod:`.crops`, :mod:`.decode`, :mod:`.oks`
(OKS and COCO keypoint AP), :mod:`.agreement`; every public name is re-exported here.
"""

from __future__ import annotations

from qc.eval.keypoints.agreement import KeypointAgreement, KeypointAgreementScores
from qc.eval.keypoints.crops import crop_box, person_crop
from qc.eval.keypoints.decode import (
    RegressionSpec,
    YoloPoseSpec,
    decode_heatmaps,
    decode_regression,
    decode_yolo_pose,
    top_down_person,
    yolo_pose_slices,
)
from qc.eval.keypoints.oks import KeypointScores, evaluate_oks, oks, to_coco_keypoint_results
from qc.eval.keypoints.poses import (
    COCO_KEYPOINT_NAMES,
    COCO_SIGMAS,
    MEDIAPIPE_POSE_TO_COCO,
    FloatArray,
    Poses,
    points_to_original,
    poses_to_original,
)

__all__ = [
    "COCO_KEYPOINT_NAMES",
    "COCO_SIGMAS",
    "MEDIAPIPE_POSE_TO_COCO",
    "FloatArray",
    "KeypointAgreement",
    "KeypointAgreementScores",
    "KeypointScores",
    "Poses",
    "RegressionSpec",
    "YoloPoseSpec",
    "crop_box",
    "decode_heatmaps",
    "decode_regression",
    "decode_yolo_pose",
    "evaluate_oks",
    "oks",
    "person_crop",
    "points_to_original",
    "poses_to_original",
    "to_coco_keypoint_results",
    "top_down_person",
    "yolo_pose_slices",
]
