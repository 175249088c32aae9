"""Top-down person crops: the region a model sees around a person box, and the bilinear crop with its inverse."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt

from qc.data.preprocess import Transform
from qc.errors import ConfigError, DataError
from qc.eval.keypoints.poses import FloatArray


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
