"""Instance masks: a YOLOv8-seg style decoder, mask AP (faster-coco-eval ``segm``, RLE) and mask agreement.

A YOLOv8-seg model has two outputs: a head ``(1, 4 + classes + M, anchors)`` (cx, cy, w, h in input pixels,
class scores, M mask coefficients per anchor; or its transpose) and prototypes ``(1, M, H/4, W/4)``. After score
filtering and NMS, a detection's mask is ``sigmoid(coefficients . prototypes)``, upsampled bilinearly (half-pixel
centres) to the input, cropped to the detection's box and thresholded. qc evaluates that mask directly in
ORIGINAL image pixels: every original pixel centre inside the box is mapped through the preprocessing
:class:`~qc.data.preprocess.Transform` to input pixels, then to prototype cells, where the logit is sampled
bilinearly (a linear map commutes with the interpolation, so this equals upsample-then-resize without building
the full-size mask). Masks are kept as COCO RLEs (``pycocotools.mask``), never as arrays, so accumulators
stream.

:func:`yolov8_seg_slices` gives the head's ``outputs:`` slices (boxes, scores, coefficients) as data: a scale
shared by box coordinates (hundreds of pixels) and coefficients (units) collapses the coefficients under INT8,
which the per-slice metrics show.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from qc.data.preprocess import Transform
from qc.errors import ConfigError, DataError
from qc.eval.coco import CocoScores
from qc.eval.nms import nms, score_mask

FloatArray = npt.NDArray[np.float32]
Rle = dict[str, Any]


@dataclass(frozen=True, eq=False)
class InstanceMasks:
    """Instances of one image in ORIGINAL pixels: ``boxes (N, 4)``, ``scores (N,)``, ``classes (N,)`` model
    class indices, ``masks``: N COCO RLEs of the image size ``(height, width)``."""

    boxes: FloatArray
    scores: FloatArray
    classes: npt.NDArray[np.int64]
    masks: tuple[Rle, ...]
    image_hw: tuple[int, int]

    def __post_init__(self) -> None:
        n = len(self.masks)
        if self.boxes.shape != (n, 4) or self.scores.shape != (n,) or self.classes.shape != (n,):
            raise DataError(
                f"InstanceMasks: {n} masks but boxes {self.boxes.shape}, scores {self.scores.shape}, "
                f"classes {self.classes.shape}."
            )

    def __len__(self) -> int:
        return len(self.masks)

    def above(self, threshold: float) -> InstanceMasks:
        keep = np.flatnonzero(self.scores >= threshold)
        return InstanceMasks(
            self.boxes[keep], self.scores[keep], self.classes[keep], tuple(self.masks[i] for i in keep), self.image_hw
        )

    @classmethod
    def empty(cls, image_hw: tuple[int, int]) -> InstanceMasks:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), (), image_hw)

    def dense(self, i: int) -> npt.NDArray[np.uint8]:
        """Mask ``i`` as an ``(H, W)`` uint8 array (for pictures and tests)."""
        from pycocotools import mask as mask_utils

        out: npt.NDArray[np.uint8] = mask_utils.decode(self.masks[i])
        return out


def encode(mask: npt.ArrayLike) -> Rle:
    """COCO RLE (``counts`` as str, JSON-ready) of an ``(H, W)`` binary mask."""
    from pycocotools import mask as mask_utils

    m = np.asfortranarray(np.asarray(mask, dtype=np.uint8))
    if m.ndim != 2:
        raise DataError(f"a mask must be 2-D (H, W), got shape {m.shape}.")
    rle: Rle = mask_utils.encode(m)
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def _rle_for_pycocotools(rle: Rle) -> Rle:
    counts = rle["counts"]
    return {"size": list(rle["size"]), "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


def sample_to_original(
    logits: npt.ArrayLike,
    cell: tuple[float, float],
    transform: Transform,
    *,
    region_net: Sequence[float] | None = None,
    threshold: float = 0.0,
) -> npt.NDArray[np.bool_]:
    """A binary ``(orig_h, orig_w)`` mask of ``logits > threshold`` for a map over the network input.

    ``logits`` is an ``(h, w)`` map whose cell ``(i, j)`` covers input pixels ``[j * cell_x, (j + 1) * cell_x)``
    (``cell = (cell_y, cell_x)``; prototypes: 4 input pixels per cell; a full-size map: 1). Each original pixel
    centre is mapped to input pixels with ``net = orig * scale + pad`` and the map is sampled bilinearly there
    (half-pixel centres, borders clamped). Only pixels whose input position lies inside ``region_net`` (x1, y1,
    x2, y2 in input pixels; default the whole map) can be set: the crop to the detection's box.
    """
    lg = np.asarray(logits, dtype=np.float32)
    if lg.ndim != 2:
        raise DataError(f"a logit map must be 2-D (h, w), got shape {lg.shape}.")
    h, w = lg.shape
    cy, cx = cell
    H, W = transform.orig_h, transform.orig_w
    out = np.zeros((H, W), dtype=bool)
    x1, y1, x2, y2 = (0.0, 0.0, w * cx, h * cy) if region_net is None else (float(v) for v in region_net)
    # original pixel range whose centres can fall inside the region
    ox1 = max(0, math.floor((x1 - transform.pad_x) / transform.scale_x - 0.5))
    ox2 = min(W, math.ceil((x2 - transform.pad_x) / transform.scale_x + 0.5))
    oy1 = max(0, math.floor((y1 - transform.pad_y) / transform.scale_y - 0.5))
    oy2 = min(H, math.ceil((y2 - transform.pad_y) / transform.scale_y + 0.5))
    if ox2 <= ox1 or oy2 <= oy1:
        return out
    nx = (np.arange(ox1, ox2, dtype=np.float64) + 0.5) * transform.scale_x + transform.pad_x
    ny = (np.arange(oy1, oy2, dtype=np.float64) + 0.5) * transform.scale_y + transform.pad_y
    inside = ((ny >= y1) & (ny < y2))[:, None] & ((nx >= x1) & (nx < x2))[None, :]
    mx, my = nx / cx - 0.5, ny / cy - 0.5
    jx0 = np.floor(mx).astype(np.int64)
    jy0 = np.floor(my).astype(np.int64)
    fx = (mx - jx0)[None, :]
    fy = (my - jy0)[:, None]
    xa, xb = np.clip(jx0, 0, w - 1), np.clip(jx0 + 1, 0, w - 1)
    ya, yb = np.clip(jy0, 0, h - 1), np.clip(jy0 + 1, 0, h - 1)
    top = lg[ya][:, xa] * (1 - fx) + lg[ya][:, xb] * fx
    bottom = lg[yb][:, xa] * (1 - fx) + lg[yb][:, xb] * fx
    value = top * (1 - fy) + bottom * fy
    out[oy1:oy2, ox1:ox2] = (value > threshold) & inside
    return out


@dataclass(frozen=True)
class YoloSegSpec:
    """YOLOv8-seg decoding settings (evaluation defaults: score 0.001, IoU 0.7, 100 detections, masks at
    probability 0.5)."""

    num_classes: int
    num_coefficients: int = 32
    score_threshold: float = 0.001
    iou_threshold: float = 0.7
    max_detections: int = 100
    mask_threshold: float = 0.5
    class_agnostic: bool = False

    def __post_init__(self) -> None:
        if self.num_classes < 1 or self.num_coefficients < 1:
            raise ConfigError(
                f"YoloSegSpec: num_classes and num_coefficients must be >= 1, got {self.num_classes}, "
                f"{self.num_coefficients}."
            )
        if not 0.0 < self.mask_threshold < 1.0:
            raise ConfigError(f"YoloSegSpec.mask_threshold must be in (0, 1), got {self.mask_threshold}.")

    @property
    def channels(self) -> int:
        return 4 + self.num_classes + self.num_coefficients


def yolov8_seg_slices(num_classes: int, num_coefficients: int = 32, axis: int = 1) -> dict[str, dict[str, int]]:
    """``outputs:`` slices of a YOLOv8-seg head (models.yaml ``Slice`` fields): boxes, scores, coefficients."""
    c = 4 + num_classes
    return {
        "boxes": {"axis": axis, "start": 0, "stop": 4},
        "scores": {"axis": axis, "start": 4, "stop": c},
        "coefficients": {"axis": axis, "start": c, "stop": c + num_coefficients},
    }


def decode_yolov8_seg(
    head: npt.ArrayLike,
    protos: npt.ArrayLike,
    spec: YoloSegSpec,
    transforms: Sequence[Transform],
    input_hw: tuple[int, int],
) -> list[InstanceMasks]:
    """Per image, the instances of a YOLOv8-seg model in original pixels (one ``Transform`` per image)."""
    out = np.asarray(head, dtype=np.float32)
    pr = np.asarray(protos, dtype=np.float32)
    c = spec.channels
    if out.ndim != 3 or c not in out.shape[1:]:
        raise DataError(
            f"YOLOv8-seg head {out.shape} has no axis of 4 + {spec.num_classes} classes + {spec.num_coefficients} "
            f"coefficients = {c} channels."
        )
    rows = np.transpose(out, (0, 2, 1)) if out.shape[1] == c else out
    if pr.ndim != 4 or pr.shape[1] != spec.num_coefficients or pr.shape[0] != out.shape[0]:
        raise DataError(
            f"YOLOv8-seg prototypes must have shape ({out.shape[0]}, {spec.num_coefficients}, h, w), got {pr.shape}."
        )
    if len(transforms) != out.shape[0]:
        raise DataError(f"{out.shape[0]} images in the batch but {len(transforms)} transforms.")
    mh, mw = pr.shape[2:]
    cell = (input_hw[0] / mh, input_hw[1] / mw)
    threshold = math.log(spec.mask_threshold / (1 - spec.mask_threshold))
    k0 = 4 + spec.num_classes
    results: list[InstanceMasks] = []
    for r, p, tf in zip(rows, pr, transforms, strict=True):
        cxcywh = r[:, :4]
        boxes = np.concatenate([cxcywh[:, :2] - cxcywh[:, 2:] / 2, cxcywh[:, :2] + cxcywh[:, 2:] / 2], axis=1)
        cls_scores = r[:, 4:k0]
        classes = cls_scores.argmax(axis=1).astype(np.int64)
        scores = cls_scores[np.arange(len(r)), classes]
        keep = np.flatnonzero(score_mask(boxes, scores, spec.score_threshold))
        idx = keep[
            nms(boxes[keep], scores[keep], classes[keep], spec.iou_threshold, spec.max_detections,
                class_agnostic=spec.class_agnostic)
        ]  # fmt: skip
        logits = r[idx, k0:] @ p.reshape(spec.num_coefficients, -1)
        masks = tuple(
            encode(sample_to_original(lg.reshape(mh, mw), cell, tf, region_net=boxes[i], threshold=threshold))
            for lg, i in zip(logits, idx, strict=True)
        )
        results.append(
            InstanceMasks(tf.to_original(boxes[idx]), scores[idx], classes[idx], masks, (tf.orig_h, tf.orig_w))
        )
    return results


# --- COCO mask evaluation ------------------------------------------------------------------------------------
def to_coco_mask_results(image_id: int, inst: InstanceMasks, cat_map: Mapping[int, int]) -> list[dict[str, Any]]:
    """COCO ``segm`` result dicts of one image (RLE segmentation, box, score, ``category_id = cat_map[class]``)."""
    missing = sorted({int(c) for c in inst.classes.tolist()} - set(cat_map))
    if missing:
        raise ConfigError(f"model class index(es) {missing} have no dataset category in the category map.")
    out: list[dict[str, Any]] = []
    for box, score, cls, rle in zip(inst.boxes.tolist(), inst.scores.tolist(), inst.classes.tolist(), inst.masks,
                                    strict=True):  # fmt: skip
        x1, y1, x2, y2 = box
        out.append(
            {"image_id": int(image_id), "category_id": cat_map[int(cls)], "segmentation": dict(rle),
             "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(score)}
        )  # fmt: skip
    return out


def evaluate_masks(gt: Mapping[str, Any], results: Sequence[Mapping[str, Any]], image_ids: Iterable[int]) -> CocoScores:
    """COCO mask AP (faster-coco-eval ``segm``) of RLE ``results`` against ``gt`` (polygon or RLE
    segmentations; ``images`` need ``height`` and ``width``), restricted to ``image_ids``. Empty inputs give a
    flagged-empty :class:`~qc.eval.coco.CocoScores`."""
    from pycocotools import mask as mask_utils

    ids = sorted({int(i) for i in image_ids})
    idset = set(ids)
    images = [dict(im) for im in gt.get("images", []) if int(im["id"]) in idset]
    missing = sorted(idset - {int(im["id"]) for im in images})
    if missing:
        raise DataError(f"{len(missing)} evaluated image id(s) are not in the ground truth 'images': {missing[:10]}.")
    anns = [dict(a) for a in gt.get("annotations", []) if int(a["image_id"]) in idset and a.get("segmentation")]
    res = [dict(r) for r in results if int(r["image_id"]) in idset]
    n_gt = sum(1 for a in anns if not a.get("iscrowd", 0))
    if not ids:
        return CocoScores.flagged_empty("no images were evaluated.")
    if not res:
        return CocoScores.flagged_empty(f"no instances on the {len(ids)} evaluated image(s).", len(ids), 0, n_gt)
    if n_gt == 0:
        return CocoScores.flagged_empty(
            f"the ground truth has no (non-crowd) segmentation on the {len(ids)} image(s).", len(ids), len(res), 0
        )
    for i, a in enumerate(anns):
        a.setdefault("id", i + 1)
        a.setdefault("iscrowd", 0)
    for i, r in enumerate(res):
        rle = _rle_for_pycocotools(r["segmentation"])
        r["id"] = i + 1
        r["iscrowd"] = 0
        r["area"] = float(mask_utils.area(rle))
        r["bbox"] = [float(v) for v in mask_utils.toBbox(rle)]
    cats = [dict(c) for c in gt.get("categories", [])]
    return _segm_eval({"images": images, "annotations": anns, "categories": cats}, res, ids)


def _segm_eval(gt: dict[str, Any], res: list[dict[str, Any]], ids: list[int]) -> CocoScores:
    from faster_coco_eval import COCO, COCOeval_faster

    def quiet(*_args: Any, **_kwargs: Any) -> None:
        return None

    coco_gt = COCO(gt, print_function=quiet)
    coco_dt = COCO({"images": gt["images"], "categories": gt["categories"], "annotations": res}, print_function=quiet)
    ev = COCOeval_faster(coco_gt, coco_dt, "segm", print_function=quiet)
    ev.params.imgIds = ids
    ev.evaluate()
    ev.accumulate()
    precision = np.asarray(ev.eval["precision"])  # [T, R, K, A, M]
    recall = np.asarray(ev.eval["recall"])
    area = list(ev.params.areaRngLbl).index("all")
    mdet = list(ev.params.maxDets).index(100)
    thr = np.asarray(ev.params.iouThrs)

    def mean_valid(a: npt.NDArray[Any]) -> float:
        v = a[a > -1]
        return float(v.mean()) if v.size else math.nan

    p = precision[:, :, :, area, mdet]
    names = {int(c["id"]): str(c.get("name", c["id"])) for c in gt["categories"]}
    per_class = {
        names.get(int(cid), str(cid)): v
        for k, cid in enumerate(ev.params.catIds)
        if not math.isnan(v := mean_valid(p[:, :, k]))
    }
    n_gt = sum(1 for a in gt["annotations"] if not a.get("iscrowd", 0))
    ap = mean_valid(p)
    if math.isnan(ap):
        return CocoScores.flagged_empty("COCO mask evaluation produced no valid precision.", len(ids), len(res), n_gt)
    return CocoScores(
        ap=ap,
        ap50=mean_valid(p[int(np.flatnonzero(np.isclose(thr, 0.5))[0])]),
        ap75=mean_valid(p[int(np.flatnonzero(np.isclose(thr, 0.75))[0])]),
        ar100=mean_valid(recall[:, :, area, mdet]),
        per_class_ap=per_class,
        num_images=len(ids),
        num_detections=len(res),
        num_ground_truth=n_gt,
    )


@dataclass(frozen=True)
class MaskAgreementScores:
    """Target vs reference masks without labels: ``scores`` = mask AP of the target against the reference
    instances (score >= deploy threshold) as ground truth; ``mean_iou``/``min_iou`` = mask IoU of the
    greedily matched (same class, best IoU first) pairs, unmatched reference instances counting 0."""

    scores: CocoScores
    mean_iou: float
    min_iou: float
    num_reference: int
    num_matched: int


class MaskAgreement:
    """Streaming mask agreement: :meth:`add` one image's reference and target instances, then :meth:`result`.
    Only RLEs are kept."""

    def __init__(self, deploy_threshold: float = 0.25, class_names: Sequence[str] | None = None) -> None:
        self.deploy_threshold = deploy_threshold
        self.class_names = list(class_names) if class_names is not None else None
        self.images: list[dict[str, Any]] = []
        self.gt: list[dict[str, Any]] = []
        self.results: list[dict[str, Any]] = []
        self.ious: list[float] = []
        self.classes: set[int] = set()

    def add(self, image_id: int, reference: InstanceMasks, target: InstanceMasks, *, paired: bool = False) -> None:
        """``paired=True``: instance i of the target is instance i of the reference (e.g. one mask per given
        person box), no threshold or matching."""
        from pycocotools import mask as mask_utils

        if reference.image_hw != target.image_hw:
            raise DataError(f"image {image_id}: reference masks are {reference.image_hw}, target {target.image_hw}.")
        iid = int(image_id)
        ref = reference if paired else reference.above(self.deploy_threshold)
        h, w = ref.image_hw
        self.images.append({"id": iid, "height": h, "width": w})
        ref_rles = [_rle_for_pycocotools(m) for m in ref.masks]
        tgt_rles = [_rle_for_pycocotools(m) for m in target.masks]
        for rle, cls, raw in zip(ref_rles, ref.classes.tolist(), ref.masks, strict=True):
            self.gt.append(
                {"id": len(self.gt) + 1, "image_id": iid, "category_id": int(cls) + 1, "segmentation": dict(raw),
                 "area": float(mask_utils.area(rle)), "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                 "iscrowd": 0}
            )  # fmt: skip
        for rle, cls, score, raw in zip(tgt_rles, target.classes.tolist(), target.scores.tolist(), target.masks,
                                        strict=True):  # fmt: skip
            self.results.append(
                {"id": len(self.results) + 1, "image_id": iid, "category_id": int(cls) + 1, "segmentation": dict(raw),
                 "area": float(mask_utils.area(rle)), "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                 "score": float(score), "iscrowd": 0}
            )  # fmt: skip
        self.classes.update(int(c) for c in ref.classes.tolist())
        self.classes.update(int(c) for c in target.classes.tolist())
        if not ref_rles:
            return
        if paired:
            for a, b in zip(ref_rles, tgt_rles, strict=True):
                self.ious.append(float(np.asarray(mask_utils.iou([b], [a], [0])).reshape(-1)[0]))
            return
        if not tgt_rles:
            self.ious.extend([0.0] * len(ref_rles))
            return
        iou = np.asarray(mask_utils.iou(tgt_rles, ref_rles, [0] * len(ref_rles)), dtype=np.float64)
        iou = iou.reshape(len(tgt_rles), len(ref_rles))
        same = target.classes[:, None] == ref.classes[None, :]
        iou = np.where(same, iou, -1.0)
        matched_r: dict[int, float] = {}
        used_t: set[int] = set()
        for flat in np.argsort(-iou, axis=None, kind="stable"):
            t, r = divmod(int(flat), len(ref_rles))
            if iou[t, r] < 0 or t in used_t or r in matched_r:
                continue
            matched_r[r] = float(iou[t, r])
            used_t.add(t)
        self.ious.extend(matched_r.get(r, 0.0) for r in range(len(ref_rles)))

    def result(self) -> MaskAgreementScores:
        ids = [im["id"] for im in self.images]

        def name(c: int) -> str:
            return self.class_names[c] if self.class_names is not None and 0 <= c < len(self.class_names) else str(c)

        if not self.gt:
            scores = CocoScores.flagged_empty(
                f"the reference has no instance with score >= {self.deploy_threshold} on the {len(ids)} image(s).",
                len(ids), len(self.results), 0,
            )  # fmt: skip
        elif not self.results:
            scores = CocoScores.flagged_empty(f"the target has no instance on the {len(ids)} image(s).", len(ids))
        else:
            cats = [{"id": c + 1, "name": name(c)} for c in sorted(self.classes)]
            scores = _segm_eval({"images": self.images, "annotations": self.gt, "categories": cats}, self.results, ids)
        matched = sum(1 for v in self.ious if v > 0)
        return MaskAgreementScores(
            scores=scores,
            mean_iou=float(np.mean(self.ious)) if self.ious else math.nan,
            min_iou=float(np.min(self.ious)) if self.ious else math.nan,
            num_reference=len(self.ious),
            num_matched=matched,
        )
