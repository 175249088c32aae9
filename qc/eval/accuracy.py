"""The accuracy stage: decode both sides' outputs, COCO-evaluate them on the same images, score agreement."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qc.config import TaskSpec
from qc.data.coco_names import coco_categories_json
from qc.errors import ConfigError
from qc.eval.coco import CocoScores, agreement_ap, category_map_by_name, evaluate_coco, to_coco_results
from qc.eval.decoders import DecodeSettings, get_decoder
from qc.eval.pictures import disagreement
from qc.eval.types import BoxInverse, Detections
from qc.runners.base import Runner, batch_size_of, chunks, run_batch


@dataclass
class AccuracyResult:
    """Every number of the accuracy stage, both sides, plus the image count."""

    images: int
    labelled: bool
    reference: CocoScores | None
    target: CocoScores | None
    agreement: CocoScores
    disagreement: list[tuple[int, float]] = field(default_factory=list)  # (image id, 1 - F1), worst first
    category_map: dict[int, int] = field(default_factory=dict)

    def drop(self, key: str) -> float:
        if self.reference is None or self.target is None:
            return math.nan
        return float(getattr(self.reference, key)) - float(getattr(self.target, key))

    def summary(self) -> dict[str, Any]:
        """``accuracy.json``: flat keys such as ``reference.ap``, ``drop.ap``, ``agreement_ap``."""
        out: dict[str, Any] = {"images": self.images, "labelled": self.labelled}
        for side, scores in (("reference", self.reference), ("target", self.target)):
            if scores is None:
                continue
            for key in ("ap", "ap50", "ap75", "ar100"):
                out[f"{side}.{key}"] = getattr(scores, key)
            out[f"{side}.detections"] = scores.num_detections
            out[f"{side}.empty_reason"] = scores.reason or None
            out[f"{side}.per_class_ap"] = scores.per_class_ap
        if self.labelled:
            out["drop.ap"] = self.drop("ap")
            out["drop.ap50"] = self.drop("ap50")
        out["agreement_ap"] = self.agreement.ap
        out["agreement_ap50"] = self.agreement.ap50
        out["agreement.empty_reason"] = self.agreement.reason or None
        out["most_disagreeing_images"] = [{"image_id": i, "disagreement": d} for i, d in self.disagreement]
        return out

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["category_map"] = {str(k): v for k, v in self.category_map.items()}
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AccuracyResult:
        def scores(d: Mapping[str, Any] | None) -> CocoScores | None:
            return None if d is None else CocoScores(**d)

        agreement = scores(data["agreement"])
        assert agreement is not None
        return cls(
            images=data["images"],
            labelled=data["labelled"],
            reference=scores(data["reference"]),
            target=scores(data["target"]),
            agreement=agreement,
            disagreement=[(int(i), float(d)) for i, d in data["disagreement"]],
            category_map={int(k): int(v) for k, v in data["category_map"].items()},
        )


def decode_settings(task: TaskSpec, input_hw: tuple[int, int], num_classes: int) -> DecodeSettings:
    return DecodeSettings(
        score_threshold=task.score_threshold,
        iou_threshold=task.iou_threshold,
        max_detections=task.max_detections,
        output_names=task.outputs,
        layout=task.layout,
        input_hw=input_hw,
        num_classes=num_classes,
    )


@dataclass
class DetectionSet:
    """Per-image detections of one side, in original image pixels."""

    by_image: dict[int, Detections] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        ids = sorted(self.by_image)
        counts = np.array([len(self.by_image[i]) for i in ids], np.int64)
        empty4 = np.zeros((0, 4), np.float32)
        np.savez_compressed(
            path,
            ids=np.array(ids, np.int64),
            counts=counts,
            boxes=np.concatenate([self.by_image[i].boxes for i in ids]) if ids else empty4,
            scores=np.concatenate([self.by_image[i].scores for i in ids]) if ids else np.zeros(0, np.float32),
            classes=np.concatenate([self.by_image[i].classes for i in ids]) if ids else np.zeros(0, np.int64),
        )

    @classmethod
    def load(cls, path: Path) -> DetectionSet:
        with np.load(path) as data:
            out = cls()
            start = 0
            for image_id, n in zip(data["ids"].tolist(), data["counts"].tolist(), strict=True):
                sl = slice(start, start + n)
                out.by_image[image_id] = Detections(data["boxes"][sl], data["scores"][sl], data["classes"][sl])
                start += n
            return out

    def coco_results(self, category_map: Mapping[int, int]) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = []
        for image_id in sorted(self.by_image):
            results.extend(to_coco_results(image_id, self.by_image[image_id], category_map))
        return results


class DetectionCollector:
    """Decodes both sides' final outputs image by image and keeps only the detections (constant per image).

    Fed by :func:`collect` (which runs both sides) or by another pass that already has the outputs (the
    comparison stream: one target execution per image for both stages).
    """

    def __init__(self, task: TaskSpec, input_hw: tuple[int, int], num_classes: int) -> None:
        self.decoder = get_decoder(task.decoder)
        self.settings = decode_settings(task, input_hw, num_classes)
        self.reference, self.target = DetectionSet(), DetectionSet()
        self.sizes: dict[int, tuple[int, int]] = {}

    def add(
        self,
        image_id: int,
        inverse: BoxInverse,
        reference: Mapping[str, np.ndarray],
        target: Mapping[str, np.ndarray],
    ) -> None:
        ref_raw = self.decoder(reference, self.settings)[0]
        tgt_raw = self.decoder(target, self.settings)[0]
        self.reference.by_image[image_id] = ref_raw.to_original(inverse)
        self.target.by_image[image_id] = tgt_raw.to_original(inverse)
        orig_w, orig_h = getattr(inverse, "orig_w", 0), getattr(inverse, "orig_h", 0)
        self.sizes[image_id] = (int(orig_w), int(orig_h))


def collect(
    task: TaskSpec,
    reference: Runner,
    target: Runner,
    feeds: Iterable[tuple[int, Mapping[str, np.ndarray], BoxInverse]],
    input_hw: tuple[int, int],
    num_classes: int,
) -> tuple[DetectionSet, DetectionSet, dict[int, tuple[int, int]]]:
    """Run both sides image by image (a batching target: chunk by chunk) and keep only the decoded detections."""
    collector = DetectionCollector(task, input_hw, num_classes)
    for chunk in chunks(feeds, batch_size_of(target)):  # a batching target runs a chunk per call
        tgt_outs = run_batch(target, [feed for _, feed, _ in chunk])
        for k, (image_id, feed, inverse) in enumerate(chunk):
            tgt_out, tgt_outs[k] = tgt_outs[k], {}
            collector.add(image_id, inverse, reference.run(feed), tgt_out)
            del tgt_out
    return collector.reference, collector.target, collector.sizes


def category_map(names: list[str], coco: Mapping[str, Any] | None) -> dict[int, int]:
    """Model class index -> dataset category id: by name against the dataset, else COCO's, else index + 1."""
    if coco is not None:
        return category_map_by_name(names, coco["categories"])
    try:
        return category_map_by_name(names, coco_categories_json())
    except ConfigError:
        return {i: i + 1 for i in range(len(names))}


def score(
    task: TaskSpec,
    ref: DetectionSet,
    tgt: DetectionSet,
    sizes: Mapping[int, tuple[int, int]],
    coco: Mapping[str, Any] | None,
    names: list[str],
) -> AccuracyResult:
    cmap = category_map(names, coco)
    image_ids = sorted(ref.by_image)
    ref_scores = tgt_scores = None
    if coco is not None:
        ref_scores = evaluate_coco(coco, ref.coco_results(cmap), image_ids)
        tgt_scores = evaluate_coco(coco, tgt.coco_results(cmap), image_ids)
    agree = agreement_ap(ref.by_image, tgt.by_image, task.deploy_threshold, sizes, class_names=names)
    ranking = sorted(
        ((i, disagreement(ref.by_image[i], tgt.by_image[i], score_threshold=task.deploy_threshold)) for i in image_ids),
        key=lambda t: (-t[1], t[0]),
    )[:50]
    return AccuracyResult(len(image_ids), coco is not None, ref_scores, tgt_scores, agree, ranking, cmap)
