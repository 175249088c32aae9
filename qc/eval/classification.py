"""Classification: labels, top-k accuracy of both sides, label-free agreement and KL divergence, streaming.

Labels come from a CSV (``file,label`` with a header; the label an integer class index, or a class name when
class names are given) or from the file name through a regular expression whose first group (or group
``label``) is the class index, e.g. ``_(\\d+)\\.\\w+$`` for ``imagenet_07_609.jpg``.

Per image the accumulator adds both sides' scores; it keeps running counts and sums only: top-1 / top-5 hits of
each side, top-1 agreement (same arg-max), and the KL divergence ``KL(p_ref || p_tgt)`` of the probabilities
(softmax applied first when the output is logits).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from qc.config import ClassificationTask
from qc.errors import DataError, MetricError

Activation = Literal["none", "softmax", "sigmoid"]
EPS = 1e-12


def labels_from_csv(path: Path, class_names: Sequence[str] = ()) -> dict[str, int]:
    """``file,label`` rows (a header row first) -> {file name: class index}."""
    index = {n: i for i, n in enumerate(class_names)}
    out: dict[str, int] = {}
    try:
        with Path(path).open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or not {"file", "label"} <= set(reader.fieldnames):
                raise DataError(
                    f"{path}: expected a header with columns 'file' and 'label', found {reader.fieldnames}."
                )
            for line, row in enumerate(reader, start=2):
                raw = (row["label"] or "").strip()
                if raw.lstrip("-").isdigit():
                    label = int(raw)
                elif raw in index:
                    label = index[raw]
                else:
                    raise DataError(f"{path}:{line}: label {raw!r} is neither a class index nor a known class name.")
                if label < 0:
                    raise DataError(f"{path}:{line}: label {label} is negative.")
                name = Path((row["file"] or "").strip()).name
                if not name:
                    raise DataError(f"{path}:{line}: empty file name.")
                if name in out and out[name] != label:
                    raise DataError(f"{path}:{line}: {name} is labelled twice ({out[name]} and {label}).")
                out[name] = label
    except OSError as exc:
        raise DataError(f"{path}: cannot read the label file: {exc}.") from None
    if not out:
        raise DataError(f"{path}: no labelled rows.")
    return out


def label_from_name(file_name: str, pattern: str) -> int:
    """The class index in a file name: the regex's group ``label`` if it has one, else its first group."""
    rx = re.compile(pattern)
    m = rx.search(Path(file_name).name)
    if m is None:
        raise DataError(f"file name {Path(file_name).name!r} does not match the label pattern {pattern!r}.")
    group = m.group("label") if "label" in rx.groupindex else m.group(1) if rx.groups else None
    if group is None or not group.isdigit():
        raise DataError(
            f"label pattern {pattern!r} must capture a class index (digits), found {group!r} in "
            f"{Path(file_name).name!r}."
        )
    return int(group)


def probabilities(output: np.ndarray, activation: Activation, name: str = "output") -> npt.NDArray[np.float64]:
    """(C,) probabilities of a batch-of-one classifier output."""
    x = np.asarray(output, dtype=np.float64)
    x = x.reshape(x.shape[0], -1)[0] if x.ndim > 1 and x.shape[0] == 1 else x.reshape(-1)
    if x.size < 2:
        raise DataError(f"output {name}: a classifier needs at least 2 class scores, found {x.size}.")
    if not np.isfinite(x).all():
        raise MetricError(f"output {name}: class scores contain NaN or Inf.")
    if activation == "softmax":
        e: npt.NDArray[np.float64] = np.exp(x - x.max())
        return e / float(e.sum())
    if activation == "sigmoid":
        p: npt.NDArray[np.float64] = 1.0 / (1.0 + np.exp(-x))
        return p / float(p.sum())
    if (x < -1e-6).any():
        raise DataError(
            f"output {name}: activation 'none' needs probabilities, found negative scores "
            f"(min {x.min():.3g}); set activation: softmax for logits."
        )
    total = x.sum()
    if total <= 0:
        raise MetricError(f"output {name}: probabilities sum to {total}.")
    clipped: npt.NDArray[np.float64] = np.clip(x, 0, None)
    return clipped / float(total)


def topk(p: npt.NDArray[np.float64], k: int) -> npt.NDArray[np.int64]:
    """The ``k`` best classes, best first (ties: the lower index first)."""
    k = min(k, p.size)
    idx = np.argpartition(-p, k - 1)[:k]
    return idx[np.lexsort((idx, -p[idx]))].astype(np.int64)


@dataclass
class ClassificationResult:
    images: int
    labelled: int
    reference_top1: float | None
    reference_top5: float | None
    target_top1: float | None
    target_top5: float | None
    top1_agreement: float
    mean_kl: float
    disagreements: list[str]

    @property
    def top1_drop(self) -> float:
        if self.reference_top1 is None or self.target_top1 is None:
            raise MetricError("top-1 drop needs labels; the evaluation set has none.")
        return self.reference_top1 - self.target_top1

    @property
    def top5_drop(self) -> float:
        if self.reference_top5 is None or self.target_top5 is None:
            raise MetricError("top-5 drop needs labels; the evaluation set has none.")
        return self.reference_top5 - self.target_top5

    def metrics(self) -> dict[str, float]:
        out = {"top1_agreement": self.top1_agreement, "mean_kl": self.mean_kl}
        for key in ("reference_top1", "reference_top5", "target_top1", "target_top5"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.labelled:
            out["top1_drop"] = self.top1_drop
            out["top5_drop"] = self.top5_drop
        return out


@dataclass
class ClassificationAccumulator:
    """Running counts over images; ``add`` takes one image's two outputs (and its label when known)."""

    activation: Activation = "softmax"
    top: int = 5
    images: int = 0
    labelled: int = 0
    ref_hits1: int = 0
    ref_hitsk: int = 0
    tgt_hits1: int = 0
    tgt_hitsk: int = 0
    agree: int = 0
    kl_sum: float = 0.0
    keep_disagreements: int = 20

    def __post_init__(self) -> None:
        self._disagreements: list[str] = []
        self._classes: int | None = None

    def add(self, image_id: str, ref_output: np.ndarray, tgt_output: np.ndarray, label: int | None = None) -> None:
        p = probabilities(ref_output, self.activation, "reference")
        q = probabilities(tgt_output, self.activation, "target")
        if p.shape != q.shape:
            raise DataError(f"{image_id}: reference has {p.size} classes, target {q.size}.")
        if self._classes is None:
            self._classes = p.size
        elif p.size != self._classes:
            raise DataError(f"{image_id}: {p.size} classes, the earlier images had {self._classes}.")
        rk, tk = topk(p, self.top), topk(q, self.top)
        self.images += 1
        if rk[0] == tk[0]:
            self.agree += 1
        elif len(self._disagreements) < self.keep_disagreements:
            self._disagreements.append(image_id)
        self.kl_sum += float(np.sum(p * (np.log(p + EPS) - np.log(q + EPS))))
        if label is not None:
            if not 0 <= label < p.size:
                raise DataError(f"{image_id}: label {label} is out of range for {p.size} classes.")
            self.labelled += 1
            self.ref_hits1 += int(rk[0] == label)
            self.tgt_hits1 += int(tk[0] == label)
            self.ref_hitsk += int(label in rk)
            self.tgt_hitsk += int(label in tk)

    def result(self) -> ClassificationResult:
        if self.images == 0:
            raise MetricError("classification metrics are undefined: no image was evaluated.")
        n = self.labelled

        def rate(hits: int) -> float | None:
            return hits / n if n else None

        return ClassificationResult(
            images=self.images,
            labelled=n,
            reference_top1=rate(self.ref_hits1),
            reference_top5=rate(self.ref_hitsk),
            target_top1=rate(self.tgt_hits1),
            target_top5=rate(self.tgt_hitsk),
            top1_agreement=self.agree / self.images,
            mean_kl=self.kl_sum / self.images,
            disagreements=list(self._disagreements),
        )


# -- settings (models.yaml ``task: {kind: classification, ...}``): the spec classes live in qc.config -----

ClassificationSettings = ClassificationTask
"""The ``task: {kind: classification}`` settings (:class:`qc.config.ClassificationTask`)."""


def evaluate_classification(
    settings: ClassificationTask, items: Iterable[tuple[str, np.ndarray, np.ndarray]]
) -> ClassificationResult:
    """Stream ``(image file name, reference output, target output)`` through the accumulator, with labels when
    configured."""
    label_of = settings.label_of()
    acc = ClassificationAccumulator(activation=settings.activation, top=settings.top_k)
    for name, ref_out, tgt_out in items:
        acc.add(name, ref_out, tgt_out, label_of(name) if label_of is not None else None)
    return acc.result()
