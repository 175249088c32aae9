"""Keypoints: top-down crops and their inverse, decoders, OKS, COCO keypoint AP and label-free agreement."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from qc.errors import ConfigError, DataError, MetricError
from qc.eval.keypoints import (
    COCO_KEYPOINT_NAMES,
    COCO_SIGMAS,
    MEDIAPIPE_POSE_TO_COCO,
    KeypointAgreement,
    Poses,
    RegressionSpec,
    YoloPoseSpec,
    crop_box,
    decode_heatmaps,
    decode_regression,
    decode_yolo_pose,
    evaluate_oks,
    oks,
    person_crop,
    points_to_original,
    poses_to_original,
    to_coco_keypoint_results,
    top_down_person,
    yolo_pose_slices,
)

SIG = np.asarray(COCO_SIGMAS)


def _person(rng: np.random.Generator, x0: float, y0: float, w: float, h: float) -> np.ndarray:
    """17 keypoints inside the box, all visible (score 1)."""
    xy = np.stack([x0 + rng.uniform(0.1, 0.9, 17) * w, y0 + rng.uniform(0.1, 0.9, 17) * h], axis=1)
    return np.concatenate([xy, np.ones((17, 1))], axis=1)


def _gt(people: list[tuple[int, np.ndarray, list[float]]]) -> dict[str, Any]:
    anns = []
    for k, (iid, kp, box) in enumerate(people):
        flat = np.concatenate([kp[:, :2], np.full((len(kp), 1), 2.0)], axis=1).reshape(-1).tolist()
        anns.append(
            {
                "id": k + 1, "image_id": iid, "category_id": 1, "keypoints": flat, "num_keypoints": len(kp),
                "bbox": box, "area": box[2] * box[3], "iscrowd": 0,
            }
        )  # fmt: skip
    ids = sorted({p[0] for p in people})
    return {
        "images": [{"id": i, "width": 640, "height": 480} for i in ids],
        "annotations": anns,
        "categories": [{"id": 1, "name": "person", "keypoints": list(COCO_KEYPOINT_NAMES)}],
    }


def _shift_for_oks(target: float, area: float) -> np.ndarray:
    """Per-keypoint distances that give every keypoint (hence the person) exactly OKS ``target``."""
    return np.sqrt(-math.log(target) * 2 * area * (2 * SIG) ** 2)


# ------------------------------------------------------------------------------------------------ crops


def test_crop_box_scales_and_matches_the_input_aspect() -> None:
    x1, y1, x2, y2 = crop_box([100, 50, 140, 250], (256, 192), box_scale=1.25)
    assert (x2 + x1) / 2 == pytest.approx(120)
    assert (y2 + y1) / 2 == pytest.approx(150)
    assert y2 - y1 == pytest.approx(250.0)  # the long side times 1.25
    assert (x2 - x1) / (y2 - y1) == pytest.approx(192 / 256)
    sq = crop_box([0, 0, 100, 40], (256, 256), box_scale=1.0)
    assert sq[2] - sq[0] == pytest.approx(100)
    assert sq[3] - sq[1] == pytest.approx(100)


def test_crop_box_rejects_empty_boxes() -> None:
    with pytest.raises(DataError, match="empty"):
        crop_box([10, 10, 10, 20], (256, 256))


def test_person_crop_samples_pixel_centres_and_inverts_exactly() -> None:
    h, w = 120, 200
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = np.arange(w, dtype=np.uint8)[None, :]  # R = column index
    img[..., 1] = np.arange(h, dtype=np.uint8)[:, None]  # G = row index
    crop, tf = person_crop(img, [60, 30, 100, 90], (32, 32), box_scale=1.0)
    # region is the square [50, 110) x [30, 90): crop pixel u samples column 50 + (u + .5) * 60/32 - .5
    u = np.arange(32)
    expect_x = 50 + (u + 0.5) * 60 / 32 - 0.5
    np.testing.assert_allclose(crop[0, :, 0], expect_x, atol=1e-3)
    np.testing.assert_allclose(crop[:, 0, 1], 30 + (u + 0.5) * 60 / 32 - 0.5, atol=1e-3)
    # crop pixel centres map back to the sampled continuous positions (index + 0.5)
    back = points_to_original(np.stack([u + 0.5, u + 0.5], axis=1), tf)
    np.testing.assert_allclose(back[:, 0], expect_x + 0.5, atol=1e-4)
    np.testing.assert_allclose(back[:, 1], 30 + (u + 0.5) * 60 / 32, atol=1e-4)


def test_person_crop_border_modes() -> None:
    img = np.full((20, 20, 3), 200, np.uint8)
    rep, _ = person_crop(img, [0, 0, 20, 20], (8, 8), box_scale=2.0)
    con, _ = person_crop(img, [0, 0, 20, 20], (8, 8), box_scale=2.0, border="constant", pad_value=7)
    assert np.all(rep == 200)
    assert con[0, 0, 0] == 7
    assert con[4, 4, 0] == 200


# ---------------------------------------------------------------------------------------------- decoders


def test_decode_regression_mediapipe_layout() -> None:
    raw = np.zeros((39, 5), np.float32)
    raw[:, 0], raw[:, 1], raw[:, 3] = np.arange(39), 2 * np.arange(39), 0.0  # visibility logit 0 -> 0.5
    raw[5, 3] = 10.0
    spec = RegressionSpec(num_keypoints=33, values_per_point=5, score_index=3, score_activation="sigmoid")
    kp = decode_regression(raw.reshape(1, 195), spec, (256, 256))
    assert kp.shape == (33, 3)
    np.testing.assert_allclose(kp[:, 0], np.arange(33))
    np.testing.assert_allclose(kp[:, 1], 2 * np.arange(33))
    assert kp[0, 2] == pytest.approx(0.5)
    assert kp[5, 2] == pytest.approx(1 / (1 + math.exp(-10)))


def test_decode_regression_normalized_and_bad_sizes() -> None:
    spec = RegressionSpec(num_keypoints=2, values_per_point=2, score_index=None, coordinates="normalized")
    kp = decode_regression([0.5, 0.25, 1.0, 0.0], spec, (100, 200))
    np.testing.assert_allclose(kp, [[100, 25, 1], [200, 0, 1]])
    with pytest.raises(DataError, match="multiple of 2"):
        decode_regression([1.0, 2.0, 3.0], spec, (100, 200))
    with pytest.raises(ConfigError):
        RegressionSpec(num_keypoints=2, values_per_point=2, score_index=2)


def test_decode_heatmaps_argmax_with_quarter_offset() -> None:
    hm = np.zeros((2, 16, 12), np.float32)
    hm[0, 5, 7], hm[0, 5, 8] = 0.9, 0.5  # higher right neighbour: +0.25 cell in x
    hm[1, 0, 0] = 0.8  # on the border: no offset
    kp = decode_heatmaps(hm[None], (64, 48))
    np.testing.assert_allclose(kp[0], [(7.25 + 0.5) * 4, (5 + 0.5) * 4, 0.9])
    np.testing.assert_allclose(kp[1], [2.0, 2.0, 0.8])


def test_top_down_person_maps_points_to_the_image() -> None:
    img = np.zeros((100, 100, 3), np.uint8)
    _, tf = person_crop(img, [20, 20, 60, 60], (64, 64), box_scale=1.0)
    person = top_down_person(np.array([[0.0, 0.0, 0.9], [64.0, 32.0, 0.1]]), tf, [20, 20, 60, 60], 0.7)
    np.testing.assert_allclose(person.keypoints[0], [[20, 20, 0.9], [60, 40, 0.1]], atol=1e-4)
    assert person.scores.tolist() == pytest.approx([0.7])


def _yolo_head(rows: list[tuple[list[float], float, np.ndarray]], anchors: int) -> np.ndarray:
    out = np.zeros((anchors, 4 + 1 + 51), np.float32)
    for i, (cxcywh, score, kp) in enumerate(rows):
        out[i, :4], out[i, 4], out[i, 5:] = cxcywh, score, kp.reshape(-1)
    return out.T[None]  # (1, 56, anchors)


def test_decode_yolo_pose_nms_and_gather() -> None:
    rng = np.random.default_rng(0)
    a, b = _person(rng, 10, 10, 50, 100), _person(rng, 200, 50, 60, 120)
    head = _yolo_head(
        [([35, 60, 50, 100], 0.9, a), ([36, 61, 50, 100], 0.8, a + 1), ([230, 110, 60, 120], 0.7, b)], 100
    )
    spec = YoloPoseSpec(score_threshold=0.25)
    for tensor in (head, np.transpose(head, (0, 2, 1))):
        (people,) = decode_yolo_pose(tensor, spec)
        assert len(people) == 2
        np.testing.assert_allclose(people.boxes[0], [10, 10, 60, 110])
        np.testing.assert_allclose(people.keypoints[0], a, rtol=1e-6)
        np.testing.assert_allclose(people.keypoints[1], b, rtol=1e-6)
    with pytest.raises(DataError, match="56 channels"):
        decode_yolo_pose(np.zeros((1, 50, 10)), spec)
    assert yolo_pose_slices()["keypoints"] == {"axis": 1, "start": 5, "stop": 56}


def test_poses_to_original_with_letterbox_transform() -> None:
    from qc.data.preprocess import Transform

    tf = Transform(0.5, 0.5, 0.0, 40.0, 200, 100)
    p = Poses([[10, 50, 30, 90]], [0.9], [[[20, 60, 1.0]]])
    q = poses_to_original(p, tf)
    np.testing.assert_allclose(q.boxes, [[20, 20, 60, 100]])
    np.testing.assert_allclose(q.keypoints, [[[40, 40, 1.0]]])


# ---------------------------------------------------------------------------------------------------- OKS


def test_oks_formula() -> None:
    ref = np.zeros((17, 2))
    assert oks(ref, ref, np.ones(17, bool), 100.0) == pytest.approx(1.0)
    d = _shift_for_oks(0.6, 400.0)
    assert oks(ref + np.stack([d, 0 * d], 1), ref, np.ones(17, bool), 400.0) == pytest.approx(0.6)
    assert math.isnan(oks(ref, ref, np.zeros(17, bool), 100.0))
    with pytest.raises(ConfigError, match="3 OKS sigmas"):
        oks(ref, ref, np.ones(17, bool), 1.0, sigmas=[0.1, 0.1, 0.1])


def test_evaluate_oks_perfect_and_perturbed() -> None:
    rng = np.random.default_rng(1)
    a, b = _person(rng, 50, 40, 80, 200), _person(rng, 300, 60, 90, 220)
    gt = _gt([(1, a, [50, 40, 80, 200]), (2, b, [300, 60, 90, 220])])
    perfect = to_coco_keypoint_results(1, Poses([[50, 40, 130, 240]], [0.9], [a])) + to_coco_keypoint_results(
        2, Poses([[300, 60, 390, 280]], [0.8], [b])
    )
    s = evaluate_oks(gt, perfect, [1, 2])
    assert s.ap == pytest.approx(1.0)
    assert s.ap50 == pytest.approx(1.0)
    assert not s.empty
    # one person at OKS 0.72 exactly: matched at thresholds .50-.70 (5 of 10) -> AP 0.5
    d = _shift_for_oks(0.72, 80 * 200)
    moved = a.copy()
    moved[:, 0] += d
    single_gt = _gt([(1, a, [50, 40, 80, 200])])
    s = evaluate_oks(single_gt, to_coco_keypoint_results(1, Poses([[50, 40, 130, 240]], [0.9], [moved])), [1])
    assert s.ap == pytest.approx(0.5)
    assert s.ap50 == pytest.approx(1.0)
    assert s.ap75 == pytest.approx(0.0)


def test_evaluate_oks_keypoint_map_and_custom_sigmas() -> None:
    rng = np.random.default_rng(2)
    a = _person(rng, 50, 40, 80, 200)
    gt = _gt([(1, a, [50, 40, 80, 200])])
    mp33 = np.zeros((33, 3), np.float32)
    mp33[list(MEDIAPIPE_POSE_TO_COCO)] = a
    pred = Poses([[50, 40, 130, 240]], [0.9], [mp33])
    with pytest.raises(ConfigError, match="keypoint map"):
        evaluate_oks(gt, to_coco_keypoint_results(1, pred), [1])
    res = to_coco_keypoint_results(1, pred, keypoint_map=MEDIAPIPE_POSE_TO_COCO)
    assert evaluate_oks(gt, res, [1]).ap == pytest.approx(1.0)
    # larger sigmas are more lenient: a shift failing at COCO's sigmas passes at 10x
    moved = a.copy()
    moved[:, 0] += _shift_for_oks(0.3, 80 * 200)
    res = to_coco_keypoint_results(1, Poses([[50, 40, 130, 240]], [0.9], [moved]))
    assert evaluate_oks(gt, res, [1]).ap == pytest.approx(0.0)
    assert evaluate_oks(gt, res, [1], sigmas=(SIG * 10).tolist()).ap == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="one sigma per keypoint"):
        evaluate_oks(gt, res, [1], sigmas=[0.1] * 5)


def test_evaluate_oks_empty_cases_are_flagged() -> None:
    rng = np.random.default_rng(3)
    gt = _gt([(1, _person(rng, 0, 0, 50, 50), [0, 0, 50, 50])])
    s = evaluate_oks(gt, [], [1])
    assert s.empty
    assert math.isnan(s.ap)
    assert "no people" in s.reason
    with pytest.raises(MetricError):
        s.require()
    with pytest.raises(DataError, match="not in the ground truth"):
        evaluate_oks(gt, [], [7])


# ------------------------------------------------------------------------------------------------ agreement


def test_agreement_identical_is_perfect() -> None:
    rng = np.random.default_rng(4)
    ref = Poses([[10, 10, 110, 210], [300, 20, 380, 220]], [1, 1], [_person(rng, 10, 10, 100, 200),
                                                                     _person(rng, 300, 20, 80, 200)])  # fmt: skip
    agg = KeypointAgreement(17, names=COCO_KEYPOINT_NAMES)
    agg.add(1, ref, ref, paired=True)
    r = agg.result()
    assert r.mean_oks == pytest.approx(1.0)
    assert r.min_oks == pytest.approx(1.0)
    assert r.ap == pytest.approx(1.0)
    assert r.num_matched == 2
    assert all(v == pytest.approx(0.0) for v in r.per_keypoint_error.values())


def test_agreement_measures_a_known_shift_and_finds_the_worst_keypoint() -> None:
    rng = np.random.default_rng(5)
    kp = _person(rng, 0, 0, 100, 100)
    ref = Poses([[0, 0, 100, 100]], [1], [kp])
    moved = kp.copy()
    moved[9, 0] += 30.0  # left wrist off by 30 px, everything else exact
    agg = KeypointAgreement(17, names=COCO_KEYPOINT_NAMES)
    agg.add(3, ref, Poses(ref.boxes, [1], [moved]), paired=True)
    r = agg.result()
    e = math.exp(-(30.0**2) / ((2 * SIG[9]) ** 2) / (2 * 100 * 100))
    assert r.mean_oks == pytest.approx((16 + e) / 17)
    ((worst_name, worst_error),) = r.worst(1)
    assert worst_name == "left_wrist"
    assert worst_error == pytest.approx(30.0 / 100.0)
    assert r.per_keypoint_pixels["left_wrist"] == pytest.approx(30.0)


def test_agreement_unpaired_matches_people_by_oks_and_skips_invisible_points() -> None:
    rng = np.random.default_rng(6)
    a, b = _person(rng, 0, 0, 100, 200), _person(rng, 300, 0, 100, 200)
    a[:3, 2] = 0.1  # three reference keypoints not visible: they do not count
    ref = Poses([[0, 0, 100, 200], [300, 0, 400, 200]], [0.9, 0.8], [a, b])
    tgt_kp_a = a.copy()
    tgt_kp_a[:3, :2] += 500.0
    tgt = Poses([[300, 0, 400, 200], [0, 0, 100, 200]], [0.8, 0.9], [b, tgt_kp_a])  # swapped order
    agg = KeypointAgreement(17)
    agg.add(1, ref, tgt)
    r = agg.result()
    assert r.num_matched == 2
    assert r.mean_oks == pytest.approx(1.0)
    # keypoint 0 of person a is 500 px off but invisible in the reference: only person b's (exact) one counts
    assert r.per_keypoint_error["0"] == pytest.approx(0.0)
    assert r.per_keypoint_error["5"] == pytest.approx(0.0)


def test_agreement_empty_and_shape_errors() -> None:
    agg = KeypointAgreement(17)
    empty = Poses.stack([], 17)
    agg.add(1, empty, empty, paired=True)
    r = agg.result()
    assert r.empty
    assert math.isnan(r.mean_oks)
    with pytest.raises(MetricError):
        r.require()
    with pytest.raises(DataError, match="33 keypoints"):
        agg.add(2, Poses([[0, 0, 1, 1]], [1], np.zeros((1, 33, 3))), empty)
    with pytest.raises(ConfigError, match="out of range"):
        Poses([[0, 0, 1, 1]], [1], np.zeros((1, 5, 3))).select_keypoints([7])


def test_paired_agreement_leaves_out_people_the_reference_does_not_see() -> None:
    rng = np.random.default_rng(7)
    a, b = _person(rng, 0, 0, 100, 200), _person(rng, 300, 0, 100, 200)
    ref = Poses([[0, 0, 100, 200], [300, 0, 400, 200]], [0.9, 0.1], [a, b])  # b: presence 0.1
    tgt = Poses(ref.boxes, [0.8, 0.9], [a, b + 80.0])  # b: far off and confident, but absent in the reference
    agg = KeypointAgreement(17, person_threshold=0.5)
    agg.add(1, ref, tgt, paired=True)
    r = agg.result()
    assert r.num_people == 1
    assert r.num_absent == 1
    assert r.mean_oks == pytest.approx(1.0)
    assert r.ap == pytest.approx(0.5)  # the confident target person the reference does not see: a false positive
