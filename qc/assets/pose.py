"""Pose demo: MediaPipe's pose landmark model (from the ``mediapipe`` wheel), converted by qc's TFLite converter."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from qc.assets.core import PACKAGES, AssetBuilder, Package, sha256_of

log = logging.getLogger(__name__)


# -- Pose demo: MediaPipe's pose landmark model, converted to ONNX by qc's TFLite converter ------------------
# Fetched and verified like the detector's; built by ``build_pose_assets`` (called from AssetBuilder.build).

PACKAGES["mediapipe"] = Package(
    "mediapipe==0.10.14",  # the last release whose wheel ships the pose landmark .tflite files
    "mediapipe-0.10.14-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
    "a807328339e7356fda0bb14df12fedbf1d33bdf81649c5f8666b0026b1cc30b4",
    (
        "--only-binary",
        ":all:",
        "--platform",
        "manylinux_2_17_x86_64",
        "--python-version",
        "3.11",
        "--implementation",
        "cp",
        "--abi",
        "cp311",
    ),
)
POSE_MEMBER = (
    "mediapipe",
    "mediapipe/modules/pose_landmark/pose_landmark_full.tflite",
    "pose/pose_landmark_full.tflite",
    "e9a5c5cb17f736fafd4c2ec1da3b3d331d6edbe8a0d32395855aeb2cdfd64b9f",
)
POSE_MODEL_FILE = "pose/pose_landmark_full.onnx"
POSE_CONVERTER_VERSION = "4"


def build_pose_assets(builder: AssetBuilder, manifest: dict[str, Any]) -> None:
    """Extract ``pose_landmark_full.tflite`` (sha256-checked) and convert it to ``pose/pose_landmark_full.onnx``:
    input ``input_1`` (1, 3, 256, 256) RGB in [0, 1]; outputs ``Identity`` (1, 195) = 39 points x (x, y, z,
    visibility logit, presence logit) in input pixels, ``Identity_1`` (1, 1) pose presence (a probability),
    ``Identity_2`` (1, 1, 256, 256) person-mask logits, ``Identity_3`` (1, 39, 64, 64) heatmaps, ``Identity_4``
    (1, 117) world landmarks. Person boxes for the top-down crops are the labelled persons of the evaluation set."""
    key, name, dest, sha = POSE_MEMBER
    builder.member(key, name, builder.root / dest, sha)
    inputs = f"{sha[:16]}:{POSE_CONVERTER_VERSION}"
    if builder._built(manifest, POSE_MODEL_FILE, inputs):
        return
    from qc.convert.tflite import convert_tflite

    out = builder.root / POSE_MODEL_FILE
    tmp = out.with_name(out.name + ".tmp")
    convert_tflite(builder.root / dest, tmp)
    tmp.replace(out)
    manifest[POSE_MODEL_FILE] = {"sha256": sha256_of(out), "inputs": inputs}
    builder.actions.append(f"convert {POSE_MODEL_FILE}")


def pose_paths(root: Path) -> tuple[Path, Path]:
    """(the MediaPipe pose landmark .tflite, its ONNX conversion) under the asset folder ``root``."""
    return root / POSE_MEMBER[2], root / POSE_MODEL_FILE
