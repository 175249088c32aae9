"""Category mapping, result conversion, COCO evaluation (faster-coco-eval and pycocotools) and agreement AP."""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import pytest

from qc.errors import ConfigError, DataError, MetricError
from qc.eval.coco import (
    CocoScores,
    agreement_ap,
    category_map_by_name,
    evaluate_coco,
    evaluate_coco_pycocotools,
    to_coco_results,
)
from qc.eval.types import Detections

COCO_CATS = [
    {"id": 1, "name": "person"},
    {"id": 3, "name": "car"},
    {"id": 4, "name": "motorcycle"},
    {"id": 5, "name": "airplane"},
    {"id": 63, "name": "couch"},
    {"id": 64, "name": "potted plant"},
    {"id": 67, "name": "dining table"},
    {"id": 72, "name": "tv"},
]


# ---------------------------------------------------------------------------------------------- category map


def test_category_map_with_darknet_and_voc_spellings() -> None:
    names = ["Person", "aeroplane", "motorbike", "sofa", "pottedplant", "diningtable", "tvmonitor", "car"]
    assert category_map_by_name(names, COCO_CATS) == {0: 1, 1: 5, 2: 4, 3: 63, 4: 64, 5: 67, 6: 72, 7: 3}
    assert category_map_by_name(["tv_monitor", "dining_table"], COCO_CATS) == {0: 72, 1: 67}
    assert category_map_by_name(["monitor"], COCO_CATS) == {0: 72}


def test_category_map_unknown_names_are_listed() -> None:
    with pytest.raises(ConfigError, match=r"2 model class name\(s\).*1: 'unicorn', 3: 'dragon'"):
        category_map_by_name(["person", "unicorn", "car", "dragon"], COCO_CATS)


def test_category_map_duplicates_rejected() -> None:
    with pytest.raises(ConfigError, match="'tv'"):
        category_map_by_name(["tv", "tvmonitor"], COCO_CATS)


def test_to_coco_results() -> None:
    det = Detections(np.array([[10, 20, 40, 80]]), np.array([0.75]), np.array([1]))
    res = to_coco_results(7, det, {1: 3})
    assert res == [{"image_id": 7, "category_id": 3, "bbox": [10.0, 20.0, 30.0, 60.0], "score": 0.75}]
    assert to_coco_results(7, Detections.empty(), {}) == []
    with pytest.raises(ConfigError, match=r"\[1\]"):
        to_coco_results(7, det, {0: 1})


# ---------------------------------------------------------------------------------------------- evaluation


def synthetic_gt(n_images: int = 6, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    images: list[dict[str, Any]] = []
    anns: list[dict[str, Any]] = []
    for iid in range(1, n_images + 1):
        images.append({"id": iid, "width": 640, "height": 480, "file_name": f"{iid}.jpg"})
        for _ in range(int(rng.integers(1, 5))):
            x, y = rng.uniform(0, 400), rng.uniform(0, 300)
            w, h = rng.uniform(20, 200), rng.uniform(20, 150)
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": iid,
                    "category_id": int(rng.choice([1, 3, 72])),
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
    return {"images": images, "annotations": anns, "categories": COCO_CATS}


def perfect_results(gt: dict[str, Any], shift: float = 0.0) -> list[dict[str, Any]]:
    return [
        {
            "image_id": a["image_id"],
            "category_id": a["category_id"],
            "bbox": [a["bbox"][0] + shift * a["bbox"][2], a["bbox"][1], a["bbox"][2], a["bbox"][3]],
            "score": 0.9 - 0.001 * i,
        }
        for i, a in enumerate(gt["annotations"])
    ]


def all_ids(gt: dict[str, Any]) -> list[int]:
    return [im["id"] for im in gt["images"]]


def test_perfect_detections_give_ap_one() -> None:
    gt = synthetic_gt()
    before = copy.deepcopy(gt)
    res = perfect_results(gt)
    res_before = copy.deepcopy(res)
    s = evaluate_coco(gt, res, all_ids(gt))
    assert not s.empty
    assert (s.ap, s.ap50, s.ap75, s.ar100) == pytest.approx((1.0, 1.0, 1.0, 1.0))
    assert set(s.per_class_ap) == {"person", "car", "tv"}
    assert all(v == pytest.approx(1.0) for v in s.per_class_ap.values())
    assert s.num_images == 6
    assert s.num_detections == s.num_ground_truth == len(gt["annotations"])
    assert gt == before  # inputs are not modified
    assert res == res_before


def test_shifted_boxes_lower_ap() -> None:
    gt = synthetic_gt()
    s = evaluate_coco(gt, perfect_results(gt, shift=0.2), all_ids(gt))
    assert 0.0 < s.ap < 1.0
    assert s.ap50 == pytest.approx(1.0)  # IoU 0.8 / 1.2 = 0.667 >= 0.5
    assert s.ap75 == pytest.approx(0.0)
    far = evaluate_coco(gt, perfect_results(gt, shift=2.0), all_ids(gt))
    assert far.ap == pytest.approx(0.0)


def test_subset_restricts_evaluation() -> None:
    gt = synthetic_gt()
    res = [r for r in perfect_results(gt) if r["image_id"] <= 3]
    assert evaluate_coco(gt, res, [1, 2, 3]).ap == pytest.approx(1.0)
    assert evaluate_coco(gt, res, all_ids(gt)).ar100 < 1.0
    with pytest.raises(DataError, match="not in the ground truth"):
        evaluate_coco(gt, res, [1, 999])


@pytest.mark.parametrize("evaluate", [evaluate_coco, evaluate_coco_pycocotools])
def test_empty_results_are_flagged(evaluate: Any) -> None:
    gt = synthetic_gt()
    s: CocoScores = evaluate(gt, [], all_ids(gt))
    assert s.empty
    assert "no detections" in s.reason
    assert math.isnan(s.ap)
    assert not s.ap >= 0.0  # every gate comparison fails
    with pytest.raises(MetricError, match="no detections"):
        s.require()
    no_gt = {**gt, "annotations": []}
    s2 = evaluate(no_gt, perfect_results(gt), all_ids(gt))
    assert s2.empty
    assert "no (non-crowd) annotations" in s2.reason


def test_faster_coco_eval_matches_pycocotools() -> None:
    gt = synthetic_gt(n_images=25, seed=5)
    rng = np.random.default_rng(11)
    res: list[dict[str, Any]] = []
    for a in gt["annotations"]:  # noisy true positives, some with the wrong class
        for _ in range(int(rng.integers(0, 3))):
            x, y, w, h = a["bbox"]
            jit = rng.normal(0, 0.12, 4) * [w, h, w, h]
            cat = a["category_id"] if rng.random() > 0.2 else 3
            res.append(
                {
                    "image_id": a["image_id"],
                    "category_id": cat,
                    "bbox": [x + jit[0], y + jit[1], max(1.0, w + jit[2]), max(1.0, h + jit[3])],
                    "score": float(rng.uniform(0.05, 1.0)),
                }
            )
    for iid in all_ids(gt):  # false positives
        for _ in range(5):
            res.append(
                {
                    "image_id": iid,
                    "category_id": int(rng.choice([1, 3, 72])),
                    "bbox": [*rng.uniform(0, 400, 2).tolist(), *rng.uniform(10, 150, 2).tolist()],
                    "score": float(rng.uniform(0.0, 0.6)),
                }
            )
    ids = all_ids(gt)[:20]
    fast = evaluate_coco(gt, res, ids)
    ref = evaluate_coco_pycocotools(gt, res, ids)
    assert 0.05 < ref.ap < 0.95
    for field in ("ap", "ap50", "ap75", "ar100"):
        assert getattr(fast, field) == pytest.approx(getattr(ref, field), abs=1e-6)
    assert fast.per_class_ap.keys() == ref.per_class_ap.keys()
    for k, v in ref.per_class_ap.items():
        assert fast.per_class_ap[k] == pytest.approx(v, abs=1e-6)


# ---------------------------------------------------------------------------------------------- agreement


def random_dets(rng: np.random.Generator, n: int) -> Detections:
    xy = rng.uniform(0, 300, (n, 2))
    wh = rng.uniform(20, 100, (n, 2))
    return Detections(np.concatenate([xy, xy + wh], 1), rng.uniform(0.0, 1.0, n), rng.integers(0, 3, n))


def test_agreement_identical_is_one() -> None:
    rng = np.random.default_rng(0)
    ref = {i: random_dets(rng, 12) for i in range(1, 6)}
    s = agreement_ap(ref, ref, image_sizes={i: (400, 400) for i in ref}, class_names=["a", "b", "c"])
    assert not s.empty
    assert (s.ap, s.ap50, s.ar100) == pytest.approx((1.0, 1.0, 1.0))
    assert set(s.per_class_ap) <= {"a", "b", "c"}
    s_ref = agreement_ap(ref, ref, backend="pycocotools")
    assert s_ref.ap == pytest.approx(1.0)


def test_agreement_degraded_target_is_lower() -> None:
    rng = np.random.default_rng(1)
    ref = {i: random_dets(rng, 12) for i in range(1, 6)}
    tgt = {i: Detections(d.boxes + 15.0, d.scores, d.classes) for i, d in ref.items()}
    s = agreement_ap(ref, tgt)
    assert 0.0 <= s.ap < 0.9


def test_agreement_empty_sides_are_flagged() -> None:
    rng = np.random.default_rng(2)
    ref = {i: random_dets(rng, 8) for i in range(1, 4)}
    empty = {i: Detections.empty() for i in ref}
    s = agreement_ap(ref, empty)
    assert s.empty
    assert "no detections" in s.reason
    low = {i: Detections(d.boxes, d.scores * 0.1, d.classes) for i, d in ref.items()}
    s2 = agreement_ap(low, ref, deploy_threshold=0.25)
    assert s2.empty
    assert "reference has no detection" in s2.reason
    with pytest.raises(DataError, match="same images"):
        agreement_ap(ref, {1: ref[1]})
