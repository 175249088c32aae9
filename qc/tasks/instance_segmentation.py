"""The ``instance-segmentation`` task: YOLOv8-seg heads, COCO mask AP of both sides and label-free mask agreement.

The decoder (:func:`qc.eval.instance_masks.decode_yolov8_seg`) reads two outputs: the head ``(1, 4 + classes + M,
anchors)`` (or its transpose) and the prototypes ``(1, M, h, w)``; masks are evaluated in original image pixels as
COCO RLEs. Declare the head's slices (boxes, scores, coefficients: :func:`qc.eval.instance_masks.yolov8_seg_slices`)
under ``outputs:`` so a scale shared by pixel-sized boxes and unit-sized coefficients shows per slice.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from qc.config import InstanceSegmentationTask as InstanceSettings
from qc.config import ModelSpec
from qc.errors import ConfigError, DataError
from qc.eval.coco import CocoScores
from qc.eval.instance_masks import (
    MaskAgreement,
    MaskAgreementScores,
    YoloSegSpec,
    decode_yolov8_seg,
    evaluate_masks,
    to_coco_mask_results,
)
from qc.gates import GateResult, gates_needing
from qc.tasks.base import Calibration, Feeds, GateMetric, Headline, run_collector

if TYPE_CHECKING:
    from qc.data.images import ImageSet
    from qc.data.preprocess import Transform
    from qc.runners.base import Runner


@dataclass
class InstanceOutcome:
    """Mask AP of both sides against the labels (None without labels), the mask agreement, and both sides'
    instances as COCO ``segm`` results (RLE, original pixels)."""

    images: int
    labelled: bool
    reference: CocoScores | None
    target: CocoScores | None
    agreement: MaskAgreementScores
    category_map: dict[int, int] = field(default_factory=dict)
    reference_instances: list[dict[str, Any]] = field(default_factory=list)
    target_instances: list[dict[str, Any]] = field(default_factory=list)

    def drop(self) -> float:
        if self.reference is None or self.target is None or self.reference.empty or self.target.empty:
            return math.nan
        return float(self.reference.ap) - float(self.target.ap)

    def summary(self) -> dict[str, Any]:
        """``accuracy.json``."""
        out: dict[str, Any] = {"images": self.images, "labelled": self.labelled}
        for side, sc in (("reference", self.reference), ("target", self.target)):
            if sc is not None:
                for key in ("ap", "ap50", "ap75", "ar100"):
                    out[f"{side}.mask_{key}"] = getattr(sc, key)
                out[f"{side}.instances"] = sc.num_detections
                out[f"{side}.per_class_mask_ap"] = sc.per_class_ap
                out[f"{side}.empty_reason"] = sc.reason or None
        if self.labelled:
            out["drop.mask_ap"] = self.drop()
        a = self.agreement
        out.update(
            {
                "agreement.mask_ap": a.scores.ap,
                "agreement.mask_ap50": a.scores.ap50,
                "agreement.mean_iou": a.mean_iou,
                "agreement.min_iou": a.min_iou,
                "agreement.reference_instances": a.num_reference,
                "agreement.matched": a.num_matched,
                "agreement.empty_reason": a.scores.reason or None,
            }
        )
        return out

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        del data["reference_instances"], data["target_instances"]
        data["category_map"] = {str(k): v for k, v in self.category_map.items()}
        return data

    @classmethod
    def from_json(
        cls, data: Mapping[str, Any], reference: list[dict[str, Any]], target: list[dict[str, Any]]
    ) -> InstanceOutcome:
        def scores(d: Mapping[str, Any] | None) -> CocoScores | None:
            return None if d is None else CocoScores(**d)

        a = dict(data["agreement"])
        a["scores"] = CocoScores(**a["scores"])
        return cls(
            images=int(data["images"]),
            labelled=bool(data["labelled"]),
            reference=scores(data["reference"]),
            target=scores(data["target"]),
            agreement=MaskAgreementScores(**a),
            category_map={int(k): int(v) for k, v in data["category_map"].items()},
            reference_instances=reference,
            target_instances=target,
        )


class InstanceCollection:
    """:class:`qc.tasks.base.Collector` of the instance-segmentation task: decode per image (masks as RLEs), score
    at :meth:`finish`."""

    def __init__(self, task: InstanceSegmentationTask, input_hw: tuple[int, int], images: ImageSet) -> None:
        from qc.eval.accuracy import category_map

        self.task = task
        self.input_hw = input_hw
        self.images = images
        self.names = task.settings.names()
        self.spec = task.decode_spec(len(self.names))
        self.category_map = category_map(self.names, images.coco)
        self.agreement = MaskAgreement(task.settings.deploy_threshold, self.names)
        self.reference: list[dict[str, Any]] = []
        self.target: list[dict[str, Any]] = []
        self.ids: list[int] = []

    def _pick(self, outputs: Mapping[str, np.ndarray], side: str) -> tuple[np.ndarray, np.ndarray]:
        name = self.task.spec.name
        wanted = self.task.settings.outputs
        if wanted:
            missing = [n for n in wanted if n not in outputs]
            if missing:
                raise DataError(f"{name}: task.outputs {missing} are not outputs of the {side} ({sorted(outputs)}).")
            return outputs[wanted[0]], outputs[wanted[1]]
        heads = [n for n, v in outputs.items() if np.ndim(v) == 3]
        protos = [n for n, v in outputs.items() if np.ndim(v) == 4]
        if len(heads) != 1 or len(protos) != 1:
            shapes = {n: list(np.shape(v)) for n, v in outputs.items()}
            raise DataError(
                f"{name}: cannot tell the YOLOv8-seg head (3-D) from the prototypes (4-D) among the {side}'s outputs "
                f"{shapes}; set task.outputs: [head, prototypes]."
            )
        return outputs[heads[0]], outputs[protos[0]]

    def add(self, image_id: int, transform: Transform, reference: Mapping[str, Any], target: Mapping[str, Any]) -> None:
        sides = []
        for side, outputs in (("reference", reference), ("target", target)):
            head, protos = self._pick(outputs, side)
            sides.append(decode_yolov8_seg(head, protos, self.spec, [transform], self.input_hw)[0])
        ref, tgt = sides
        self.agreement.add(image_id, ref, tgt)
        self.reference += to_coco_mask_results(image_id, ref, self.category_map)
        self.target += to_coco_mask_results(image_id, tgt, self.category_map)
        self.ids.append(int(image_id))

    def finish(self) -> InstanceOutcome:
        coco = self.images.coco
        ref = tgt = None
        if coco is not None:
            ref = evaluate_masks(coco, self.reference, self.ids)
            tgt = evaluate_masks(coco, self.target, self.ids)
        return InstanceOutcome(
            images=len(self.ids),
            labelled=coco is not None,
            reference=ref,
            target=tgt,
            agreement=self.agreement.result(),
            category_map=self.category_map,
            reference_instances=self.reference,
            target_instances=self.target,
        )


class InstanceSegmentationTask:
    """:class:`qc.tasks.base.Task` for ``task: {kind: instance-segmentation, ...}``."""

    kind: ClassVar[str] = "instance-segmentation"
    calibration: ClassVar[Calibration] = Calibration(
        budgets=(GateMetric("mask_ap_drop", "drop_mask_ap", "max_mask_ap_drop"),),
        agreement=GateMetric("instance_mask_agreement", "mask_agreement_ap", "min_instance_mask_agreement"),
    )
    headlines: ClassVar[tuple[Headline, ...]] = (
        Headline("target_mask_ap", True, 0.01, "mask AP (target)"),
        Headline("drop_mask_ap", False, None, "mask AP drop"),
        Headline("mask_agreement_ap", True, 0.01, "mask agreement AP"),
    )
    diagnosis_metrics: ClassVar[tuple[str, str]] = ("mask_ap", "mask_agreement")

    def __init__(self, spec: ModelSpec) -> None:
        if not isinstance(spec.task, InstanceSettings):
            raise ConfigError(f"{spec.name}: the instance-segmentation task needs a 'task' section of that kind.")
        self.spec = spec
        self.settings: InstanceSettings = spec.task

    def decode_spec(self, num_classes: int) -> YoloSegSpec:
        s = self.settings
        return YoloSegSpec(
            num_classes, s.num_coefficients, s.score_threshold, s.iou_threshold, s.max_detections, s.mask_threshold,
            s.class_agnostic,
        )  # fmt: skip

    def labels_missing(self, images: ImageSet) -> str | None:
        """:class:`qc.tasks.base.LabelsHook`: the labels need (non-crowd) segmentations."""
        if images.coco is None:
            return None
        if any(a.get("segmentation") and not a.get("iscrowd", 0) for a in images.coco.get("annotations", [])):
            return None
        return f"the labels ({images.source}) hold no (non-crowd) segmentation: the mask AP drop cannot be measured"

    @property
    def gates(self) -> tuple[str, ...]:
        return gates_needing("accuracy", task=self.kind)

    def key(self) -> object:
        return {"settings": self.settings}

    def collector(self, input_hw: tuple[int, int], images: ImageSet) -> InstanceCollection:
        return InstanceCollection(self, input_hw, images)

    def evaluate(
        self, reference: Runner, target: Runner, feeds: Feeds, input_hw: tuple[int, int], images: ImageSet
    ) -> InstanceOutcome:
        outcome: InstanceOutcome = run_collector(self.collector(input_hw, images), reference, target, feeds)
        return outcome

    def save(self, outcome: InstanceOutcome, folder: Path) -> dict[str, Any]:
        from qc.jsonio import write_json

        write_json(folder / "instances_reference.json", outcome.reference_instances, indent=None)
        write_json(folder / "instances_target.json", outcome.target_instances, indent=None)
        return outcome.to_json()

    def load(self, data: Mapping[str, Any], folder: Path) -> InstanceOutcome | None:
        from qc.jsonio import read_json

        ref, tgt = folder / "instances_reference.json", folder / "instances_target.json"
        if not (ref.is_file() and tgt.is_file()):
            return None
        return InstanceOutcome.from_json(data, read_json(ref), read_json(tgt))

    def write_report(self, outcome: InstanceOutcome, images: ImageSet, folder: Path) -> list[Path]:
        from qc.jsonio import write_json

        folder.mkdir(parents=True, exist_ok=True)
        return [
            write_json(folder / "accuracy.json", outcome.summary()),
            write_json(folder / "masks_reference.json", outcome.reference_instances, indent=None),
            write_json(folder / "masks_target.json", outcome.target_instances, indent=None),
        ]

    def check(self, gate: str, outcome: InstanceOutcome) -> GateResult:
        if gate == "mask_ap_drop":
            return self._drop(outcome)
        if gate == "instance_mask_agreement":
            return self._agreement(outcome)
        raise ConfigError(
            f"{self.spec.name}: gate {gate!r} is not an instance-segmentation gate (those are {list(self.gates)})."
        )

    def _drop(self, o: InstanceOutcome) -> GateResult:
        name, budget = self.spec.name, self.spec.thresholds.max_mask_ap_drop
        metrics: dict[str, float | str] = {"images": float(o.images)}
        if not o.labelled or o.reference is None or o.target is None:
            return GateResult(
                "mask_ap_drop", False,
                f"{name}: the evaluation data has no labels (a plain image folder), so mask AP cannot be computed; "
                "give eval_data a COCO annotation file with segmentations, or list only instance_mask_agreement in "
                "'gates'.",
                metrics,
            )  # fmt: skip
        for side, sc in (("reference", o.reference), ("target", o.target)):
            if sc.empty:
                return GateResult("mask_ap_drop", False, f"{name}: the {side}'s mask AP is undefined: {sc.reason}",
                                  metrics)  # fmt: skip
        ref, tgt = float(o.reference.ap), float(o.target.ap)
        drop = ref - tgt
        metrics.update(reference_mask_ap=ref, target_mask_ap=tgt, drop_mask_ap=drop)
        text = f"reference mask AP {ref:.4f}, target mask AP {tgt:.4f}, drop {drop:.4f}, budget {budget:.4f}"
        if math.isnan(drop) or drop > budget:
            return GateResult("mask_ap_drop", False, f"{name}: mask AP drop over budget: {text} ({o.images} images)",
                              metrics)  # fmt: skip
        return GateResult("mask_ap_drop", True, f"{name}: {text}", metrics)

    def _agreement(self, o: InstanceOutcome) -> GateResult:
        name, floor = self.spec.name, self.spec.thresholds.min_instance_mask_agreement
        a = o.agreement
        metrics: dict[str, float | str] = {
            "mask_agreement_ap": a.scores.ap, "mask_agreement_mean_iou": a.mean_iou,
        }  # fmt: skip
        if a.scores.empty:
            return GateResult(
                "instance_mask_agreement", False, f"{name}: mask agreement AP undefined: {a.scores.reason}", metrics
            )
        detail = (
            f"AP50 {a.scores.ap50:.4f}; matched mask IoU mean {a.mean_iou:.4f}, min {a.min_iou:.4f} over "
            f"{a.num_reference} reference instances above {self.settings.deploy_threshold}, {a.num_matched} matched"
        )
        if math.isnan(a.scores.ap) or a.scores.ap < floor:
            return GateResult(
                "instance_mask_agreement", False,
                f"{name}: mask agreement AP {a.scores.ap:.4f} < threshold {floor:.4f} ({detail}, {o.images} images)",
                metrics,
            )  # fmt: skip
        return GateResult(
            "instance_mask_agreement", True, f"{name}: mask agreement AP {a.scores.ap:.4f} >= {floor:.4f} ({detail})",
            metrics,
        )  # fmt: skip

    def describe(self, outcome: InstanceOutcome) -> list[str]:
        o = outcome
        lines = [f"{self.spec.name}: {o.images} images", f"{'':12}{'mask AP':>8}{'AP50':>8}{'AP75':>8}{'AR100':>8}"
                 f"{'inst':>7}"]  # fmt: skip
        for side, sc in (("reference", o.reference), ("target", o.target)):
            if sc is not None:
                lines.append(f"{side:12}{sc.ap:8.4f}{sc.ap50:8.4f}{sc.ap75:8.4f}{sc.ar100:8.4f}{sc.num_detections:7d}")
        if o.labelled:
            lines.append(f"{'drop':12}{o.drop():8.4f}")
        a = o.agreement
        lines.append(
            f"mask agreement AP {a.scores.ap:.4f} (AP50 {a.scores.ap50:.4f}), matched IoU mean {a.mean_iou:.4f}"
        )
        return lines

    def metrics(self, outcome: InstanceOutcome) -> dict[str, float]:
        o = outcome
        out: dict[str, float] = {}
        a = o.agreement
        if not a.scores.empty:
            out["mask_agreement_ap"] = float(a.scores.ap)
        if not math.isnan(a.mean_iou):
            out["mask_agreement_mean_iou"] = float(a.mean_iou)
        for side, sc in (("reference", o.reference), ("target", o.target)):
            if sc is not None and not sc.empty:
                out[f"{side}_mask_ap"] = float(sc.ap)
        if not math.isnan(o.drop()):
            out["drop_mask_ap"] = o.drop()
        return out

    def calibration_metrics(self, outcome: InstanceOutcome) -> dict[str, float]:
        a = outcome.agreement.scores
        return {"drop_mask_ap": outcome.drop(), "mask_agreement_ap": math.nan if a.empty else float(a.ap)}

    def score(self, outcome: InstanceOutcome, metric: str, side: Literal["reference", "target"]) -> float:
        if metric == "mask_ap":
            sc = outcome.reference if side == "reference" else outcome.target
            return 0.0 if sc is None or sc.empty or math.isnan(sc.ap) else float(sc.ap)
        if metric == "mask_agreement":
            if side == "reference":
                return 1.0
            a = outcome.agreement.scores
            return 0.0 if a.empty or math.isnan(a.ap) else float(a.ap)
        raise ConfigError(
            f"{self.spec.name}: {metric!r} is not an instance-segmentation metric (those are {self.diagnosis_metrics})."
        )
