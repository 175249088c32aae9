"""Preprocessing: letterbox or resize, channel order, normalisation, layout and dtype, with its exact inverse."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qc.config import Preprocess
from qc.errors import DataError


@dataclass(frozen=True)
class Transform:
    """Maps network-input pixels back to original image pixels: ``orig = (net - pad) / scale``."""

    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float
    orig_w: int
    orig_h: int

    def __post_init__(self) -> None:
        if not (self.scale_x > 0 and self.scale_y > 0):
            raise DataError(f"Transform scales must be positive, got scale_x={self.scale_x}, scale_y={self.scale_y}.")

    def to_original(self, boxes_xyxy: np.ndarray) -> np.ndarray:
        out = np.array(boxes_xyxy, dtype=np.float32, copy=True)
        out[..., 0::2] = np.clip((out[..., 0::2] - self.pad_x) / self.scale_x, 0, self.orig_w)
        out[..., 1::2] = np.clip((out[..., 1::2] - self.pad_y) / self.scale_y, 0, self.orig_h)
        return out


_RESAMPLE = {"bilinear": 2, "bicubic": 3, "lanczos": 1}  # PIL.Image.Resampling values


def resize_image(
    rgb: np.ndarray,
    size_hw: tuple[int, int],
    mode: str,
    pad_value: float,
    *,
    resize_short: int | None = None,
    interpolation: str = "bilinear",
) -> tuple[np.ndarray, Transform]:
    """Letterbox (keep aspect, centre, pad), plain resize, or resize the shorter side and crop the centre.

    ``rgb`` is an (H, W, 3) uint8 image; the result is ``size_hw`` float32 pixels and the Transform mapping
    network pixels back to the original image (a centre crop is a negative pad).
    """
    from PIL import Image

    resample = Image.Resampling(_RESAMPLE[interpolation])
    h, w = rgb.shape[:2]
    th, tw = size_hw
    if mode == "resize":
        out = np.asarray(Image.fromarray(rgb).resize((tw, th), resample), dtype=np.float32)
        return out, Transform(tw / w, th / h, 0.0, 0.0, w, h)
    if mode == "center_crop":
        short = resize_short if resize_short is not None else max(round(th / 0.875), round(tw / 0.875))
        ratio = short / min(w, h)
        nw, nh = max(tw, round(w * ratio)), max(th, round(h * ratio))
        resized = np.asarray(Image.fromarray(rgb).resize((nw, nh), resample), dtype=np.float32)
        left, top = (nw - tw) // 2, (nh - th) // 2
        out = np.ascontiguousarray(resized[top : top + th, left : left + tw])
        return out, Transform(nw / w, nh / h, float(-left), float(-top), w, h)
    if mode != "letterbox":
        raise DataError(f"preprocess.mode: expected letterbox, resize or center_crop, found {mode!r}.")
    scale = min(tw / w, th / h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    resized = np.asarray(Image.fromarray(rgb).resize((nw, nh), resample), dtype=np.float32)
    canvas = np.full((th, tw, 3), pad_value, dtype=np.float32)
    px, py = (tw - nw) // 2, (th - nh) // 2
    canvas[py : py + nh, px : px + nw] = resized
    return canvas, Transform(nw / w, nh / h, float(px), float(py), w, h)


def preprocess(rgb: np.ndarray, spec: Preprocess, size_hw: tuple[int, int]) -> tuple[np.ndarray, Transform]:
    """Turn one RGB uint8 image into a batch-of-one input tensor and the transform to invert boxes."""
    pixels, transform = resize_image(
        rgb, size_hw, spec.mode, spec.pad_value, resize_short=spec.resize_short, interpolation=spec.interpolation
    )
    return to_tensor(pixels, spec), transform


def to_tensor(pixels: np.ndarray, spec: Preprocess) -> np.ndarray:
    """An ``(H, W, 3)`` float32 RGB image of 0..255 pixels already at the input size (resized, or a task's crop) as
    a batch-of-one input tensor: channel order, normalisation, dtype and layout of ``spec``."""
    if spec.channel_order == "BGR":
        pixels = pixels[..., ::-1]
    if spec.dtype == "uint8":
        x = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
    else:
        mean = np.asarray(spec.mean, dtype=np.float32)
        std = np.asarray(spec.std, dtype=np.float32)
        x = ((pixels * np.float32(spec.scale) - mean) / std).astype(spec.dtype)
    if spec.layout == "NCHW":
        x = np.transpose(x, (2, 0, 1))
    return np.ascontiguousarray(x[None])
