"""Quantized variants of one ``ort-int8`` entry (some layers kept float or at 16 bits) and their measurements.

Float variants go through :func:`qc.runners.quantize.quantize_int8` with a modified ``float_nodes``, by way of a
copy of the models.yaml entry and :meth:`qc.pipeline.ModelStages.target`: the cache key is the pipeline's own
(model sha, settings, calibration fingerprint, onnxruntime and qc versions), so an advised entry pasted into
models.yaml hits the same cache entry. 16-bit variants add onnxruntime ``TensorQuantOverrides`` (``quant_type``
QUInt16 for the given tensors), which ``quantize_int8`` does not expose; they are quantized here with the same
options and cached under their own key.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qc.cache import stable_hash
from qc.compare.layerwise import Comparison, OutputAccumulator, slice_array
from qc.config import ModelSpec, QuantSettings, TaskSpec
from qc.errors import ConfigError, ModelError
from qc.eval.accuracy import AccuracyResult, collect, score
from qc.pipeline import ModelStages, iter_feeds
from qc.runners.base import Runner
from qc.runners.ort import OrtRunner

log = logging.getLogger(__name__)

KEEP_REFERENCE_IMAGES = 8
"""Up to this many images (the quick pass), reference outputs are computed once and kept for every variant."""
SQNR_CAP_DB = 60.0
"""Output SQNR above this counts as lossless when ranking variants (the float reference scores this)."""


@dataclass(frozen=True)
class Variant:
    """Which layers of the entry change precision: node names kept float, tensors given 16-bit activations."""

    float_nodes: tuple[str, ...] = ()
    int16_tensors: tuple[str, ...] = ()

    def label(self) -> str:
        parts = []
        if self.float_nodes:
            parts.append(f"float {len(self.float_nodes)} node(s)")
        if self.int16_tensors:
            parts.append(f"int16 {len(self.int16_tensors)} tensor(s)")
        return ", ".join(parts) or "as configured"


def lenient_sqnr_db(x: np.ndarray, y: np.ndarray) -> float | None:
    """SQNR for ranking: a target of zeros scores 0 dB (no signal survives), NaN/Inf too; None if ``x`` is 0."""
    a = np.asarray(x, np.float64).reshape(-1)
    b = np.asarray(y, np.float64).reshape(-1)
    if a.shape != b.shape or not np.isfinite(b).all():
        return 0.0
    xx = float(a @ a)
    if xx == 0.0:
        return None
    d = a - b
    dd = float(d @ d)
    return SQNR_CAP_DB if dd == 0.0 else min(SQNR_CAP_DB, 10.0 * math.log10(xx / dd))


@dataclass
class OutputQuality:
    """Mean lenient SQNR per output and slice; ``value`` is the worst of them (capped at SQNR_CAP_DB)."""

    per_output: dict[str, float] = field(default_factory=dict)

    @property
    def value(self) -> float:
        return min(self.per_output.values()) if self.per_output else math.nan

    @property
    def worst(self) -> str:
        return min(self.per_output, key=lambda k: self.per_output[k]) if self.per_output else ""


class Variants:
    """Builds and measures variants of ``stages.spec`` (target kind ``ort-int8`` only)."""

    def __init__(self, stages: ModelStages) -> None:
        base = stages.target_impl().requantize()
        if base is None:
            raise ConfigError(
                f"{stages.spec.name}: sensitivity and advice re-quantize the reference, which needs a target kind "
                f"that quantizes it on the host such as 'ort-int8' (this entry has {stages.spec.target.kind!r})."
            )
        self.stages = stages
        self.spec = stages.spec
        self.base: QuantSettings = base
        self.cache = stages.ctx.cache
        self.quantized = 0
        self._reference_outputs: list[tuple[int, dict[str, np.ndarray]]] | None = None

    # -- building -------------------------------------------------------------------------------------------
    def settings(self, variant: Variant) -> QuantSettings:
        nodes = tuple(dict.fromkeys([*self.base.float_nodes, *variant.float_nodes]))
        int16 = tuple(dict.fromkeys([*self.base.int16_tensors, *variant.int16_tensors]))
        return self.base.model_copy(update={"float_nodes": nodes, "int16_tensors": int16})

    def spec_for(self, variant: Variant, name: str | None = None) -> ModelSpec:
        label = name or f"{self.spec.name}~{stable_hash(variant.float_nodes, variant.int16_tensors)[:8]}"
        return self.spec.model_copy(update={"name": label, "target": self.settings(variant)})

    def key(self, variant: Variant) -> str:
        return ModelStages(self.spec_for(variant), self.stages.ctx).target_key()

    def runner(self, variant: Variant) -> OrtRunner:
        """The variant quantized exactly as a models.yaml entry with these settings would be (same cache)."""
        stages = ModelStages(self.spec_for(variant), self.stages.ctx)
        misses = len(self.cache.misses)
        runner = stages.target()
        self.quantized += any(m.startswith("quantized/") for m in self.cache.misses[misses:])
        assert isinstance(runner, OrtRunner)  # an ort-int8 entry quantizes to an ONNX file
        return runner

    # -- measuring ------------------------------------------------------------------------------------------
    def feeds(self, limit: int | None = None) -> Iterator[tuple[int, dict[str, np.ndarray], Any]]:
        name, size = self.stages.io()
        for n, item in enumerate(iter_feeds(self.spec, self.stages.eval_images(), name, size)):
            if limit is not None and n >= limit:
                return
            yield item

    def quick_quality(self, variant: Variant, images: int) -> OutputQuality:
        """Output SQNR (worst output or slice) on the first ``images`` evaluation images; cached."""
        key = stable_hash("quick", self.key(variant), self.stages.eval_images().fingerprint(), images, self._outs())

        def build(_folder: Path) -> tuple[OutputQuality, dict[str, float]]:
            runner = self.runner(variant)
            pairs: Iterable[tuple[Mapping[str, np.ndarray], Mapping[str, np.ndarray]]]
            if images <= KEEP_REFERENCE_IMAGES:  # the quick pass: keep the few reference outputs for every variant
                if self._reference_outputs is None or len(self._reference_outputs) < images:
                    self._reference_outputs = [(i, self.stages.reference.run(f)) for i, f, _ in self.feeds(images)]
                pairs = (
                    (ref, runner.run(f))
                    for (_, ref), (_, f, _) in zip(self._reference_outputs, self.feeds(images), strict=False)
                )
            else:  # every image: stream, recomputing the reference, so memory does not grow with images
                pairs = ((self.stages.reference.run(f), runner.run(f)) for _, f, _ in self.feeds(images))
            quality = output_quality(self.spec, pairs)
            return quality, quality.per_output

        return self.cache.cached("diagnose-quick", key, build, lambda data, _folder: OutputQuality(dict(data)))

    def reference_quality(self) -> OutputQuality:
        """What the float reference scores against itself: every output at the cap."""
        names = list(self.stages.reference.graph().outputs)
        keys = [*names, *(f"{o}[{s}]" for o, spec in self.spec.outputs.items() for s in spec.slices)]
        return OutputQuality(dict.fromkeys(keys, SQNR_CAP_DB))

    def _outs(self) -> dict[str, Any]:
        return dict(self.spec.outputs)

    def outputs(self, variant: Variant) -> Comparison:
        """Final outputs and declared slices against the reference on every evaluation image (gate metrics)."""
        key = stable_hash("outputs", self.key(variant), self.stages.eval_images().fingerprint(), self._outs())

        def build(_folder: Path) -> tuple[Comparison, dict[str, Any]]:
            runner = self.runner(variant)
            result = compare_outputs(self.spec, self.stages.reference, runner, ((i, f) for i, f, _ in self.feeds()))
            return result, result.to_json()

        return self.cache.cached("diagnose-outputs", key, build, lambda data, _folder: Comparison.from_json(data))

    def accuracy(self, variant: Variant) -> AccuracyResult:
        """COCO AP of both sides, the drop and agreement AP on every evaluation image; cached."""
        task = self.spec.task
        if task is None:
            raise ConfigError(f"{self.spec.name}: the accuracy metric needs a 'task' section (decoder, class_names).")
        if not isinstance(task, TaskSpec):
            raise ConfigError(
                f"{self.spec.name}: the diagnosis measures COCO box AP of detection tasks; task kind {task.kind!r} has "
                "none: set diagnose.metric: output_sqnr."
            )
        key = stable_hash(
            "accuracy",
            self.key(variant),
            task,
            self.stages.eval_images().fingerprint(),
        )

        def build(_folder: Path) -> tuple[AccuracyResult, dict[str, Any]]:
            runner = self.runner(variant)
            _, size = self.stages.io()
            names = task.names()
            images = self.stages.eval_images()
            ref, tgt, sizes = collect(task, self.stages.reference, runner, self.feeds(), size, len(names))
            result = score(task, ref, tgt, sizes, images.coco, names)
            return result, result.to_json()

        return self.cache.cached("diagnose-accuracy", key, build, lambda data, _f: AccuracyResult.from_json(data))


def output_quality(
    spec: ModelSpec, pairs: Iterable[tuple[Mapping[str, np.ndarray], Mapping[str, np.ndarray]]]
) -> OutputQuality:
    sums: dict[str, list[float]] = {}  # key -> [sum of per-image SQNR, images]: constant memory
    for ref, out in pairs:
        for name, a in ref.items():
            b = out.get(name)
            if b is None:
                raise ModelError(f"{spec.name}: a variant produced no output {name!r} (it has {sorted(out)}).")
            pieces = [(name, a, b)]
            ospec = spec.outputs.get(name)
            for sname, sspec in ospec.slices.items() if ospec else ():
                pieces.append((f"{name}[{sname}]", slice_array(a, sspec, name), slice_array(b, sspec, name)))
            for key, x, y in pieces:
                value = lenient_sqnr_db(x, y)
                if value is not None:
                    acc = sums.setdefault(key, [0.0, 0.0])
                    acc[0] += value
                    acc[1] += 1.0
    return OutputQuality({k: total / count for k, (total, count) in sums.items()})


def compare_outputs(
    spec: ModelSpec, reference: Runner, target: Runner, feeds: Iterable[tuple[int, Mapping[str, np.ndarray]]]
) -> Comparison:
    """The output half of :func:`qc.compare.layerwise.compare_stream`: final outputs and slices, streamed."""
    acc = OutputAccumulator(spec.name, list(reference.graph().outputs), spec.outputs)
    images = 0
    for image_id, feed in feeds:
        images += 1
        acc.add(image_id, reference.run(feed), target.run(feed))
    return Comparison(model=spec.name, images=images, outputs=acc.rows())
