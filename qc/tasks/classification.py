"""The ``classification`` task: top-1 / top-5 of both sides against labels (a CSV or the file name), the drop,
label-free top-1 agreement and the mean KL divergence of the probabilities, and one prediction row per image."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NamedTuple

import numpy as np

from qc.config import ClassificationTask, ModelSpec
from qc.errors import ConfigError
from qc.eval.classification import (
    EPS,
    ClassificationAccumulator,
    ClassificationResult,
    probabilities,
    topk,
)
from qc.gates import GateResult, gates_needing
from qc.tasks.base import Calibration, Feeds, GateMetric, Headline, run_collector
from qc.tasks.segmentation import pick_output

if TYPE_CHECKING:
    from qc.data.images import ImageSet
    from qc.data.preprocess import Transform
    from qc.runners.base import Runner


@dataclasses.dataclass(frozen=True)
class Prediction:
    """One image: its label (None without labels), each side's top-1 class and probability, and KL(ref || tgt)."""

    file: str
    label: int | None
    reference_top1: int
    reference_p: float
    target_top1: int
    target_p: float
    kl: float


class ClassificationOutcome(NamedTuple):
    result: ClassificationResult
    predictions: list[Prediction]


class ClassificationCollection:
    """:class:`qc.tasks.base.Collector` of the classification task."""

    def __init__(self, settings: ClassificationTask, images: ImageSet) -> None:
        self.settings = settings
        self.label_of: Callable[[str], int] | None = settings.label_of()
        self.names = {item.image_id: item.path.name for item in images.items}
        self.acc = ClassificationAccumulator(activation=settings.activation, top=settings.top_k)
        self.predictions: list[Prediction] = []

    def add(self, image_id: int, transform: Transform, reference: Mapping[str, Any], target: Mapping[str, Any]) -> None:
        name = self.names.get(image_id, str(image_id))
        out_name, ref_out = pick_output(reference, self.settings.output, "reference")
        _, tgt_out = pick_output(target, out_name, "target")
        label = self.label_of(name) if self.label_of is not None else None
        self.acc.add(name, ref_out, tgt_out, label)  # validates shapes and the label's range first
        p = probabilities(ref_out, self.settings.activation, "reference")
        q = probabilities(tgt_out, self.settings.activation, "target")
        r1, t1 = int(topk(p, 1)[0]), int(topk(q, 1)[0])
        kl = float(np.sum(p * (np.log(p + EPS) - np.log(q + EPS))))
        self.predictions.append(Prediction(name, label, r1, float(p[r1]), t1, float(q[t1]), kl))

    def finish(self) -> ClassificationOutcome:
        return ClassificationOutcome(self.acc.result(), list(self.predictions))


def _scores(outcome: ClassificationOutcome | ClassificationResult) -> ClassificationResult:
    return outcome.result if isinstance(outcome, ClassificationOutcome) else outcome


def _result_from_json(data: Mapping[str, Any]) -> ClassificationResult:
    fields = {f.name for f in dataclasses.fields(ClassificationResult)}
    return ClassificationResult(**{k: v for k, v in data.items() if k in fields})


METRIC_NAMES = {"top1_drop": "drop.top1", "top5_drop": "drop.top5", "top1_agreement": "agreement.top1"}
"""qc.eval.classification's metric keys that are gate names (or look like one) -> the names recorded."""


class Classification:
    """:class:`qc.tasks.base.Task` for ``task: {kind: classification, ...}``."""

    kind: ClassVar[str] = "classification"
    calibration: ClassVar[Calibration] = Calibration(
        budgets=(GateMetric("top1_drop", "top1_drop", "max_top1_drop"),),
        agreement=GateMetric("top1_agreement", "top1_agreement", "min_top1_agreement"),
    )
    headlines: ClassVar[tuple[Headline, ...]] = (
        Headline("reference_top1", True, None, "top-1 (reference)"),
        Headline("target_top1", True, 0.01, "top-1 (target)"),
        Headline("drop.top1", False, None, "top-1 drop"),
        Headline("target_top5", True, None, "top-5 (target)"),
        Headline("agreement.top1", True, 0.01, "top-1 agreement"),
        Headline("mean_kl", False, None, "mean KL"),
    )
    diagnosis_metrics: ClassVar[tuple[str, str]] = ("top1", "top1_agreement")

    def __init__(self, spec: ModelSpec) -> None:
        if not isinstance(spec.task, ClassificationTask):
            raise ConfigError(f"{spec.name}: the classification task needs 'task: {{kind: classification, ...}}'.")
        self.spec = spec
        self.settings: ClassificationTask = spec.task

    @property
    def gates(self) -> tuple[str, ...]:
        return gates_needing("accuracy", task=self.kind)

    def labelled(self, images: ImageSet) -> bool:
        """Whether top-1 against labels exists: ``task.labels`` is set."""
        return self.settings.labels is not None

    def key(self) -> object:
        return {"settings": self.settings}

    def collector(self, input_hw: tuple[int, int], images: ImageSet) -> ClassificationCollection:
        return ClassificationCollection(self.settings, images)

    def evaluate(
        self, reference: Runner, target: Runner, feeds: Feeds, input_hw: tuple[int, int], images: ImageSet
    ) -> ClassificationOutcome:
        outcome: ClassificationOutcome = run_collector(self.collector(input_hw, images), reference, target, feeds)
        return outcome

    def save(self, outcome: ClassificationOutcome, folder: Path) -> dict[str, Any]:
        return {
            "result": dataclasses.asdict(outcome.result),
            "predictions": [dataclasses.asdict(p) for p in outcome.predictions],
        }

    def load(self, data: Mapping[str, Any], folder: Path) -> ClassificationOutcome | None:
        predictions = [
            Prediction(**{**p, "kl": math.nan if p["kl"] is None else float(p["kl"])}) for p in data["predictions"]
        ]
        return ClassificationOutcome(_result_from_json(data["result"]), predictions)

    def write_report(self, outcome: ClassificationOutcome, images: ImageSet, folder: Path) -> list[Path]:
        from qc.report.task_artifacts import write_classification

        return write_classification(outcome, self.settings.class_names, folder)

    def check(self, gate: str, outcome: ClassificationOutcome | ClassificationResult) -> GateResult:
        result, thresholds, model = _scores(outcome), self.spec.thresholds, self.spec.name
        if gate == "top1_drop":
            return top1_drop(model, result, thresholds.max_top1_drop)
        if gate == "top1_agreement":
            return top1_agreement(model, result, thresholds.min_top1_agreement)
        raise ConfigError(f"{model}: gate {gate!r} is not a classification gate (those are {list(self.gates)}).")

    def describe(self, outcome: ClassificationOutcome | ClassificationResult) -> list[str]:
        r = _scores(outcome)
        lines = [f"{self.spec.name}: {r.images} images ({r.labelled} labelled)", f"{'':12}{'top-1':>8}{'top-5':>8}"]
        if r.labelled:
            lines.append(f"{'reference':12}{r.reference_top1:8.4f}{r.reference_top5:8.4f}")
            lines.append(f"{'target':12}{r.target_top1:8.4f}{r.target_top5:8.4f}")
            lines.append(f"{'drop':12}{r.top1_drop:8.4f}{r.top5_drop:8.4f}")
        lines.append(f"top-1 agreement {r.top1_agreement:.4f}, mean KL {r.mean_kl:.4g}")
        return lines

    def metrics(self, outcome: ClassificationOutcome | ClassificationResult) -> dict[str, float]:
        """The result's numbers; drops and agreement as ``drop.top1``, ``drop.top5``, ``agreement.top1`` (a metric
        never takes a gate's name: summary.csv has one column per gate outcome)."""
        return {METRIC_NAMES.get(k, k): v for k, v in _scores(outcome).metrics().items()}

    def calibration_metrics(self, outcome: ClassificationOutcome | ClassificationResult) -> dict[str, float]:
        r = _scores(outcome)
        return {"top1_drop": r.top1_drop if r.labelled else math.nan, "top1_agreement": r.top1_agreement}

    def score(
        self,
        outcome: ClassificationOutcome | ClassificationResult,
        metric: str,
        side: Literal["reference", "target"],
    ) -> float:
        r = _scores(outcome)
        if metric == "top1_agreement":
            value: float | None = 1.0 if side == "reference" else r.top1_agreement
        elif metric == "top1":
            value = r.reference_top1 if side == "reference" else r.target_top1
        else:
            raise ConfigError(f"{self.spec.name}: {metric!r} is not a classification metric {self.diagnosis_metrics}.")
        return 0.0 if value is None or math.isnan(value) else float(value)


def top1_drop(model: str, result: ClassificationResult, budget: float) -> GateResult:
    """Reference top-1 accuracy minus the target's against the labels, at most ``budget``."""
    metrics: dict[str, float | str] = {"images": float(result.images)}
    if not result.labelled or result.reference_top1 is None or result.target_top1 is None:
        return GateResult(
            "top1_drop",
            False,
            f"{model}: the classification task has no labels, so top-1 accuracy cannot be computed; set task.labels "
            "(a CSV 'file,label' or a file-name pattern), or list only top1_agreement in 'gates'.",
            metrics,
        )
    ref, tgt = result.reference_top1, result.target_top1
    drop = ref - tgt
    metrics.update({"reference_top1": ref, "target_top1": tgt, "drop.top1": drop})
    if result.reference_top5 is not None and result.target_top5 is not None:
        metrics.update(reference_top5=result.reference_top5, target_top5=result.target_top5)
    text = (
        f"reference top-1 {ref:.4f}, target top-1 {tgt:.4f}, drop {drop:.4f}, budget {budget:.4f} "
        f"({result.labelled} labelled images)"
    )
    if math.isnan(drop) or drop > budget:
        return GateResult("top1_drop", False, f"{model}: top-1 drop over budget: {text}", metrics)
    return GateResult("top1_drop", True, f"{model}: {text}", metrics)


def top1_agreement(model: str, result: ClassificationResult, floor: float) -> GateResult:
    """The share of images where the target's top-1 class is the reference's, at least ``floor``; no labels."""
    value = result.top1_agreement
    metrics: dict[str, float | str] = {"agreement.top1": value, "mean_kl": result.mean_kl}
    agree = round(value * result.images)
    text = f"top-1 agreement {value:.4f} ({agree}/{result.images} images), mean KL {result.mean_kl:.4g}"
    if math.isnan(value) or value < floor:
        return GateResult("top1_agreement", False, f"{model}: {text} < threshold {floor:.4f}", metrics)
    return GateResult("top1_agreement", True, f"{model}: {text} >= {floor:.4f}", metrics)
