"""COCO evaluation: category mapping, result conversion, mAP (faster-coco-eval / pycocotools), agreement AP.

Results are COCO result dicts ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}`` in ORIGINAL
image pixels. Evaluation never crashes on empty inputs: it returns :class:`CocoScores` with ``empty=True``,
metrics set to NaN (so any threshold comparison fails) and ``reason`` saying why; :meth:`CocoScores.require`
turns that into a :class:`qc.errors.MetricError`.
"""

from __future__ import annotations

import contextlib
import io
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from qc.data.coco_names import ALIASES
from qc.errors import ConfigError, DataError, MetricError
from qc.eval.types import Detections


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]+", " ", name.strip().lower())


def _compact(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def category_map_by_name(
    model_class_names: Sequence[str], coco_categories: Sequence[Mapping[str, Any]]
) -> dict[int, int]:
    """Map model class index -> dataset category id by name.

    Names are compared case-insensitively with ``_``/``-``/spaces equivalent, then through :data:`ALIASES`
    (aeroplane->airplane, motorbike->motorcycle, sofa->couch, tvmonitor/tv/monitor->tv, diningtable->dining
    table, pottedplant->potted plant), then ignoring every non-alphanumeric character. Unknown names, or two
    model classes mapping to one category, raise :class:`qc.errors.ConfigError` listing them.
    """
    by_norm: dict[str, int] = {}
    by_compact: dict[str, int] = {}
    names_by_id: dict[int, str] = {}
    for cat in coco_categories:
        try:
            cid, cname = int(cat["id"]), str(cat["name"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"COCO category {cat!r} lacks an integer 'id' or a 'name'.") from exc
        by_norm.setdefault(_norm(cname), cid)
        by_compact.setdefault(_compact(cname), cid)
        names_by_id[cid] = cname

    mapping: dict[int, int] = {}
    unknown: list[str] = []
    for idx, raw in enumerate(model_class_names):
        n = _norm(raw)
        found = by_norm.get(n)
        if found is None and n in ALIASES:
            found = by_norm.get(ALIASES[n])
        if found is None:
            found = by_compact.get(_compact(raw))
        if found is None:
            unknown.append(f"{idx}: {raw!r}")
        else:
            mapping[idx] = found
    if unknown:
        raise ConfigError(
            f"{len(unknown)} model class name(s) match no dataset category: {', '.join(unknown)}. "
            f"Dataset categories are: {', '.join(sorted(names_by_id.values()))}."
        )
    seen: dict[int, int] = {}
    dups: list[str] = []
    for idx, cid in mapping.items():
        if cid in seen:
            dups.append(
                f"classes {seen[cid]} ({model_class_names[seen[cid]]!r}) "
                f"and {idx} ({model_class_names[idx]!r}) "
                f"-> '{names_by_id[cid]}'"
            )
        else:
            seen[cid] = idx
    if dups:
        raise ConfigError(f"Several model classes map to one dataset category: {'; '.join(dups)}.")
    return mapping


def to_coco_results(image_id: int, det: Detections, cat_map: Mapping[int, int]) -> list[dict[str, Any]]:
    """COCO result dicts for one image: ``bbox = [x1, y1, x2 - x1, y2 - y1]`` (original pixels), ``score``,
    ``category_id = cat_map[class]``. A class missing from ``cat_map`` raises
    :class:`qc.errors.ConfigError`."""
    if len(det) == 0:
        return []
    missing = sorted(c for c in {int(c) for c in np.unique(det.classes)} if c not in cat_map)
    if missing:
        raise ConfigError(f"Model class index(es) {missing} have no dataset category in the category map.")
    b = det.boxes.astype(np.float64)
    xywh = np.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1).tolist()
    scores = det.scores.astype(np.float64).tolist()
    cats = [cat_map[c] for c in det.classes.tolist()]
    iid = int(image_id)
    return [
        {"image_id": iid, "category_id": c, "bbox": bb, "score": s} for bb, s, c in zip(xywh, scores, cats, strict=True)
    ]


@dataclass(frozen=True)
class CocoScores:
    """COCO bbox metrics over the evaluated images (maxDets 100, all areas).

    ``per_class_ap`` (AP@[.5:.95]) lists only categories having ground truth on the evaluated images. When
    ``empty`` is True (no detections, or no ground truth) every metric is NaN and ``reason`` says why.
    """

    ap: float
    ap50: float
    ap75: float
    ar100: float
    per_class_ap: dict[str, float] = field(default_factory=dict)
    empty: bool = False
    reason: str = ""
    num_images: int = 0
    num_detections: int = 0
    num_ground_truth: int = 0

    @classmethod
    def flagged_empty(cls, reason: str, num_images: int = 0, num_detections: int = 0, num_gt: int = 0) -> CocoScores:
        nan = math.nan
        return cls(nan, nan, nan, nan, {}, True, reason, num_images, num_detections, num_gt)

    def require(self) -> CocoScores:
        """Return self, or raise :class:`qc.errors.MetricError` with ``reason`` when the scores are empty."""
        if self.empty:
            raise MetricError(f"COCO evaluation is undefined: {self.reason}")
        return self


def _subset(
    gt: Mapping[str, Any], results: Iterable[Mapping[str, Any]], image_ids: Iterable[int]
) -> tuple[dict[str, Any], list[dict[str, Any]], list[int], CocoScores | None]:
    """Restrict gt and results to ``image_ids`` (copies: the evaluators mutate what they get)."""
    ids = sorted({int(i) for i in image_ids})
    idset = set(ids)
    images = [dict(im) for im in gt.get("images", []) if int(im["id"]) in idset]
    known = {int(im["id"]) for im in images}
    unknown = sorted(idset - known)
    if unknown:
        shown = ", ".join(str(i) for i in unknown[:10])
        raise DataError(f"{len(unknown)} evaluated image id(s) are not in the ground truth 'images': {shown}.")
    anns = [dict(a) for a in gt.get("annotations", []) if int(a["image_id"]) in idset]
    renumber = any("id" not in a for a in anns)
    for i, a in enumerate(anns):
        a.setdefault("iscrowd", 0)
        if "area" not in a:
            a["area"] = float(a["bbox"][2]) * float(a["bbox"][3])
        if renumber:
            a["id"] = i + 1
    sub_gt: dict[str, Any] = {
        "info": dict(gt.get("info", {})),
        "images": images,
        "annotations": anns,
        "categories": [dict(c) for c in gt.get("categories", [])],
    }
    # Copies with what COCO.loadRes adds for bbox results (id, area, iscrowd), minus its unused polygon.
    res = [
        {**r, "id": k + 1, "area": float(r["bbox"][2]) * float(r["bbox"][3]), "iscrowd": 0}
        for k, r in enumerate(r for r in results if int(r["image_id"]) in idset)
    ]
    n_gt = sum(1 for a in anns if not a.get("iscrowd", 0))
    if not ids:
        return sub_gt, res, ids, CocoScores.flagged_empty("no images were evaluated.")
    if not res:
        return (
            sub_gt,
            res,
            ids,
            CocoScores.flagged_empty(f"no detections on the {len(ids)} evaluated image(s).", len(ids), 0, n_gt),
        )
    if n_gt == 0:
        return (
            sub_gt,
            res,
            ids,
            CocoScores.flagged_empty(
                f"the ground truth has no (non-crowd) annotations on the {len(ids)} evaluated image(s).",
                len(ids),
                len(res),
                0,
            ),
        )
    return sub_gt, res, ids, None


def _scores_from_eval(
    ev: Mapping[str, Any],
    params: Any,
    categories: Sequence[Mapping[str, Any]],
    *,
    n_img: int,
    n_det: int,
    n_gt: int,
) -> CocoScores:
    """AP/AR exactly as COCOeval.summarize computes them (area 'all', maxDets 100), plus per-category AP."""
    precision = np.asarray(ev["precision"])  # [T, R, K, A, M]
    recall = np.asarray(ev["recall"])  # [T, K, A, M]
    area = list(params.areaRngLbl).index("all")
    mdet = list(params.maxDets).index(100)
    iou_thrs = np.asarray(params.iouThrs)

    def mean_valid(a: np.ndarray[Any, Any]) -> float:
        v = a[a > -1]
        return float(v.mean()) if v.size else math.nan

    p = precision[:, :, :, area, mdet]
    t50 = int(np.flatnonzero(np.isclose(iou_thrs, 0.5))[0])
    t75 = int(np.flatnonzero(np.isclose(iou_thrs, 0.75))[0])
    names = {int(c["id"]): str(c["name"]) for c in categories}
    per_class: dict[str, float] = {}
    for k, cid in enumerate(params.catIds):
        v = mean_valid(p[:, :, k])
        if not math.isnan(v):
            per_class[names.get(int(cid), str(cid))] = v
    ap = mean_valid(p)
    if math.isnan(ap):
        return CocoScores.flagged_empty("COCO evaluation produced no valid precision values.", n_img, n_det, n_gt)
    return CocoScores(
        ap=ap,
        ap50=mean_valid(p[t50]),
        ap75=mean_valid(p[t75]),
        ar100=mean_valid(recall[:, :, area, mdet]),
        per_class_ap=per_class,
        num_images=n_img,
        num_detections=n_det,
        num_ground_truth=n_gt,
    )


def evaluate_coco(gt: Mapping[str, Any], results: Sequence[Mapping[str, Any]], image_ids: Iterable[int]) -> CocoScores:
    """COCO bbox evaluation with faster-coco-eval, restricted to ``image_ids``.

    ``gt`` is a COCO json dict (``images``, ``annotations``, ``categories``); neither it nor ``results`` is
    modified. Results on other images are ignored; an image id missing from ``gt['images']`` raises
    :class:`qc.errors.DataError`. Empty results or ground truth give a flagged-empty :class:`CocoScores`.
    """
    sub_gt, res, ids, empty = _subset(gt, results, image_ids)
    if empty is not None:
        return empty
    from faster_coco_eval import COCO, COCOeval_faster

    def quiet(*_args: Any, **_kwargs: Any) -> None:
        return None

    coco_gt = COCO(sub_gt, print_function=quiet)
    coco_dt = COCO(
        {"images": sub_gt["images"], "categories": sub_gt["categories"], "annotations": res},
        print_function=quiet,
    )
    ev = COCOeval_faster(coco_gt, coco_dt, "bbox", print_function=quiet)
    ev.params.imgIds = ids
    ev.evaluate()
    ev.accumulate()
    n_gt = sum(1 for a in sub_gt["annotations"] if not a.get("iscrowd", 0))
    return _scores_from_eval(ev.eval, ev.params, sub_gt["categories"], n_img=len(ids), n_det=len(res), n_gt=n_gt)


def evaluate_coco_pycocotools(
    gt: Mapping[str, Any], results: Sequence[Mapping[str, Any]], image_ids: Iterable[int]
) -> CocoScores:
    """Same as :func:`evaluate_coco` with the reference pycocotools implementation (slow; for parity
    checks)."""
    sub_gt, res, ids, empty = _subset(gt, results, image_ids)
    if empty is not None:
        return empty
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = sub_gt
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(res)
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.params.imgIds = ids
        ev.evaluate()
        ev.accumulate()
    n_gt = sum(1 for a in sub_gt["annotations"] if not a.get("iscrowd", 0))
    return _scores_from_eval(ev.eval, ev.params, sub_gt["categories"], n_img=len(ids), n_det=len(res), n_gt=n_gt)


def _plus_one(det: Detections) -> dict[int, int]:
    """Class index -> category id ``index + 1`` (COCO ids are better kept non-zero)."""
    return {int(c): int(c) + 1 for c in np.unique(det.classes).tolist()}


Evaluator = Callable[[Mapping[str, Any], Sequence[Mapping[str, Any]], Iterable[int]], CocoScores]


def agreement_ap(
    reference: Mapping[int, Detections],
    target: Mapping[int, Detections],
    deploy_threshold: float = 0.25,
    image_sizes: Mapping[int, tuple[int, int]] | None = None,
    *,
    class_names: Sequence[str] | None = None,
    backend: Literal["faster", "pycocotools"] = "faster",
) -> CocoScores:
    """AP of ``target`` against ``reference`` used as ground truth (no labels needed).

    The reference's detections with ``score >= deploy_threshold`` become the ground truth (category id =
    class index + 1, area = box area); every target detection is scored against them. Both mappings are keyed
    by image id and must have the same keys. ``image_sizes`` maps image id -> ``(width, height)`` (only
    written into the synthesized ``images``; derived from the boxes when omitted). ``class_names`` name the
    per-class APs (default: the class index). No reference box above the threshold, or no target detection,
    gives a flagged-empty :class:`CocoScores`.
    """
    if set(reference) != set(target):
        only_ref = sorted(set(reference) - set(target))[:10]
        only_tgt = sorted(set(target) - set(reference))[:10]
        raise DataError(
            f"agreement_ap needs the same images on both sides; only in reference: {only_ref}, "
            f"only in target: {only_tgt}."
        )
    ids = sorted(int(i) for i in reference)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    classes: set[int] = set()
    for iid in ids:
        ref = reference[iid].above(deploy_threshold)
        tgt = target[iid]
        if image_sizes is not None and iid in image_sizes:
            w, h = image_sizes[iid]
        else:
            both = np.concatenate([ref.boxes, tgt.boxes]) if len(ref) + len(tgt) else np.ones((1, 4), np.float32)
            w = max(1, math.ceil(float(np.nanmax(both[:, 2]))))
            h = max(1, math.ceil(float(np.nanmax(both[:, 3]))))
        images.append({"id": iid, "width": int(w), "height": int(h)})
        for res in to_coco_results(iid, ref, _plus_one(ref)):
            x, y, bw, bh = res["bbox"]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": iid,
                    "category_id": res["category_id"],
                    "bbox": [x, y, bw, bh],
                    "area": max(bw, 0.0) * max(bh, 0.0),
                    "iscrowd": 0,
                }
            )
        classes.update(int(c) for c in ref.classes.tolist())
        classes.update(int(c) for c in tgt.classes.tolist())
    if class_names is not None:
        classes.update(range(len(class_names)))

    def name(c: int) -> str:
        return class_names[c] if class_names is not None and 0 <= c < len(class_names) else str(c)

    gt = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": c + 1, "name": name(c)} for c in sorted(classes)],
    }
    results: list[dict[str, Any]] = []
    for iid in ids:
        results.extend(to_coco_results(iid, target[iid], _plus_one(target[iid])))
    if not annotations:
        return CocoScores.flagged_empty(
            f"the reference has no detection with score >= {deploy_threshold} on the {len(ids)} image(s).",
            len(ids),
            len(results),
            0,
        )
    evaluator: Evaluator = evaluate_coco if backend == "faster" else evaluate_coco_pycocotools
    return evaluator(gt, results, ids)
