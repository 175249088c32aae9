"""OKS of one person and COCO keypoint AP (faster-coco-eval) of results against labels."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from qc.errors import ConfigError, DataError, MetricError
from qc.eval.keypoints.poses import COCO_SIGMAS, Poses


def oks_sigmas(sigmas: Sequence[float] | None, k: int) -> npt.NDArray[np.float64]:
    """Per-keypoint OKS sigmas (COCO's when None), checked: one per keypoint, all > 0 (ConfigError)."""
    s = np.asarray(COCO_SIGMAS if sigmas is None else sigmas, dtype=np.float64)
    if s.shape != (k,):
        raise ConfigError(f"{s.size} OKS sigmas given for {k} keypoints; give one sigma per keypoint.")
    if (s <= 0).any():
        raise ConfigError("every OKS sigma must be > 0.")
    return s


def oks(
    pred_xy: npt.ArrayLike,
    ref_xy: npt.ArrayLike,
    visible: npt.ArrayLike,
    area: float,
    sigmas: Sequence[float] | None = None,
) -> float:
    """COCO object keypoint similarity of one person: the mean over ``visible`` keypoints of
    ``exp(-d^2 / (2 * area * (2 sigma)^2))``; NaN when no keypoint is visible."""
    p = np.asarray(pred_xy, np.float64).reshape(-1, 2)
    r = np.asarray(ref_xy, np.float64).reshape(-1, 2)
    v = np.asarray(visible, bool).reshape(-1)
    s = oks_sigmas(sigmas, r.shape[0])
    if not v.any():
        return math.nan
    d2 = ((p - r) ** 2).sum(axis=1)
    e = d2 / ((2 * s) ** 2) / (max(area, np.spacing(1)) * 2)
    return float(np.exp(-e)[v].mean())


@dataclass(frozen=True)
class KeypointScores:
    """COCO keypoint metrics (OKS AP@[.5:.95], AP50, AP75, AR; area 'all', the largest maxDets). NaN with
    ``empty=True`` and a ``reason`` when undefined."""

    ap: float
    ap50: float
    ap75: float
    ar: float
    num_images: int = 0
    num_people: int = 0
    num_ground_truth: int = 0
    empty: bool = False
    reason: str = ""

    def require(self) -> KeypointScores:
        if self.empty:
            raise MetricError(f"keypoint OKS AP is undefined: {self.reason}")
        return self

    @classmethod
    def flagged_empty(cls, reason: str, n_img: int = 0, n_det: int = 0, n_gt: int = 0) -> KeypointScores:
        nan = math.nan
        return cls(nan, nan, nan, nan, n_img, n_det, n_gt, True, reason)


def to_coco_keypoint_results(
    image_id: int, poses: Poses, category_id: int = 1, keypoint_map: Sequence[int] | None = None
) -> list[dict[str, Any]]:
    """COCO keypoint result dicts of one image (original pixels): ``keypoints`` flat x, y, score."""
    p = poses.select_keypoints(keypoint_map) if keypoint_map is not None else poses
    out: list[dict[str, Any]] = []
    for box, score, kp in zip(p.boxes.tolist(), p.scores.tolist(), p.keypoints.astype(np.float64), strict=True):
        x1, y1, x2, y2 = box
        out.append(
            {
                "image_id": int(image_id),
                "category_id": int(category_id),
                "keypoints": kp.reshape(-1).tolist(),
                "score": float(score),
                "bbox": [x1, y1, x2 - x1, y2 - y1],
            }
        )
    return out


def evaluate_oks(
    gt: Mapping[str, Any],
    results: Sequence[Mapping[str, Any]],
    image_ids: Iterable[int],
    sigmas: Sequence[float] | None = None,
) -> KeypointScores:
    """COCO keypoint AP (faster-coco-eval ``keypoints``) of ``results`` against ``gt`` (a COCO dict whose
    annotations carry ``keypoints`` and ``num_keypoints``), restricted to ``image_ids``. ``sigmas`` default to
    COCO's 17; their count must match the labels' keypoints."""
    ids = sorted({int(i) for i in image_ids})
    idset = set(ids)
    images = [dict(im) for im in gt.get("images", []) if int(im["id"]) in idset]
    missing = sorted(idset - {int(im["id"]) for im in images})
    if missing:
        raise DataError(f"{len(missing)} evaluated image id(s) are not in the ground truth 'images': {missing[:10]}.")
    anns = [dict(a) for a in gt.get("annotations", []) if int(a["image_id"]) in idset and "keypoints" in a]
    k_gt = {len(a["keypoints"]) // 3 for a in anns}
    if len(k_gt) > 1:
        raise DataError(f"ground-truth annotations have different keypoint counts: {sorted(k_gt)}.")
    res = [dict(r) for r in results if int(r["image_id"]) in idset]
    k_dt = {len(r["keypoints"]) // 3 for r in res}
    if k_gt and k_dt and k_dt != k_gt:
        raise ConfigError(
            f"results have {sorted(k_dt)} keypoints per person but the labels have {sorted(k_gt)}: set a keypoint "
            "map from the model's points to the labels' points."
        )
    n_gt = sum(1 for a in anns if not a.get("iscrowd", 0) and a.get("num_keypoints", 0) > 0)
    if not ids:
        return KeypointScores.flagged_empty("no images were evaluated.")
    if n_gt == 0:
        return KeypointScores.flagged_empty(
            f"the labels have no person with keypoints on the {len(ids)} image(s).", len(ids), len(res), 0
        )
    if not res:
        return KeypointScores.flagged_empty(f"no people were predicted on the {len(ids)} image(s).", len(ids), 0, n_gt)
    k = k_gt.pop()
    s = oks_sigmas(sigmas, k)
    for i, a in enumerate(anns):
        a.setdefault("id", i + 1)
        a.setdefault("iscrowd", 0)
        if "area" not in a:
            a["area"] = float(a["bbox"][2]) * float(a["bbox"][3])
    for i, r in enumerate(res):
        r["id"] = i + 1
        r["iscrowd"] = 0
        x, y, w, h = r.get("bbox") or _points_bbox(r["keypoints"])
        r["bbox"] = [x, y, w, h]
        r["area"] = float(w) * float(h)
    cats = [dict(c) for c in gt.get("categories", [])] or [{"id": 1, "name": "person"}]
    return run_keypoint_eval({"images": images, "annotations": anns, "categories": cats}, res, ids, s)


def _points_bbox(flat: Sequence[float]) -> list[float]:
    p = np.asarray(flat, np.float64).reshape(-1, 3)
    x1, y1 = p[:, 0].min(), p[:, 1].min()
    return [float(x1), float(y1), float(p[:, 0].max() - x1), float(p[:, 1].max() - y1)]


def run_keypoint_eval(
    gt: dict[str, Any], res: list[dict[str, Any]], ids: list[int], sigmas: npt.NDArray[np.float64]
) -> KeypointScores:
    """faster-coco-eval ``keypoints`` AP of prepared COCO ``res`` (ids, areas set) against ``gt`` on ``ids``."""
    from faster_coco_eval import COCO, COCOeval_faster

    def quiet(*_args: Any, **_kwargs: Any) -> None:
        return None

    coco_gt = COCO(gt, print_function=quiet)
    coco_dt = COCO({"images": gt["images"], "categories": gt["categories"], "annotations": res}, print_function=quiet)
    ev = COCOeval_faster(coco_gt, coco_dt, "keypoints", print_function=quiet, kpt_oks_sigmas=sigmas.tolist())
    ev.params.imgIds = ids
    ev.evaluate()
    ev.accumulate()
    precision = np.asarray(ev.eval["precision"])  # [T, R, K, A, M]
    recall = np.asarray(ev.eval["recall"])  # [T, K, A, M]
    area = list(ev.params.areaRngLbl).index("all")
    mdet = len(ev.params.maxDets) - 1
    thr = np.asarray(ev.params.iouThrs)

    def mean_valid(a: npt.NDArray[Any]) -> float:
        v = a[a > -1]
        return float(v.mean()) if v.size else math.nan

    p = precision[:, :, :, area, mdet]
    n_gt = sum(1 for a in gt["annotations"] if not a.get("iscrowd", 0) and a.get("num_keypoints", 0) > 0)
    ap = mean_valid(p)
    if math.isnan(ap):
        return KeypointScores.flagged_empty("COCO keypoint evaluation produced no valid precision.", len(ids))
    return KeypointScores(
        ap=ap,
        ap50=mean_valid(p[int(np.flatnonzero(np.isclose(thr, 0.5))[0])]),
        ap75=mean_valid(p[int(np.flatnonzero(np.isclose(thr, 0.75))[0])]),
        ar=mean_valid(recall[:, :, area, mdet]),
        num_images=len(ids),
        num_people=len(res),
        num_ground_truth=n_gt,
    )
