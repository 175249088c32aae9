"""Preprocessing and its exact inverse."""

from __future__ import annotations

import numpy as np
import pytest

from qc.config import Preprocess
from qc.data.preprocess import preprocess


def _image(h: int, w: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_letterbox_shape_padding_and_inverse() -> None:
    spec = Preprocess(size=(416, 416), mode="letterbox", pad_value=127.5)
    x, t = preprocess(_image(200, 400), spec, (416, 416))
    assert x.shape == (1, 3, 416, 416)
    assert x.dtype == np.float32
    assert t.pad_x == 0
    assert t.pad_y == 104
    assert np.allclose(x[0, :, :104, :], 0.5)  # gray padding, scaled
    box_net = np.array([[0.0, 104.0, 416.0, 312.0]], np.float32)
    assert np.allclose(t.to_original(box_net), [[0, 0, 400, 200]], atol=1e-4)


def test_resize_inverse_and_clipping() -> None:
    spec = Preprocess(mode="resize", layout="NHWC")
    x, t = preprocess(_image(100, 50), spec, (200, 200))
    assert x.shape == (1, 200, 200, 3)
    assert np.allclose(t.to_original(np.array([[20.0, 20.0, 300.0, 100.0]])), [[5, 10, 50, 50]])


def test_bgr_normalisation_and_uint8() -> None:
    img = np.zeros((4, 4, 3), np.uint8)
    img[..., 0] = 255  # red
    spec = Preprocess(mode="resize", channel_order="BGR", scale=1.0, mean=(0, 0, 10), std=(1, 1, 2))
    x, _ = preprocess(img, spec, (4, 4))
    assert x[0, 2].mean() == pytest.approx((255 - 10) / 2)
    assert x[0, 0].mean() == pytest.approx(0.0)
    u, _ = preprocess(img, Preprocess(mode="resize", dtype="uint8"), (4, 4))
    assert u.dtype == np.uint8
    assert u[0, 0].max() == 255


def test_center_crop_resizes_the_short_side_and_inverts_as_a_negative_pad() -> None:
    spec = Preprocess(size=(224, 224), mode="center_crop", resize_short=256)
    img = _image(300, 600)
    x, t = preprocess(img, spec, (224, 224))
    assert x.shape == (1, 3, 224, 224)
    # 300x600 -> 256x512, crop offset (144, 16)
    assert (t.scale_x, t.scale_y) == (512 / 600, 256 / 300)
    assert (t.pad_x, t.pad_y) == (-144.0, -16.0)
    corners = t.to_original(np.array([[0.0, 0.0, 224.0, 224.0]], np.float32))
    assert np.allclose(corners, [[144 * 600 / 512, 16 * 300 / 256, 368 * 600 / 512, 240 * 300 / 256]], atol=1e-3)
    # the crop is the centre of the resized image, pixel for pixel
    from PIL import Image

    full = np.asarray(Image.fromarray(img).resize((512, 256), Image.Resampling.BILINEAR), np.float32)
    assert np.allclose(x[0].transpose(1, 2, 0), full[16:240, 144:368] / 255.0, atol=1e-6)


def test_center_crop_default_short_side_and_lanczos() -> None:
    spec = Preprocess(size=(224, 224), mode="center_crop", interpolation="lanczos", scale=1.0)
    x, t = preprocess(_image(256, 256), spec, (224, 224))
    assert t.scale_x == pytest.approx(256 / 256)  # default short side round(224 / 0.875) = 256
    assert (t.pad_x, t.pad_y) == (-16.0, -16.0)
    assert x.max() <= 255.0


def test_resize_short_is_only_for_center_crop_and_not_below_the_crop() -> None:
    with pytest.raises(ValueError, match="resize_short applies to mode center_crop"):
        Preprocess(mode="resize", resize_short=256)
    with pytest.raises(ValueError, match="must be at least the crop"):
        Preprocess(size=(224, 224), mode="center_crop", resize_short=200)
