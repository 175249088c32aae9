"""The ``segmentation`` task: masks decoded through the inverse preprocessing, mIoU of both sides against ground
truth, label-free mask agreement, per-class IoU and reference | target | disagreement pictures of the worst images.

With ``task.crops`` the model is top-down (e.g. the person mask of a pose model): one input per person box
(:mod:`qc.tasks.crops`), each mask mapped back onto its image through the crop's transform; pixels outside the
crop are outside the network's view and are not scored, so every metric is taken inside the crops.

The metrics are those of :mod:`qc.eval.segmentation` (streamed: confusion matrices and boundary counts); the
collector also keeps the masks of the ``pictures`` most-disagreeing images (constant memory) for the pictures.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NamedTuple

import numpy as np

from qc.config import ModelSpec, SegmentationTask
from qc.errors import ConfigError, DataError, MetricError
from qc.eval.segmentation import (
    SegmentationAccumulator,
    SegmentationResult,
    SideMetrics,
    _channels_first,
    decode_mask,
    num_classes_of,
)
from qc.gates import GateResult, gates_needing
from qc.tasks.base import Calibration, Feeds, GateMetric, Headline, TaskInputs, run_collector
from qc.tasks.crops import crop_inputs, crop_plan

if TYPE_CHECKING:
    from qc.data.images import ImageSet
    from qc.data.preprocess import Transform
    from qc.eval.segmentation import Labels, MaskSource
    from qc.runners.base import Runner


class MaskPair(NamedTuple):
    """Both sides' masks of one image kept for a picture, with its agreement IoU (lower: more disagreement)."""

    agreement: float
    file_name: str
    reference: Labels
    target: Labels


class SegmentationOutcome(NamedTuple):
    """The metrics of both sides and the masks of the most-disagreeing images (worst first)."""

    result: SegmentationResult
    worst: list[MaskPair]


def pick_output(outputs: Mapping[str, np.ndarray], wanted: str | None, side: str) -> tuple[str, np.ndarray]:
    """The task's output tensor (``wanted``, default the first graph output) of one side."""
    if not outputs:
        raise DataError(f"the {side} produced no output.")
    name = wanted if wanted is not None else next(iter(outputs))
    if name not in outputs:
        raise DataError(f"task.output {name!r} is not an output of the {side}; its outputs are {sorted(outputs)}.")
    return name, outputs[name]


class SegmentationCollection:
    """:class:`qc.tasks.base.Collector` of the segmentation task: decode both sides per image and accumulate."""

    def __init__(self, settings: SegmentationTask, input_hw: tuple[int, int], images: ImageSet) -> None:
        self.settings = settings
        self.input_hw = input_hw
        self.decode = settings.decode_spec()
        self.source: MaskSource | None = settings.mask_source()
        names = {item.image_id: item.path.name for item in images.items}
        if settings.crops is None:
            self.names = names
        else:  # input i is the i-th person crop: scored on its image, inside the crop (the rest is IGNORE)
            plan = crop_plan(settings.crops.person_category, images)
            self.names = {i: names[image_id] for i, (image_id, _box) in enumerate(plan)}
        self.acc: SegmentationAccumulator | None = None
        self._worst: list[tuple[float, int, MaskPair]] = []  # a min-heap on -agreement: the best kept is on top

    def add(self, image_id: int, transform: Transform, reference: Mapping[str, Any], target: Mapping[str, Any]) -> None:
        name = self.names.get(image_id, str(image_id))
        out_name, ref_out = pick_output(reference, self.settings.output, "reference")
        _, tgt_out = pick_output(target, out_name, "target")
        ref, _ = decode_mask(ref_out, self.decode, transform, self.input_hw, f"{out_name} (reference)")
        tgt, _ = decode_mask(tgt_out, self.decode, transform, self.input_hw, f"{out_name} (target)")
        if self.acc is None:
            channels = _channels_first(ref_out, self.decode.layout, out_name).shape[0]
            k = max(num_classes_of(channels), len(self.settings.class_names))
            self.acc = SegmentationAccumulator(k, self.settings.boundary_ratio, self.settings.pictures)
        gt = self.source.mask(name) if self.source is not None else None
        if gt is not None and gt.shape != ref.shape:
            raise DataError(f"{name}: the ground-truth mask is {gt.shape}, the image is {ref.shape}.")
        agreement = self.acc.add(name, ref, tgt, gt)
        keep = self.settings.pictures
        item = (-agreement, -self.acc.images, MaskPair(agreement, name, ref, tgt))
        if keep > 0 and len(self._worst) < keep:
            heapq.heappush(self._worst, item)
        elif keep > 0 and item[:2] > self._worst[0][:2]:
            heapq.heapreplace(self._worst, item)

    def finish(self) -> SegmentationOutcome:
        if self.acc is None:
            raise MetricError("segmentation metrics are undefined: no image was evaluated.")
        worst = [pair for *_, pair in sorted(self._worst, key=lambda t: t[:2], reverse=True)]
        return SegmentationOutcome(self.acc.result(), worst)


def _nan(value: Any) -> float:
    return math.nan if value is None else float(value)


def result_to_json(result: SegmentationResult) -> dict[str, Any]:
    return dataclasses.asdict(result)


def result_from_json(data: Mapping[str, Any]) -> SegmentationResult:
    def side(d: Mapping[str, Any] | None) -> SideMetrics | None:
        if d is None:
            return None
        fg = d.get("foreground_iou")
        return SideMetrics(
            miou=_nan(d["miou"]),
            iou=[_nan(v) for v in d["iou"]],
            pixel_accuracy=_nan(d["pixel_accuracy"]),
            boundary_iou=_nan(d["boundary_iou"]),
            foreground_iou=None if fg is None else float(fg),
        )

    fg = data.get("agreement_foreground_iou")
    return SegmentationResult(
        images=int(data["images"]),
        num_classes=int(data["num_classes"]),
        reference=side(data.get("reference")),
        target=side(data.get("target")),
        agreement_miou=_nan(data["agreement_miou"]),
        agreement_pixel_accuracy=_nan(data["agreement_pixel_accuracy"]),
        agreement_foreground_iou=None if fg is None else float(fg),
        worst=[(float(s), str(n)) for s, n in data["worst"]],
    )


def _scores(outcome: SegmentationOutcome | SegmentationResult) -> SegmentationResult:
    return outcome.result if isinstance(outcome, SegmentationOutcome) else outcome


METRIC_NAMES = {"miou_drop": "drop.miou", "mask_agreement": "agreement.mask"}
"""qc.eval.segmentation's metric keys that are gate names -> the names recorded (summary.csv, history)."""


class Segmentation:
    """:class:`qc.tasks.base.Task` for ``task: {kind: segmentation, ...}``."""

    kind: ClassVar[str] = "segmentation"
    calibration: ClassVar[Calibration] = Calibration(
        budgets=(GateMetric("miou_drop", "miou_drop", "max_miou_drop"),),
        agreement=GateMetric("mask_agreement", "mask_agreement", "min_mask_agreement"),
    )
    headlines: ClassVar[tuple[Headline, ...]] = (
        Headline("reference_miou", True, None, "mIoU (reference)"),
        Headline("target_miou", True, 0.01, "mIoU (target)"),
        Headline("drop.miou", False, None, "mIoU drop"),
        Headline("agreement.mask", True, 0.01, "mask agreement"),
    )
    diagnosis_metrics: ClassVar[tuple[str, str]] = ("miou", "mask_agreement")

    def __init__(self, spec: ModelSpec) -> None:
        if not isinstance(spec.task, SegmentationTask):
            raise ConfigError(f"{spec.name}: the segmentation task needs 'task: {{kind: segmentation, ...}}'.")
        self.spec = spec
        self.settings: SegmentationTask = spec.task

    @property
    def gates(self) -> tuple[str, ...]:
        return gates_needing("accuracy", task=self.kind)

    def labelled(self, images: ImageSet) -> bool:
        """Whether the metrics against ground truth exist: ``task.ground_truth`` is set."""
        return self.settings.ground_truth is not None

    def key(self) -> object:
        return {"settings": self.settings}

    # -- inputs (a top-down model: one person crop per input) ---------------------------------------------------
    def inputs_key(self) -> object:
        return None if self.settings.crops is None else {"crops": self.settings.crops}

    def inputs(self, images: ImageSet, input_name: str, input_hw: tuple[int, int]) -> TaskInputs | None:
        """:class:`qc.tasks.base.InputsHook`: with ``task.crops``, one input per person box; each crop's mask is
        mapped back onto its image, and the pixels outside the crop are not scored."""
        crops = self.settings.crops
        if crops is None:
            return None
        return crop_inputs(
            self.spec.name,
            "Top-down segmentation",
            images,
            crops.person_category,
            crops.crop,
            self.spec.preprocess,
            input_name,
            input_hw,
        )

    def collector(self, input_hw: tuple[int, int], images: ImageSet) -> SegmentationCollection:
        return SegmentationCollection(self.settings, input_hw, images)

    def evaluate(
        self, reference: Runner, target: Runner, feeds: Feeds, input_hw: tuple[int, int], images: ImageSet
    ) -> SegmentationOutcome:
        outcome: SegmentationOutcome = run_collector(self.collector(input_hw, images), reference, target, feeds)
        return outcome

    def save(self, outcome: SegmentationOutcome, folder: Path) -> dict[str, Any]:
        arrays: dict[str, np.ndarray] = {}
        for i, pair in enumerate(outcome.worst):
            arrays[f"reference_{i}"] = pair.reference
            arrays[f"target_{i}"] = pair.target
        savez: Any = np.savez_compressed  # numpy's stub reads ** as its keyword arguments
        savez(folder / "masks.npz", **arrays)
        return {
            "result": result_to_json(outcome.result),
            "worst": [{"agreement": p.agreement, "file_name": p.file_name} for p in outcome.worst],
        }

    def load(self, data: Mapping[str, Any], folder: Path) -> SegmentationOutcome | None:
        path = folder / "masks.npz"
        if not path.is_file():
            return None
        with np.load(path, allow_pickle=False) as z:
            worst = [
                MaskPair(float(w["agreement"]), str(w["file_name"]), z[f"reference_{i}"], z[f"target_{i}"])
                for i, w in enumerate(data["worst"])
            ]
        return SegmentationOutcome(result_from_json(data["result"]), worst)

    def write_report(self, outcome: SegmentationOutcome, images: ImageSet, folder: Path) -> list[Path]:
        from qc.report.task_artifacts import write_segmentation

        return write_segmentation(outcome, images, self.settings.class_names, folder, model=self.spec.name)

    def check(self, gate: str, outcome: SegmentationOutcome | SegmentationResult) -> GateResult:
        result, thresholds, model = _scores(outcome), self.spec.thresholds, self.spec.name
        if gate == "miou_drop":
            return miou_drop(model, result, thresholds.max_miou_drop)
        if gate == "mask_agreement":
            return mask_agreement(model, result, thresholds.min_mask_agreement)
        raise ConfigError(f"{model}: gate {gate!r} is not a segmentation gate (those are {list(self.gates)}).")

    def describe(self, outcome: SegmentationOutcome | SegmentationResult) -> list[str]:
        r = _scores(outcome)
        lines = [
            f"{self.spec.name}: {r.images} images, {r.num_classes} classes",
            f"{'':12}{'mIoU':>8}{'pixacc':>8}{'bIoU':>8}",
        ]
        for side, m in (("reference", r.reference), ("target", r.target)):
            if m is not None:
                lines.append(f"{side:12}{m.miou:8.4f}{m.pixel_accuracy:8.4f}{m.boundary_iou:8.4f}")
        if r.reference is not None and r.target is not None:
            lines.append(f"{'drop':12}{r.miou_drop:8.4f}")
        lines.append(
            f"mask agreement {r.mask_agreement:.4f} (mIoU {r.agreement_miou:.4f}, "
            f"pixel accuracy {r.agreement_pixel_accuracy:.4f})"
        )
        return lines

    def metrics(self, outcome: SegmentationOutcome | SegmentationResult) -> dict[str, float]:
        """The result's numbers; the drop and the agreement as ``drop.miou`` and ``agreement.mask`` (a metric never
        takes a gate's name: summary.csv has one column per gate outcome)."""
        return {METRIC_NAMES.get(k, k): v for k, v in _scores(outcome).metrics().items()}

    def calibration_metrics(self, outcome: SegmentationOutcome | SegmentationResult) -> dict[str, float]:
        r = _scores(outcome)
        drop = r.miou_drop if r.reference is not None and r.target is not None else math.nan
        return {"miou_drop": drop, "mask_agreement": r.mask_agreement}

    def score(
        self, outcome: SegmentationOutcome | SegmentationResult, metric: str, side: Literal["reference", "target"]
    ) -> float:
        r = _scores(outcome)
        if metric == "mask_agreement":
            value = 1.0 if side == "reference" else r.mask_agreement
        elif metric == "miou":
            m = r.reference if side == "reference" else r.target
            value = m.miou if m is not None else 0.0
        else:
            raise ConfigError(f"{self.spec.name}: {metric!r} is not a segmentation metric {self.diagnosis_metrics}.")
        return 0.0 if math.isnan(value) else float(value)


def miou_drop(model: str, result: SegmentationResult, budget: float) -> GateResult:
    """Reference mIoU minus target mIoU against ground-truth masks, at most ``budget``."""
    metrics: dict[str, float | str] = {"images": float(result.images)}
    if result.reference is None or result.target is None:
        return GateResult(
            "miou_drop",
            False,
            f"{model}: the segmentation task has no ground-truth masks, so mIoU cannot be computed; set "
            "task.ground_truth (COCO annotations or a folder of label masks), or list only mask_agreement in 'gates'.",
            metrics,
        )
    ref, tgt = result.reference.miou, result.target.miou
    drop = ref - tgt
    metrics.update({"reference_miou": ref, "target_miou": tgt, "drop.miou": drop})
    text = f"reference mIoU {ref:.4f}, target mIoU {tgt:.4f}, drop {drop:.4f}, budget {budget:.4f}"
    if math.isnan(drop) or drop > budget:
        return GateResult(
            "miou_drop", False, f"{model}: mIoU drop over budget: {text} ({result.images} images)", metrics
        )
    return GateResult("miou_drop", True, f"{model}: {text}", metrics)


def mask_agreement(model: str, result: SegmentationResult, floor: float) -> GateResult:
    """The target's masks against the reference's (foreground IoU of a two-class task, else mIoU), at least
    ``floor``; needs no labels."""
    value = result.mask_agreement
    what = "foreground IoU" if result.agreement_foreground_iou is not None else "mIoU"
    metrics: dict[str, float | str] = {
        "agreement.mask": value,
        "agreement_miou": result.agreement_miou,
        "agreement_pixel_accuracy": result.agreement_pixel_accuracy,
    }
    text = (
        f"mask agreement ({what} of the target's masks against the reference's) {value:.4f}; "
        f"pixel accuracy {result.agreement_pixel_accuracy:.4f}, {result.images} images"
    )
    if math.isnan(value) or value < floor:
        return GateResult("mask_agreement", False, f"{model}: {text} < threshold {floor:.4f}", metrics)
    return GateResult("mask_agreement", True, f"{model}: {text} >= {floor:.4f}", metrics)
