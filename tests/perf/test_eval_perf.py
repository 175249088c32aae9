"""Speed of qc.eval: decode + NMS, and COCO evaluation at dataset scale, each also paired with the implementation
it replaces (a classic greedy NMS loop; pycocotools) with a floor on the speed-up (see :mod:`tests.perf.pairs`).

Run: ``pytest tests/perf -p no:cacheprovider --benchmark-only``.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import numpy.typing as npt
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from qc.eval.coco import CocoScores, evaluate_coco, evaluate_coco_pycocotools
from qc.eval.decoders import DecodeSettings, get_decoder
from qc.eval.nms import nms_indices
from qc.eval.types import RawDetections
from tests.perf.pairs import check_speedup, time_pair

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


def coco_case(seed: int = 0, n_images: int = N_IMAGES_COCO) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``n_images`` (5,000) images, ~7 ground-truth boxes each over 80 categories, 100 detections per image
    (jittered true positives, wrong classes, background)."""
    rng = np.random.default_rng(seed)
    cats = [{"id": c + 1, "name": f"class{c}"} for c in range(NC)]
    images = [{"id": i + 1, "width": 640, "height": 480} for i in range(n_images)]
    n_gt = rng.integers(1, 14, n_images)
    gt_img = np.repeat(np.arange(1, n_images + 1), n_gt)
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
    pick = starts[:, None] + (rng.integers(0, 1 << 30, (n_images, DETS_PER_IMAGE)) % n_gt[:, None])
    pick = pick.ravel()
    det_img = np.repeat(np.arange(1, n_images + 1), DETS_PER_IMAGE)
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


# ------------------------------------------------------------------------------------ pairs: old against new
NMS_FLOOR = 10.0  # measured ~95x on the 2-core machine
COCO_IMAGES_PAIR = 200  # pycocotools is slow: a subset keeps the pair under a minute
COCO_FLOOR = 3.0  # measured ~8x (500 images)


def classic_nms(
    boxes: npt.NDArray[np.float32], rows: npt.NDArray[np.intp], classes: npt.NDArray[np.intp], scores: npt.NDArray[Any]
) -> npt.NDArray[np.intp]:
    """The textbook numpy NMS loop qc's vectorized NMS replaces: take the best candidate, drop every candidate of
    its class overlapping it (class offset trick), repeat until 100 are kept (IoU 0.45)."""
    b = boxes[rows].astype(np.float64) + classes[:, None] * 4096.0
    x1, y1, x2, y2 = b.T
    area = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size and len(keep) < 100:
        i, rest = order[0], order[1:]
        keep.append(int(i))
        iw = np.maximum(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0)
        ih = np.maximum(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0)
        inter = iw * ih
        union = area[i] + area[rest] - inter
        iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        order = rest[iou <= 0.45]
    return np.asarray(keep, dtype=np.intp)


def nms_candidates(
    t: npt.NDArray[np.float32],
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.float32]]:
    """Boxes per anchor and the multi-label candidates at the evaluation threshold, as the yolo-decoded decoder
    forms them (~9,000 per image)."""
    img = t[0]
    sub = img[np.flatnonzero(img[:, 4] >= 0.001)]
    scores = sub[:, 5:] * sub[:, 4:5]
    half = sub[:, 2:4] * 0.5
    boxes = np.concatenate([sub[:, :2] - half, sub[:, :2] + half], axis=1)
    rows, cols = np.nonzero(scores >= 0.001)
    return boxes, rows, cols, scores[rows, cols]


def test_nms_vectorized_vs_classic_loop(benchmark: BenchmarkFixture) -> None:
    rng = np.random.default_rng(1)
    cases = [nms_candidates(yolo_output(rng)) for _ in range(16)]

    def new() -> list[npt.NDArray[np.int64]]:
        return [nms_indices(b, s, c, 0.45, 100, box_index=r) for b, r, c, s in cases]

    def old() -> list[npt.NDArray[np.intp]]:
        return [classic_nms(b, r, c, s) for b, r, c, s in cases]

    for kept_new, kept_old in zip(new(), old(), strict=True):  # the same detections, or the pair means nothing
        assert kept_new.tolist() == kept_old.tolist()
    benchmark.group = "nms 16 images, ~9,000 candidates each"
    cast(Any, benchmark).pedantic(new, rounds=5, iterations=1, warmup_rounds=1)
    check_speedup(benchmark, time_pair(old, new, rounds=3), NMS_FLOOR, "vectorized NMS vs the classic loop")


def test_coco_eval_faster_coco_eval_vs_pycocotools(benchmark: BenchmarkFixture) -> None:
    gt, results = coco_case(seed=2, n_images=COCO_IMAGES_PAIR)
    ids = [im["id"] for im in gt["images"]]
    fast, slow = evaluate_coco(gt, results, ids), evaluate_coco_pycocotools(gt, results, ids)
    assert fast.ap == pytest.approx(slow.ap, abs=1e-9)  # the same AP, or the pair means nothing
    benchmark.group = f"coco eval {COCO_IMAGES_PAIR} images x {DETS_PER_IMAGE} detections"
    cast(Any, benchmark).pedantic(lambda: evaluate_coco(gt, results, ids), rounds=2, iterations=1)
    pair = time_pair(
        lambda: evaluate_coco_pycocotools(gt, results, ids), lambda: evaluate_coco(gt, results, ids), rounds=2, warmup=0
    )
    check_speedup(benchmark, pair, COCO_FLOOR, "faster-coco-eval vs pycocotools")
