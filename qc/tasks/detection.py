"""The ``detection`` task: decoders, COCO AP of both sides, agreement AP, side-by-side pictures."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NamedTuple

from qc.config import ModelSpec, TaskSpec
from qc.errors import ConfigError
from qc.eval.accuracy import AccuracyResult, DetectionCollector, DetectionSet, collect, score
from qc.gates import GateResult, agreement_ap, gates_needing, map_drop
from qc.tasks.base import Calibration, Feeds, GateMetric, Headline

if TYPE_CHECKING:
    from qc.data.images import ImageSet
    from qc.data.preprocess import Transform
    from qc.runners.base import Runner


class DetectionOutcome(NamedTuple):
    """Scores of both sides and their detections (unpacks as ``result, reference, target``)."""

    result: AccuracyResult
    reference: DetectionSet
    target: DetectionSet


Scores = DetectionOutcome | AccuracyResult
"""What the detection gates read: a whole outcome, or its scores alone (the diagnosis keeps only those)."""


def _scores(outcome: Scores) -> AccuracyResult:
    return outcome.result if isinstance(outcome, DetectionOutcome) else outcome


def _decoder_source(decoder: str) -> Path | None:
    """The source file of a user decoder ``package.module:function`` (its bytes can change the outcome); None for a
    built-in decoder (qc's own code is in every key) or a module without a source file."""
    if ":" not in decoder:
        return None
    import importlib.util

    try:
        spec = importlib.util.find_spec(decoder.partition(":")[0])
    except (ImportError, ValueError):
        return None  # evaluating it fails with the decoder's own clear error
    origin = spec.origin if spec is not None else None
    return Path(origin) if origin and Path(origin).is_file() else None


class DetectionCollection:
    """:class:`qc.tasks.base.Collector` of the detection task: decode per image, score at :meth:`finish`."""

    def __init__(self, settings: TaskSpec, input_hw: tuple[int, int], images: ImageSet) -> None:
        self.settings = settings
        self.names = settings.names()
        self.images = images
        self.collector = DetectionCollector(settings, input_hw, len(self.names))

    def add(self, image_id: int, transform: Transform, reference: Mapping[str, Any], target: Mapping[str, Any]) -> None:
        self.collector.add(image_id, transform, reference, target)

    def finish(self) -> DetectionOutcome:
        c = self.collector
        result = score(self.settings, c.reference, c.target, c.sizes, self.images.coco, self.names)
        return DetectionOutcome(result, c.reference, c.target)


class DetectionTask:
    """:class:`qc.tasks.base.Task` for ``task: {kind: detection, ...}`` (the default kind)."""

    kind: ClassVar[str] = "detection"
    calibration: ClassVar[Calibration] = Calibration(
        budgets=(
            GateMetric("map_drop", "ap_drop", "max_map_drop"),
            GateMetric("map50_drop", "ap50_drop", "max_map50_drop"),
        ),
        agreement=GateMetric("agreement_ap", "agreement_ap", "min_agreement_ap"),
    )
    headlines: ClassVar[tuple[Headline, ...]] = (
        Headline("reference_ap", True, None, "reference AP"),
        Headline("target_ap", True, 0.01, "target AP"),
        Headline("ap_drop", False, None, "AP drop"),
        Headline("agreement.ap", True, None, "agreement AP"),
        Headline("target_ap50", True, None, "target AP50"),
        Headline("ap50_drop", False, None, "AP50 drop"),
    )
    diagnosis_metrics: ClassVar[tuple[str, str]] = ("ap", "agreement_ap")

    def __init__(self, spec: ModelSpec) -> None:
        if not isinstance(spec.task, TaskSpec):
            raise ConfigError(f"{spec.name}: the detection task needs a 'task' section with a decoder.")
        self.spec = spec
        self.settings: TaskSpec = spec.task

    @property
    def gates(self) -> tuple[str, ...]:
        return gates_needing("accuracy", task=self.kind)

    def key(self) -> object:
        """The settings (``class_names`` as a file: its content) and a user decoder's source file (its content)."""
        return {"settings": self.settings, "decoder_source": _decoder_source(self.settings.decoder)}

    def evaluate(
        self, reference: Runner, target: Runner, feeds: Feeds, input_hw: tuple[int, int], images: ImageSet
    ) -> DetectionOutcome:
        names = self.settings.names()
        ref, tgt, sizes = collect(self.settings, reference, target, feeds, input_hw, len(names))
        return DetectionOutcome(score(self.settings, ref, tgt, sizes, images.coco, names), ref, tgt)

    def collector(self, input_hw: tuple[int, int], images: ImageSet) -> DetectionCollection:
        return DetectionCollection(self.settings, input_hw, images)

    def save(self, outcome: DetectionOutcome, folder: Path) -> dict[str, Any]:
        outcome.reference.save(folder / "reference.npz")
        outcome.target.save(folder / "target.npz")
        return outcome.result.to_json()

    def load(self, data: Mapping[str, Any], folder: Path) -> DetectionOutcome | None:
        ref, tgt = folder / "reference.npz", folder / "target.npz"
        if not (ref.is_file() and tgt.is_file()):
            return None
        return DetectionOutcome(AccuracyResult.from_json(data), DetectionSet.load(ref), DetectionSet.load(tgt))

    def write_report(self, outcome: DetectionOutcome, images: ImageSet, folder: Path) -> list[Path]:
        from qc.report.accuracy import write_accuracy

        result, ref, tgt = outcome
        names = self.settings.names()
        pictures = self.settings.pictures
        return write_accuracy(result, ref, tgt, images, names, folder, pictures=pictures, model=self.spec.name)

    def check(self, gate: str, outcome: Scores) -> GateResult:
        thresholds, result = self.spec.thresholds, _scores(outcome)
        if gate == "map_drop":
            return map_drop(self.spec.name, result, thresholds, key="ap")
        if gate == "map50_drop":
            return map_drop(self.spec.name, result, thresholds, key="ap50")
        if gate == "agreement_ap":
            return agreement_ap(self.spec.name, result, thresholds)
        raise ConfigError(f"{self.spec.name}: gate {gate!r} is not a detection gate (those are {list(self.gates)}).")

    def describe(self, outcome: Scores) -> list[str]:
        result = _scores(outcome)
        lines = [
            f"{self.spec.name}: {result.images} images",
            f"{'':12}{'AP':>8}{'AP50':>8}{'AP75':>8}{'AR100':>8}{'dets':>7}",
        ]
        for side, sc in (("reference", result.reference), ("target", result.target)):
            if sc is not None:
                lines.append(f"{side:12}{sc.ap:8.4f}{sc.ap50:8.4f}{sc.ap75:8.4f}{sc.ar100:8.4f}{sc.num_detections:7d}")
        if result.labelled:
            lines.append(f"{'drop':12}{result.drop('ap'):8.4f}{result.drop('ap50'):8.4f}")
        lines.append(f"agreement AP {result.agreement.ap:.4f} (AP50 {result.agreement.ap50:.4f})")
        return lines

    def metrics(self, outcome: Scores) -> dict[str, float]:
        result = _scores(outcome)
        out = {"agreement_ap": float(result.agreement.ap), "agreement.ap": float(result.agreement.ap)}
        if result.reference is not None and result.target is not None:
            out.update(
                reference_ap=float(result.reference.ap),
                target_ap=float(result.target.ap),
                ap_drop=result.drop("ap"),
                ap50_drop=result.drop("ap50"),
                reference_ap50=float(result.reference.ap50),
                target_ap50=float(result.target.ap50),
            )
        return out

    def score(self, outcome: Scores, metric: str, side: Literal["reference", "target"]) -> float:
        """``ap`` (COCO AP@[.5:.95] against the labels) or ``agreement_ap`` (the reference side: 1.0)."""
        result = _scores(outcome)
        if metric == "agreement_ap":
            if side == "reference":
                return 1.0
            value = math.nan if result.agreement.empty else float(result.agreement.ap)
        elif metric == "ap":
            scores = result.reference if side == "reference" else result.target
            value = math.nan if scores is None or scores.empty else float(scores.ap)
        else:
            raise ConfigError(f"{self.spec.name}: {metric!r} is not a detection metric {self.diagnosis_metrics}.")
        return 0.0 if math.isnan(value) else value

    def calibration_metrics(self, outcome: Scores) -> dict[str, float]:
        result = _scores(outcome)
        agreement = math.nan if result.agreement.empty else float(result.agreement.ap)
        return {"ap_drop": result.drop("ap"), "ap50_drop": result.drop("ap50"), "agreement_ap": agreement}
