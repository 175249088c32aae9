"""Sensitivity: re-quantize with one layer kept float, and with only that layer quantized; measure the task.

For each of the top-K layers by local error, two variants of the entry: everything quantized except the layer
(``float_nodes`` + the layer: how much keeping it float recovers, *gain*), and only the layer quantized (every
other node in ``float_nodes``: how much it costs alone, *drop*). A cheap first pass measures the worst output or
slice SQNR on ``quick_images`` images; the ``shortlist`` best are then measured with the task metric on every
evaluation image: the task's own labelled metric with labels (detection: COCO AP; segmentation: mIoU;
classification: top-1), its label-free agreement without (``Task.diagnosis_metrics``), output SQNR when the entry
has no task. The score
of a layer is the larger of gain and drop, so a layer that only hurts together with others (gain) and one that
hurts on its own (drop) both rank high.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from qc import progress
from qc.config import ModelSpec
from qc.diagnose.variants import SQNR_CAP_DB, Variant, Variants

Metric = str
"""``output_sqnr`` or one of the entry's task's ``diagnosis_metrics`` (detection: ``ap``, ``agreement_ap``)."""


def choose_metric(spec: ModelSpec, labelled: bool, failing: Collection[str] = ()) -> Metric:
    """``spec.diagnose.metric``, with ``auto`` resolved: the task's labelled metric with labels, its label-free
    agreement metric without (:attr:`qc.tasks.base.Task.diagnosis_metrics`), else output SQNR.

    With labels, when the task's agreement gate is among the ``failing`` gates and none of its labelled budget
    gates is, the loss is in agreement only (e.g. the target's top-1 against the labels rises while a third of
    its decisions change): the label-free metric then ranks the layers."""
    wanted = spec.diagnose.metric
    if wanted != "auto":
        return wanted
    if spec.task is None:
        return "output_sqnr"
    from qc.tasks import task_class

    cls = task_class(spec.task.kind)
    with_labels, label_free = cls.diagnosis_metrics
    budgets = {b.gate for b in cls.calibration.budgets}
    if labelled and cls.calibration.agreement.gate in failing and not budgets & set(failing):
        return label_free
    return with_labels if labelled else label_free


@dataclass(frozen=True)
class Candidate:
    node: str
    tensor: str
    op_type: str
    local_sqnr_db: float


@dataclass(frozen=True)
class SensitivityRow:
    rank: int
    node: str
    tensor: str
    op_type: str
    local_sqnr_db: float
    quick_float: float
    quick_only: float
    quick_gain: float
    quick_drop: float
    quick_float_worst: str
    """The output or slice that bounds ``quick_float`` (its lowest SQNR)."""
    quick_only_worst: str
    task_float: float | None = None
    task_only: float | None = None
    task_gain: float | None = None
    task_drop: float | None = None

    @property
    def quick_score(self) -> float:
        return max(self.quick_gain, self.quick_drop)

    @property
    def task_score(self) -> float | None:
        if self.task_gain is None or self.task_drop is None:
            return None
        return max(self.task_gain, self.task_drop)


@dataclass
class SensitivityResult:
    model: str
    metric: Metric
    quick_images: int
    images: int
    baseline_quick: float
    reference_quick: float
    baseline_task: float
    reference_task: float
    rows: list[SensitivityRow] = field(default_factory=list)
    seconds: float = 0.0
    variants_quantized: int = 0
    notes: list[str] = field(default_factory=list)

    def ranking(self) -> list[str]:
        return [r.node for r in self.rows]

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SensitivityResult:
        return cls(**{**data, "rows": [SensitivityRow(**r) for r in data["rows"]]})


def task_value(variants: Variants, variant: Variant, metric: Metric) -> float:
    """The task metric of a variant's target side on every evaluation image (never NaN: an empty side is 0)."""
    if metric == "output_sqnr":
        value = variants.quick_quality(variant, len(variants.stages.eval_images())).value
        return 0.0 if math.isnan(value) else value
    return variants.stages.task().score(variants.accuracy(variant), metric, "target")


def reference_task_value(variants: Variants, metric: Metric) -> float:
    """The same metric on the FP32 reference side (an agreement metric: 1.0)."""
    if metric == "output_sqnr":
        return SQNR_CAP_DB
    return variants.stages.task().score(variants.accuracy(Variant()), metric, "reference")


def measure(
    variants: Variants,
    candidates: Sequence[Candidate],
    all_nodes: Sequence[str],
    labelled: bool,
    failing: Collection[str] = (),
) -> SensitivityResult:
    """Quick pass on every candidate, task metric on the shortlist; rows ranked most sensitive first."""
    spec = variants.spec
    settings = spec.diagnose
    metric = choose_metric(spec, labelled, failing)
    started = time.perf_counter()
    quick_n = min(settings.quick_images, len(variants.stages.eval_images()))
    with progress.task(spec.name, "diagnose variants", 1 + 2 * len(candidates)) as quick:  # variant k/K, quick pass
        base = variants.quick_quality(Variant(), quick_n)
        quick.advance()
        ref = variants.reference_quality()
        rows: list[SensitivityRow] = []
        notes: list[str] = []
        for c in candidates:
            kept = variants.quick_quality(Variant(float_nodes=(c.node,)), quick_n)
            quick.advance()
            others = tuple(n for n in all_nodes if n != c.node)
            alone = variants.quick_quality(Variant(float_nodes=others), quick_n)
            quick.advance(note=c.node)
            rows.append(
                SensitivityRow(
                    rank=0,
                    node=c.node,
                    tensor=c.tensor,
                    op_type=c.op_type,
                    local_sqnr_db=c.local_sqnr_db,
                    quick_float=kept.value,
                    quick_only=alone.value,
                    quick_gain=kept.value - base.value,
                    quick_drop=ref.value - alone.value,
                    quick_float_worst=kept.worst,
                    quick_only_worst=alone.worst,
                )
            )
    rows.sort(key=lambda r: (-r.quick_score, r.node))
    shortlist = rows[: settings.shortlist]
    with progress.task(spec.name, "diagnose shortlist", 2 + 2 * len(shortlist)) as full:  # variant k/K, all images
        base_task = task_value(variants, Variant(), metric)
        full.advance()
        ref_task = reference_task_value(variants, metric)
        full.advance()
        measured: list[SensitivityRow] = []
        for r in shortlist:
            kept_t = task_value(variants, Variant(float_nodes=(r.node,)), metric)
            full.advance()
            only_t = task_value(variants, Variant(float_nodes=tuple(n for n in all_nodes if n != r.node)), metric)
            full.advance(note=r.node)
            measured.append(
                dataclasses.replace(
                    r,
                    task_float=kept_t,
                    task_only=only_t,
                    task_gain=kept_t - base_task,
                    task_drop=ref_task - only_t,
                )
            )
    measured.sort(key=lambda r: (-(r.task_score or 0.0), -r.quick_score, r.node))
    ordered = [*measured, *rows[settings.shortlist :]]
    ranked = [dataclasses.replace(r, rank=i + 1) for i, r in enumerate(ordered)]
    if len(candidates) < settings.top_k:
        notes.append(f"only {len(candidates)} layer(s) could be tested (top_k {settings.top_k}).")
    return SensitivityResult(
        model=spec.name,
        metric=metric,
        quick_images=quick_n,
        images=len(variants.stages.eval_images()),
        baseline_quick=base.value,
        reference_quick=ref.value,
        baseline_task=base_task,
        reference_task=ref_task,
        rows=ranked,
        seconds=time.perf_counter() - started,
        variants_quantized=variants.quantized,
        notes=notes,
    )
