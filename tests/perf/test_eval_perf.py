"""Speed of qc.eval: decode + NMS, and COCO evaluation at dataset scale.

Run: ``pytest tests/perf -p no:cacheprovider --benchmark-only``.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import numpy.typing as npt
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from qc.eval.coco import CocoScores, evaluate_coco
from qc.eval.decoders import DecodeSettings, get_decoder
from qc.eval.types import RawDetections

pytestmark = pytest.mark.perf

N_IMAGES_DECODE = 1000
N_ANCHORS = 2535  # yolov3-tiny at 416x416: (13*13 + 26*26) * 3
NC = 80
N_IMAGES_COCO = 5000
DETS_PER_IMAGE = 100


def _sigmoid(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    out: npt.NDArray[np.float64] = 1.0 / (1.0 + np.exp(-x))
    return out


def yolo_output(rng: np.random.Generator, size: float = 416.0, n_obj: int = 6) -> npt.NDArray[np.float32]:
    """A realistic (1, 2535, 85) decoded YOLO output: most objectness and class scores small, a few objects each
    found by a cluster of ~20 anchors. At the 0.001 evaluation threshold this yields ~9,000 multi-label
    candidates, as real models do."""
    t = np.zeros((1, N_ANCHORS, 5 + NC), dtype=np.float32)
    t[0, :, 0:2] = rng.uniform(0, size, (N_ANCHORS, 2))
    t[0, :, 2:4] = rng.uniform(8, 160, (N_ANCHORS, 2))
    t[0, :, 4] = _sigmoid(rng.normal(-9.0, 1.5, N_ANCHORS))
    t[0, :, 5:] = _sigmoid(rng.normal(-4.0, 1.5, (N_ANCHORS, NC)))
    for _ in range(n_obj):
        idx = rng.choice(N_ANCHORS, 20, replace=False)
        cls = int(rng.integers(NC))
        center, wh = rng.uniform(60, 350, 2), rng.uniform(20, 150, 2)
        t[0, idx, 0:2] = center + rng.normal(0, 3, (20, 2))
        t[0, idx, 2:4] = wh + rng.normal(0, 3, (20, 2))
        t[0, idx, 4] = rng.uniform(0.2, 0.95, 20)
        t[0, idx, 5 + cls] = rng.uniform(0.5, 0.99, 20)
    return t


def test_decode_nms_1000_images(benchmark: BenchmarkFixture) -> None:
    rng = np.random.default_rng(0)
    outputs = [yolo_output(rng) for _ in range(16)]  # cycled: 1,000 distinct arrays would need 860 MB
    decode = get_decoder("yolo-decoded")
    settings = DecodeSettings()  # evaluation: score 0.001, IoU 0.45, 100 detections, multi-label

    def run() -> list[RawDetections]:
        out: list[RawDetections] = []
        for i in range(N_IMAGES_DECODE):
            out.extend(decode({"output0": outputs[i % len(outputs)]}, settings))
        return out

    dets = cast(Any, benchmark).pedantic(run, rounds=5, iterations=1, warmup_rounds=1)
    assert len(dets) == N_IMAGES_DECODE
    assert all(len(d) == settings.max_detections for d in dets)
    # budget: under a second; the figure goes to the stored benchmark JSON and the README, not to an assert


def coco_case(seed: int = 0) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """5,000 images, ~7 ground-truth boxes each over 80 categories, 100 detections per image (jittered true
    positives, wrong classes, background)."""
    rng = np.random.default_rng(seed)
    cats = [{"id": c + 1, "name": f"class{c}"} for c in range(NC)]
    images = [{"id": i + 1, "width": 640, "height": 480} for i in range(N_IMAGES_COCO)]
    n_gt = rng.integers(1, 14, N_IMAGES_COCO)
    gt_img = np.repeat(np.arange(1, N_IMAGES_COCO + 1), n_gt)
    m = gt_img.size
    gt_xy = rng.uniform(0, 500, (m, 2))
    gt_wh = rng.uniform(8, 200, (m, 2))
    gt_cat = rng.integers(1, NC + 1, m)
    anns = [
        {"id": k + 1, "image_id": int(i), "category_id": int(c), "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0}
        for k, (i, c, (x, y), (w, h)) in enumerate(
            zip(gt_img.tolist(), gt_cat.tolist(), gt_xy.tolist(), gt_wh.tolist(), strict=True)
        )
    ]
    # detections: for each image, copies of its gt boxes with jitter, the rest random background
    starts = np.concatenate([[0], np.cumsum(n_gt)[:-1]])
    pick = starts[:, None] + (rng.integers(0, 1 << 30, (N_IMAGES_COCO, DETS_PER_IMAGE)) % n_gt[:, None])
    pick = pick.ravel()
    det_img = np.repeat(np.arange(1, N_IMAGES_COCO + 1), DETS_PER_IMAGE)
    n = det_img.size
    xy = gt_xy[pick] + rng.normal(0, 0.1, (n, 2)) * gt_wh[pick]
    wh = gt_wh[pick] * rng.uniform(0.8, 1.25, (n, 2))
    cat = gt_cat[pick].copy()
    background = rng.random(n) < 0.6
    xy[background] = rng.uniform(0, 500, (int(background.sum()), 2))
    wrong = rng.random(n) < 0.1
    cat[wrong] = rng.integers(1, NC + 1, int(wrong.sum()))
    score = np.where(background, rng.uniform(0.001, 0.5, n), rng.uniform(0.1, 1.0, n))
    results = [
        {"image_id": int(i), "category_id": int(c), "bbox": [x, y, w, h], "score": s}
        for i, c, (x, y), (w, h), s in zip(
            det_img.tolist(), cat.tolist(), xy.tolist(), wh.tolist(), score.tolist(), strict=True
        )
    ]
    return {"images": images, "annotations": anns, "categories": cats}, results


def test_coco_eval_5000_images(benchmark: BenchmarkFixture) -> None:
    gt, results = coco_case()
    ids = [im["id"] for im in gt["images"]]

    def run() -> CocoScores:
        return evaluate_coco(gt, results, ids)

    scores = cast(Any, benchmark).pedantic(run, rounds=2, iterations=1)
    assert not scores.empty
    assert scores.num_detections == N_IMAGES_COCO * DETS_PER_IMAGE
    assert 0.05 < scores.ap < 0.95
    # budget: seconds, not minutes; the figure goes to the stored benchmark JSON and the README
