"""Segmentation decoding (inverse preprocessing), streaming metrics, boundary IoU and pictures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qc.config import Preprocess
from qc.data.preprocess import Transform, preprocess
from qc.errors import DataError, MetricError
from qc.eval.segmentation import (
    IGNORE,
    SegDecode,
    SegmentationAccumulator,
    boundary_band,
    boundary_counts,
    boundary_dilation,
    confusion,
    decode_mask,
    draw_mask_triptych,
    iou_per_class,
    mean_iou,
    pixel_accuracy,
)


def _blob(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    blob: np.ndarray = (((yy - h * 0.45) / (h * 0.3)) ** 2 + ((xx - w * 0.55) / (w * 0.25)) ** 2 < 1).astype(np.int32)
    return blob


def _network_view(labels: np.ndarray, spec: Preprocess, size: tuple[int, int]) -> tuple[np.ndarray, Transform]:
    """What a perfect one-channel segmenter outputs: the mask pushed through the same preprocessing."""
    rgb = np.repeat((labels * 255).astype(np.uint8)[..., None], 3, axis=2)
    x, t = preprocess(rgb, spec.model_copy(update={"scale": 1 / 255, "pad_value": 0.0}), size)
    return x[:, :1], t


def test_confusion_iou_and_accuracy_by_hand() -> None:
    gt = np.array([[0, 0, 1, 1], [0, 1, 1, IGNORE]], np.int32)
    pred = np.array([[0, 1, 1, 1], [0, 0, 1, 1]], np.int32)
    cm = confusion(gt, pred, 2)
    assert cm.tolist() == [[2, 1], [1, 3]]
    assert iou_per_class(cm).tolist() == pytest.approx([2 / 4, 3 / 5])
    assert mean_iou(cm) == pytest.approx((0.5 + 0.6) / 2)
    assert pixel_accuracy(cm) == pytest.approx(5 / 7)
    with pytest.raises(DataError, match="out of range"):
        confusion(gt, pred + 1, 2)
    with pytest.raises(MetricError):
        mean_iou(np.zeros((2, 2), np.int64))


@pytest.mark.parametrize(
    ("mode", "size"),
    [("letterbox", (320, 320)), ("resize", (320, 320)), ("center_crop", (224, 224)), ("letterbox", (256, 320))],
)
def test_decode_inverts_the_preprocessing(mode: str, size: tuple[int, int]) -> None:
    truth = _blob(300, 500)
    spec = Preprocess(size=size, mode=mode)  # type: ignore[arg-type]
    out, t = _network_view(truth, spec, size)
    labels, conf = decode_mask(out, SegDecode(threshold=0.5), t, size)
    assert labels.shape == truth.shape
    assert conf.shape == truth.shape
    seen = labels != IGNORE
    if mode == "center_crop":  # the crop drops the left and right of a wide image
        assert not seen[:, :5].any()
        assert seen[30:270, 200:300].all()
        assert not seen[:10].any()  # and the top and bottom rows (256 of 300 rows, 224 kept)
    else:
        assert seen.all()
    cm = confusion(truth, labels, 2)
    assert iou_per_class(cm)[1] > 0.97


def test_decode_strided_output_nhwc_softmax_and_sigmoid() -> None:
    truth = _blob(120, 160)
    spec = Preprocess(size=(128, 128), mode="letterbox")
    out, t = _network_view(truth, spec, (128, 128))
    half = out[:, :, ::2, ::2]  # a stride-2 output: 64x64 scores for a 128x128 input
    labels, _ = decode_mask(half, SegDecode(), t, (128, 128))
    assert iou_per_class(confusion(truth, labels, 2))[1] > 0.93
    logits = np.concatenate([1.0 - half, half], axis=1) * 8.0  # two classes, channels last
    nhwc = np.transpose(logits, (0, 2, 3, 1))
    labels2, _ = decode_mask(nhwc, SegDecode(layout="NHWC", activation="softmax"), t, (128, 128))
    # probabilities are resampled after the activation: decisions may differ only on the contour
    assert (labels == labels2).mean() > 0.995
    logit1 = (half - 0.5) * 10
    labels3, _ = decode_mask(logit1, SegDecode(activation="sigmoid"), t, (128, 128))
    assert (labels == labels3).mean() > 0.995
    with pytest.raises(DataError, match="batch of one"):
        decode_mask(np.zeros((2, 1, 4, 4)), SegDecode(), t, (128, 128))
    with pytest.raises(DataError, match="softmax needs several"):
        decode_mask(half, SegDecode(activation="softmax"), t, (128, 128))


def _band_brute(mask: np.ndarray, d: int) -> np.ndarray:
    h, w = mask.shape
    out = np.zeros_like(mask)
    for y in range(h):
        for x in range(w):
            if not mask[y, x]:
                continue
            y0, y1, x0, x1 = y - d, y + d + 1, x - d, x + d + 1
            window_outside = y0 < 0 or x0 < 0 or y1 > h or x1 > w
            out[y, x] = window_outside or not mask[max(y0, 0) : y1, max(x0, 0) : x1].all()
    return out


def test_boundary_band_matches_a_brute_force_definition() -> None:
    rng = np.random.default_rng(3)
    mask = np.zeros((30, 40), bool)
    mask[5:25, 8:35] = True
    mask |= rng.random((30, 40)) > 0.9
    for d in (1, 2, 4):
        assert np.array_equal(boundary_band(mask, d), _band_brute(mask, d))


def test_boundary_iou_identical_shifted_and_dilation() -> None:
    assert boundary_dilation(300, 400, 0.02) == 10
    assert boundary_dilation(10, 10, 0.02) == 1
    gt = _blob(100, 100)
    inter, union = boundary_counts(gt, gt, 2, 0.02)
    assert (inter == union).all()
    shifted = np.roll(gt, 3, axis=1)
    inter, union = boundary_counts(gt, shifted, 2, 0.02)
    assert 0 < inter[1] < union[1]


def test_accumulator_streams_like_one_big_image_and_ranks_the_worst() -> None:
    rng = np.random.default_rng(0)
    acc = SegmentationAccumulator(num_classes=3, keep_worst=2)
    gts, refs, tgts = [], [], []
    for i in range(5):
        gt = rng.integers(0, 3, (20, 30)).astype(np.int32)
        ref = np.where(rng.random((20, 30)) < 0.8, gt, rng.integers(0, 3, (20, 30))).astype(np.int32)
        tgt = np.where(rng.random((20, 30)) < 1.0 - 0.15 * i, ref, rng.integers(0, 3, (20, 30))).astype(np.int32)
        acc.add(f"img{i}", ref, tgt, gt)
        gts.append(gt)
        refs.append(ref)
        tgts.append(tgt)
    res = acc.result()
    cm_ref = confusion(np.concatenate(gts), np.concatenate(refs), 3)
    cm_agree = confusion(np.concatenate(refs), np.concatenate(tgts), 3)
    assert res.reference is not None
    assert res.target is not None
    assert res.reference.miou == pytest.approx(mean_iou(cm_ref))
    assert res.agreement_miou == pytest.approx(mean_iou(cm_agree))
    assert res.agreement_pixel_accuracy == pytest.approx(pixel_accuracy(cm_agree))
    assert res.miou_drop == pytest.approx(res.reference.miou - res.target.miou)
    assert res.miou_drop > 0
    assert [name for _, name in res.worst] == ["img4", "img3"]
    assert res.agreement_foreground_iou is None
    assert "miou_drop" in res.metrics()


def test_label_free_agreement_and_foreground_headline() -> None:
    acc = SegmentationAccumulator(num_classes=2)
    ref = _blob(50, 50)
    tgt = np.roll(ref, 2, axis=0)
    acc.add("a", ref, tgt)
    res = acc.result()
    assert res.reference is None
    with pytest.raises(MetricError, match="needs ground-truth"):
        _ = res.miou_drop
    fg = iou_per_class(confusion(ref, tgt, 2))[1]
    assert res.mask_agreement == pytest.approx(fg)
    assert "miou_drop" not in res.metrics()
    with pytest.raises(MetricError):
        SegmentationAccumulator(num_classes=2).result()


def test_triptych_picture(tmp_path: Path) -> None:
    image = np.full((40, 60, 3), 200, np.uint8)
    ref = np.zeros((40, 60), np.int32)
    ref[10:30, 10:30] = 1
    tgt = np.zeros_like(ref)
    tgt[10:30, 20:40] = 1
    out = tmp_path / "p.png"
    draw_mask_triptych(image, ref, tgt, out, "worst image")
    from PIL import Image

    with Image.open(out) as pic:
        assert pic.size == (3 * 60 + 16, 40 + 48)
        px = np.asarray(pic.convert("RGB"))
    third = 2 * (60 + 8)
    assert tuple(px[24 + 20, third + 35]) == (255, 0, 255)  # target only
    assert tuple(px[24 + 20, third + 12]) == (0, 255, 255)  # reference only
    with pytest.raises(DataError, match="do not match"):
        draw_mask_triptych(image, ref[:10], tgt, out, "x")


def test_settings_validate_and_build_the_pieces(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from qc.eval.masks import FolderMasks
    from qc.eval.segmentation import SegmentationSettings

    s = SegmentationSettings.model_validate(
        {"kind": "segmentation", "activation": "sigmoid", "threshold": 0.4, "ground_truth": {"folder": str(tmp_path)}}
    )
    assert s.decode_spec() == SegDecode(layout="NCHW", activation="sigmoid", threshold=0.4)
    assert isinstance(s.mask_source(), FolderMasks)
    assert SegmentationSettings().mask_source() is None
    with pytest.raises(ValidationError, match="either foreground"):
        SegmentationSettings.model_validate({"ground_truth": {"annotations": "a.json"}})
    with pytest.raises(ValidationError):
        SegmentationSettings.model_validate({"threshold": 2})


def test_evaluate_segmentation_streams_with_folder_ground_truth(tmp_path: Path) -> None:
    from qc.eval.segmentation import SegmentationSettings, evaluate_segmentation

    truth = _blob(60, 80)
    np.save(tmp_path / "a.npy", truth)
    np.save(tmp_path / "b.npy", truth)
    spec = Preprocess(size=(64, 64), mode="letterbox")
    out, t = _network_view(truth, spec, (64, 64))
    worse = np.roll(out, 6, axis=3)
    settings = SegmentationSettings.model_validate({"ground_truth": {"folder": str(tmp_path)}, "pictures": 1})
    res = evaluate_segmentation(settings, (64, 64), [("a.jpg", out, out, t), ("b.jpg", out, worse, t)])
    assert res.images == 2
    assert res.num_classes == 2
    assert res.worst[0][1] == "b.jpg"
    assert res.miou_drop > 0
    with pytest.raises(MetricError):
        evaluate_segmentation(settings, (64, 64), [])
