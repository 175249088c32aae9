"""The ``Task`` protocol: what turns both sides' raw outputs into the numbers the accuracy gates judge."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

import numpy as np

if TYPE_CHECKING:
    from qc.config import ModelSpec
    from qc.data.images import ImageSet
    from qc.data.preprocess import Transform
    from qc.gates import GateResult
    from qc.runners.base import Runner

Feeds = Iterable[tuple[int, Mapping[str, np.ndarray], "Transform"]]
"""(image id, model input, the preprocessing transform of that image), in the evaluation set's order."""


class Collector(Protocol):
    """Accumulates a task's outcome from final outputs handed to it image by image (constant memory per image)."""

    def add(
        self,
        image_id: int,
        transform: Transform,
        reference: Mapping[str, np.ndarray],
        target: Mapping[str, np.ndarray],
    ) -> None:
        """One image's final outputs, both sides (graph output name -> array), with its preprocessing transform."""
        ...

    def finish(self) -> Any:
        """The Outcome (what :meth:`Task.evaluate` returns) over every image added."""
        ...


@dataclass(frozen=True)
class GateMetric:
    """One gate of a task for the calibration (``qc calibrate``): the metric it reads and its threshold field."""

    gate: str
    """The gate's registry name, e.g. ``map_drop``."""
    metric: str
    """The key of the value in :meth:`Task.calibration_metrics`, e.g. ``ap_drop``."""
    threshold: str
    """The :class:`qc.config.Thresholds` field the gate compares it with, e.g. ``max_map_drop``."""


@dataclass(frozen=True)
class Calibration:
    """How ``qc calibrate`` relates a task's labelled budget gates to its label-free agreement gate.

    ``budgets`` are the gates that need labels (a drop against ground truth, at most a budget); ``agreement`` is the
    gate that needs none (the target against the reference, at least a threshold). The calibration fits the
    agreement threshold so that no variant over a budget passes the agreement gate.
    """

    budgets: tuple[GateMetric, ...]
    agreement: GateMetric


@dataclass(frozen=True)
class Headline:
    """One headline metric of a task: a key of Task.metrics(outcome)."""

    name: str
    """e.g. "target_miou", "top1_agreement"; unique across tasks -> prefix with the quantity."""
    higher_is_better: bool
    baseline_tolerance: float | None
    """Default absolute tolerance for --qc-baseline (None: trended, never gated)."""
    label: str
    """Short column label for the dashboard / summary, e.g. "mIoU (target)"."""


def run_collector(collector: Collector, reference: Runner, target: Runner, feeds: Feeds) -> Any:
    """:meth:`Task.evaluate` through a task's collector: the target in batches of its batch size, the reference
    input by input, each input's final outputs handed to ``collector``; returns its Outcome."""
    from qc.runners.base import batch_size_of, chunks, run_batch

    for chunk in chunks(feeds, batch_size_of(target)):
        outs = run_batch(target, [feed for _, feed, _ in chunk])
        for (input_id, feed, transform), out in zip(chunk, outs, strict=True):
            collector.add(input_id, transform, reference.run(feed), out)
    return collector.finish()


class Task(Protocol):
    """One task kind (``task.kind`` in models.yaml), built from its models.yaml entry: ``Task(spec)``.

    The pipeline owns caching and the target's device session; a task only computes. ``Outcome`` below is the
    task's own result type (detection: :class:`qc.tasks.detection.DetectionOutcome`).
    """

    kind: ClassVar[str]
    calibration: ClassVar[Calibration]
    """Its labelled budget gates and its label-free agreement gate (see :mod:`qc.calibrate`)."""
    headlines: ClassVar[tuple[Headline, ...]]
    """The keys of metrics() that summary.csv, the history (direction), --qc-baseline and the dashboard show."""
    diagnosis_metrics: ClassVar[tuple[str, str]]
    """(labelled metric, label-free metric) for the diagnosis' sensitivity, e.g. detection ("ap", "agreement_ap"),
    segmentation ("miou", "mask_agreement"), classification ("top1", "top1_agreement")."""
    spec: ModelSpec

    def __init__(self, spec: ModelSpec) -> None: ...

    @property
    def gates(self) -> tuple[str, ...]:
        """The gates this task contributes (registry entries with ``needs="accuracy"`` and ``task=kind``)."""
        ...

    def key(self) -> object:
        """JSON-able settings of the task that change its outcome (goes into the accuracy stage's cache key)."""
        ...

    def evaluate(
        self, reference: Runner, target: Runner, feeds: Feeds, input_hw: tuple[int, int], images: ImageSet
    ) -> Any:
        """Decode both sides image by image, evaluate them against the labels (when the data has some) and
        against each other (agreement, no labels needed); return the Outcome."""
        ...

    def collector(self, input_hw: tuple[int, int], images: ImageSet) -> Collector:
        """What :meth:`evaluate` does, fed from outside: the pipeline's one pass over the images (the comparison
        stream) hands it each image's final outputs, so the target runs once per image for both stages."""
        ...

    def save(self, outcome: Any, folder: Path) -> dict[str, Any]:
        """Write the outcome's arrays into the cache ``folder``; return its JSON part."""
        ...

    def load(self, data: Mapping[str, Any], folder: Path) -> Any | None:
        """The Outcome saved by :meth:`save`, or None when a file of it is missing (the stage then recomputes)."""
        ...

    def write_report(self, outcome: Any, images: ImageSet, folder: Path) -> list[Path]:
        """The report artifacts of the model folder (e.g. ``accuracy.json``, detections, pictures)."""
        ...

    def check(self, gate: str, outcome: Any) -> GateResult:
        """The verdict of one of :attr:`gates` on the outcome."""
        ...

    def describe(self, outcome: Any) -> list[str]:
        """Lines for the terminal (``qc eval``): the outcome's numbers, both sides."""
        ...

    def metrics(self, outcome: Any) -> dict[str, float]:
        """Headline metrics for summary.csv, the history and ``--qc-baseline`` (e.g. ``target_ap``)."""
        ...

    def calibration_metrics(self, outcome: Any) -> dict[str, float]:
        """The values :attr:`calibration` names (each labelled drop and the agreement), NaN where undefined."""
        ...

    def score(self, outcome: Any, metric: str, side: Literal["reference", "target"]) -> float:
        """The value of one of diagnosis_metrics on one side (higher is better; agreement metrics: the reference
        side is 1.0). An undefined/empty value is 0.0, never NaN (the sensitivity ranks differences)."""
        ...


def is_labelled(task: Task, images: ImageSet) -> bool:
    """Whether the task's labelled metrics exist for ``images``: the task's optional ``labelled(images)`` hook
    (segmentation: ground-truth masks configured; classification: labels configured), by default whether the
    evaluation data is a COCO annotation file holding what the task scores (:class:`LabelsHook`)."""
    hook = getattr(task, "labelled", None)
    if hook is not None:
        return bool(hook(images))
    if images.coco is None:
        return False
    missing = getattr(task, "labels_missing", None)  # LabelsHook: a COCO file may lack what the task scores
    return missing is None or missing(images) is None


def all_headlines() -> tuple[Headline, ...]:
    """Every registered task kind's headlines, in registry order (imports each task class)."""
    from qc.tasks import TASKS, task_class

    seen: dict[str, Headline] = {}
    for kind in TASKS:
        for h in task_class(kind).headlines:
            seen.setdefault(h.name, h)
    return tuple(seen.values())


Feed = tuple[int, dict[str, np.ndarray], "Transform"]
"""(input id, model input, the transform mapping that input's pixels back to its image's pixels)."""


@dataclass(frozen=True)
class TaskInputs:
    """The model inputs a task feeds instead of one preprocessed input per image (e.g. one crop per person).

    Input ids are ``0 .. count - 1`` in a deterministic order computed from the image set alone, so the task's
    collector (built separately) knows which image and region each input id stands for.
    """

    count: int
    feeds: Iterator[Feed]
    note: str
    """One sentence for the comparison's notes: what an 'image' of the comparison is (e.g. 13 person crops of 4
    images)."""


class InputsHook(Protocol):
    """Optional :class:`Task` hook: a task whose model does not see whole images (a top-down keypoint model sees one
    crop per person box) provides its own inputs. The pipeline (:func:`qc.pipeline.iter_feeds`) uses them for EVERY
    stream of the entry, so one rule covers the comparison, the accuracy, the speed input, the diagnosis and the
    calibration of a quantizing target (whose image set has boxes or not: the task decides what it feeds then).
    """

    def inputs_key(self) -> object:
        """JSON-able settings that decide the inputs besides the images and ``preprocess`` (None: whole images)."""
        ...

    def inputs(self, images: ImageSet, input_name: str, input_hw: tuple[int, int]) -> TaskInputs | None:
        """The inputs of ``images``, or None when the model sees whole preprocessed images."""
        ...


class LabelsHook(Protocol):
    """Optional :class:`Task` hook: whether labelled evaluation data holds what this task scores (a COCO file of boxes
    has no person keypoints, no masks). ``qc calibrate`` skips an entry whose labels cannot score its task, instead of
    sweeping variants whose labelled drop is undefined."""

    def labels_missing(self, images: ImageSet) -> str | None:
        """Why ``images``' labels cannot score this task, or None when they can (or there are none to judge)."""
        ...
