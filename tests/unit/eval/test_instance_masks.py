"""Instance masks on synthetic YOLOv8-seg heads whose decoded masks are known exactly."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from qc.data.preprocess import Transform
from qc.errors import ConfigError, DataError
from qc.eval.instance_masks import (
    InstanceMasks,
    MaskAgreement,
    YoloSegSpec,
    decode_yolov8_seg,
    encode,
    evaluate_masks,
    sample_to_original,
    to_coco_mask_results,
    yolov8_seg_slices,
)

INPUT = (64, 64)
L = 8.0  # prototype logit magnitude


def _protos() -> np.ndarray:
    """(1, 3, 16, 16) prototypes (4 input pixels per cell). Bilinear upsampling of a +L/-L step changes sign
    exactly on the cell border, so horizontal bands give exact masks once cropped to a box (a 2-D rectangle of
    cells would lose its corner pixels): channel 0 is +L on cell rows 2..7 (input rows [8, 32)), channel 1 is
    +L everywhere (the mask is the box), channel 2 is +L on cell rows 4..7 (input rows [16, 32))."""
    p = np.full((1, 3, 16, 16), -L, np.float32)
    p[0, 0, 2:8] = L
    p[0, 1] = L
    p[0, 2, 4:8] = L
    return p


def _head(dets: list[tuple[list[float], int, float, list[float]]], anchors: int = 50) -> np.ndarray:
    """(1, 4 + 2 classes + 3 coefficients, anchors) from (cxcywh, class, score, coefficients)."""
    rows = np.zeros((anchors, 4 + 2 + 3), np.float32)
    for i, (box, cls, score, coef) in enumerate(dets):
        rows[i, :4], rows[i, 4 + cls], rows[i, 6:] = box, score, coef
    return rows.T[None]


SPEC = YoloSegSpec(num_classes=2, num_coefficients=3, score_threshold=0.25)
# detection A (class 0): box x [12, 32) y [4, 36), its channel-0 mask is x [12, 32) y [8, 32);
# detection B (class 1): box x [40, 60) y [36, 60)
A_BOX = [22.0, 20.0, 20.0, 32.0]
B_BOX = [50.0, 48.0, 20.0, 24.0]


def _rect(hw: tuple[int, int], x: tuple[int, int], y: tuple[int, int]) -> np.ndarray:
    m = np.zeros(hw, np.uint8)
    m[y[0] : y[1], x[0] : x[1]] = 1
    return m


def _gt(masks: list[tuple[np.ndarray, int]], hw: tuple[int, int]) -> dict[str, Any]:
    anns = []
    for k, (m, cat) in enumerate(masks):
        ys, xs = np.nonzero(m)
        anns.append(
            {"id": k + 1, "image_id": 1, "category_id": cat, "segmentation": encode(m), "area": float(m.sum()),
             "bbox": [float(xs.min()), float(ys.min()), float(np.ptp(xs) + 1), float(np.ptp(ys) + 1)], "iscrowd": 0}
        )  # fmt: skip
    return {
        "images": [{"id": 1, "height": hw[0], "width": hw[1]}],
        "annotations": anns,
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
    }


def test_decoded_masks_are_the_constructed_rectangles() -> None:
    head = _head([(A_BOX, 0, 0.9, [1, 0, 0]), (B_BOX, 1, 0.8, [0, 1, 0])])
    (inst,) = decode_yolov8_seg(head, _protos(), SPEC, [Transform(1, 1, 0, 0, 64, 64)], INPUT)
    assert len(inst) == 2
    np.testing.assert_array_equal(inst.dense(0), _rect((64, 64), (12, 32), (8, 32)))
    np.testing.assert_array_equal(inst.dense(1), _rect((64, 64), (40, 60), (36, 60)))  # the box crop
    np.testing.assert_allclose(inst.boxes[0], [12, 4, 32, 36])
    assert inst.classes.tolist() == [0, 1]


def test_masks_follow_the_inverse_letterbox() -> None:
    # a 128 x 96 (w x h) photo letterboxed to 64 x 64: scale 0.5, 8 rows of padding on top
    tf = Transform(0.5, 0.5, 0.0, 8.0, 128, 96)
    head = _head([(A_BOX, 0, 0.9, [1, 0, 0])])
    (inst,) = decode_yolov8_seg(head, _protos(), SPEC, [tf], INPUT)
    assert inst.image_hw == (96, 128)
    np.testing.assert_array_equal(inst.dense(0), _rect((96, 128), (24, 64), (0, 48)))


def test_transposed_head_and_shape_errors() -> None:
    head = _head([(A_BOX, 0, 0.9, [1, 0, 0])])
    tf = [Transform(1, 1, 0, 0, 64, 64)]
    (a,) = decode_yolov8_seg(head, _protos(), SPEC, tf, INPUT)
    (b,) = decode_yolov8_seg(np.transpose(head, (0, 2, 1)), _protos(), SPEC, tf, INPUT)
    assert a.masks == b.masks
    with pytest.raises(DataError, match="9 channels"):
        decode_yolov8_seg(np.zeros((1, 8, 10)), _protos(), SPEC, tf, INPUT)
    with pytest.raises(DataError, match="prototypes"):
        decode_yolov8_seg(head, np.zeros((1, 4, 16, 16)), SPEC, tf, INPUT)
    with pytest.raises(ConfigError):
        YoloSegSpec(num_classes=2, mask_threshold=1.0)


def test_nms_removes_duplicate_instances() -> None:
    head = _head([(A_BOX, 0, 0.9, [1, 0, 0]), ([22.5, 20.0, 20.0, 32.0], 0, 0.85, [0, 0, 1])])
    (inst,) = decode_yolov8_seg(head, _protos(), SPEC, [Transform(1, 1, 0, 0, 64, 64)], INPUT)
    assert len(inst) == 1
    assert inst.scores.tolist() == pytest.approx([0.9])


def test_sample_to_original_region_and_threshold() -> None:
    logits = np.linspace(-1, 1, 8, dtype=np.float32)[None, :].repeat(4, 0)  # (4, 8) map, 1 pixel per cell
    m = sample_to_original(logits, (1.0, 1.0), Transform(1, 1, 0, 0, 8, 4), region_net=[0, 0, 6, 4])
    assert m[:, :4].sum() == 0  # negative logits
    assert m[:, 4:6].all()
    assert not m[:, 6:].any()
    with pytest.raises(DataError):
        sample_to_original(np.zeros(5), (1.0, 1.0), Transform(1, 1, 0, 0, 5, 1))


def test_mask_ap_perfect_and_perturbed() -> None:
    hw = (64, 64)
    gt = _gt([(_rect(hw, (12, 32), (8, 32)), 1), (_rect(hw, (40, 60), (36, 60)), 2)], hw)
    tf = [Transform(1, 1, 0, 0, 64, 64)]
    cat_map = {0: 1, 1: 2}
    perfect = decode_yolov8_seg(_head([(A_BOX, 0, 0.9, [1, 0, 0]), (B_BOX, 1, 0.8, [0, 1, 0])]), _protos(), SPEC, tf,
                                INPUT)[0]  # fmt: skip
    s = evaluate_masks(gt, to_coco_mask_results(1, perfect, cat_map), [1])
    assert s.ap == pytest.approx(1.0)
    assert s.per_class_ap == {"a": pytest.approx(1.0), "b": pytest.approx(1.0)}
    # A from channel 2: rows [16, 32) of [8, 32), IoU 2/3: matched at thresholds .50-.65 (4 of 10), class AP 0.4
    moved = decode_yolov8_seg(_head([(A_BOX, 0, 0.9, [0, 0, 1]), (B_BOX, 1, 0.8, [0, 1, 0])]), _protos(), SPEC, tf,
                              INPUT)[0]  # fmt: skip
    s = evaluate_masks(gt, to_coco_mask_results(1, moved, cat_map), [1])
    assert s.per_class_ap["a"] == pytest.approx(0.4)
    assert s.ap == pytest.approx(0.7)
    assert s.ap50 == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="category map"):
        to_coco_mask_results(1, moved, {0: 1})


def test_mask_ap_against_polygon_labels_and_empty_cases() -> None:
    hw = (64, 64)
    gt = _gt([(_rect(hw, (12, 32), (8, 32)), 1)], hw)
    gt["annotations"][0]["segmentation"] = [[12, 8, 32, 8, 32, 32, 12, 32]]
    tf = [Transform(1, 1, 0, 0, 64, 64)]
    inst = decode_yolov8_seg(_head([(A_BOX, 0, 0.9, [1, 0, 0])]), _protos(), SPEC, tf, INPUT)[0]
    assert evaluate_masks(gt, to_coco_mask_results(1, inst, {0: 1}), [1]).ap50 == pytest.approx(1.0)
    empty = evaluate_masks(gt, [], [1])
    assert empty.empty
    assert math.isnan(empty.ap)


def test_mask_agreement_known_iou() -> None:
    tf = [Transform(1, 1, 0, 0, 64, 64)]
    ref = decode_yolov8_seg(_head([(A_BOX, 0, 0.9, [1, 0, 0]), (B_BOX, 1, 0.8, [0, 1, 0])]), _protos(), SPEC, tf,
                            INPUT)[0]  # fmt: skip
    tgt = decode_yolov8_seg(_head([(B_BOX, 1, 0.8, [0, 1, 0]), (A_BOX, 0, 0.9, [0, 0, 1])]), _protos(), SPEC, tf,
                            INPUT)[0]  # fmt: skip
    agg = MaskAgreement(class_names=["a", "b"])
    agg.add(1, ref, ref)
    same = agg.result()
    assert same.mean_iou == pytest.approx(1.0)
    assert same.scores.ap == pytest.approx(1.0)
    agg = MaskAgreement(class_names=["a", "b"])
    agg.add(1, ref, tgt)
    r = agg.result()
    assert r.mean_iou == pytest.approx((2 / 3 + 1) / 2)
    assert r.min_iou == pytest.approx(2 / 3)
    assert r.scores.ap == pytest.approx(0.7)
    agg = MaskAgreement()
    agg.add(1, ref, InstanceMasks.empty((64, 64)))
    missing = agg.result()
    assert missing.mean_iou == 0.0
    assert missing.scores.empty


def test_slices_are_data() -> None:
    s = yolov8_seg_slices(80)
    assert s == {
        "boxes": {"axis": 1, "start": 0, "stop": 4},
        "scores": {"axis": 1, "start": 4, "stop": 84},
        "coefficients": {"axis": 1, "start": 84, "stop": 116},
    }
    from qc.config import Slice

    assert all(Slice(**v).stop is not None for v in s.values())
