"""The stages, in the one direction data flows: spec -> inputs -> reference + target runs -> comparison.

Each stage caches its result under a key hashed from what it depends on (model bytes, images, settings, qc
and onnxruntime versions), so a warm second run does no quantization and no inference.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qc.cache import StageCache, stable_hash
from qc.compare.layerwise import Comparison, compare_stream
from qc.compare.matching import match_qdq
from qc.config import DeviceSpec, ModelSpec, OnnxTarget, OrtInt8Target, SnpeTarget, default_cache_dir
from qc.data.images import ImageSet, file_sha256, iter_images, load_image_set
from qc.data.preprocess import Transform, preprocess
from qc.errors import ConfigError, ModelError
from qc.eval.accuracy import AccuracyResult, DetectionSet, collect, score
from qc.runners.base import GraphTensors
from qc.runners.ort import OrtRunner
from qc.runners.quantize import quantize_int8
from qc.snpe.runner import SnpeRunner, maybe_session

log = logging.getLogger(__name__)


def ort_version() -> str:
    import onnxruntime

    return str(onnxruntime.__version__)


@dataclass
class Context:
    """What every stage of one session shares: the cache, the report folder and the image limit."""

    cache: StageCache
    report_dir: Path
    image_limit: int | None = None
    devices: tuple[DeviceSpec, ...] = field(default_factory=tuple)
    """The top-level ``devices`` list of models.yaml (``load_project``): the pools of ``kind: snpe`` targets."""
    device_lock_dir: Path | None = None
    """Where device lease lock files live (default ``<cache dir>/devices``: shared by every run on this machine)."""


def input_layout(spec: ModelSpec, graph: GraphTensors) -> tuple[str, tuple[int, int]]:
    """The input tensor name and (height, width); a shape that does not fit the model is a one-line error."""
    inputs = graph.inputs
    name = spec.preprocess.input
    if name is None:
        if len(inputs) != 1:
            raise ModelError(
                f"{spec.name}: the model has inputs {sorted(inputs)}; set preprocess.input to one of them."
            )
        name = next(iter(inputs))
    elif name not in inputs:
        raise ModelError(
            f"{spec.name}: preprocess.input {name!r} is not an input of the model (it has {sorted(inputs)})."
        )
    dims = inputs[name]
    if len(dims) != 4:
        raise ModelError(f"{spec.name}: input {name!r} has shape {list(dims)}; qc feeds 4-D image batches.")
    h_axis, w_axis, c_axis = (2, 3, 1) if spec.preprocess.layout == "NCHW" else (1, 2, 3)
    channels = dims[c_axis]
    if isinstance(channels, int) and channels > 0 and channels != 3:
        raise ModelError(
            f"{spec.name}: input {name!r} has {channels} channels on axis {c_axis} with layout "
            f"{spec.preprocess.layout}; expected 3 (shape {list(dims)})."
        )
    static = [d if isinstance(d, int) and d > 0 else None for d in (dims[h_axis], dims[w_axis])]
    size = spec.preprocess.size
    if size is None:
        if None in static:
            raise ModelError(f"{spec.name}: input {name!r} has dynamic height/width {list(dims)}; set preprocess.size.")
        return name, (int(static[0] or 0), int(static[1] or 0))
    for want, have, what in ((size[0], static[0], "height"), (size[1], static[1], "width")):
        if have is not None and want != have:
            raise ModelError(
                f"{spec.name}: preprocess.size {list(size)} does not fit input {name!r} of shape {list(dims)} "
                f"({what} {have} expected, found {want})."
            )
    return name, size


def iter_feeds(
    spec: ModelSpec, images: ImageSet, input_name: str, size: tuple[int, int]
) -> Iterator[tuple[int, dict[str, np.ndarray], Transform]]:
    for item, rgb in iter_images(images):
        tensor, transform = preprocess(rgb, spec.preprocess, size)
        yield item.image_id, {input_name: tensor}, transform


class ModelStages:
    """The cached stages of one models.yaml entry."""

    def __init__(self, spec: ModelSpec, ctx: Context) -> None:
        self.spec = spec
        self.ctx = ctx
        self.reference = OrtRunner(f"{spec.name} (reference)", spec.reference)
        self._target: OrtRunner | SnpeRunner | None = None
        self._eval: ImageSet | None = None

    # -- inputs ---------------------------------------------------------------------------------------------
    def eval_images(self) -> ImageSet:
        if self._eval is None:
            self._eval = load_image_set(self.spec.eval_data, limit=self.ctx.image_limit)
        return self._eval

    def io(self) -> tuple[str, tuple[int, int]]:
        return input_layout(self.spec, self.reference.graph())

    def first_feed(self) -> dict[str, np.ndarray]:
        name, size = self.io()
        for _, feed, _ in iter_feeds(self.spec, self.eval_images(), name, size):
            return feed
        raise ModelError(f"{self.spec.name}: the evaluation set has no images to time the model with.")

    # -- target ---------------------------------------------------------------------------------------------
    def target_key(self) -> str:
        spec = self.spec
        target = spec.target
        if isinstance(target, OnnxTarget):
            return stable_hash("onnx", file_sha256(target.model))
        if isinstance(target, SnpeTarget):  # the DLC decides the results; batch size or devices do not
            return stable_hash("snpe", file_sha256(target.dlc), target.runtime, target.native_io)
        assert spec.calibration is not None
        calib = load_image_set(spec.calibration)
        return stable_hash(
            "ort-int8",
            file_sha256(spec.reference),
            target.model_dump(mode="json"),
            spec.preprocess.model_dump(mode="json"),
            calib.fingerprint(),
            ort_version(),
        )

    def target(self) -> OrtRunner | SnpeRunner:
        if self._target is not None:
            return self._target
        target = self.spec.target
        if isinstance(target, OnnxTarget):
            self._target = OrtRunner(f"{self.spec.name} (target)", target.model)
            return self._target
        if isinstance(target, SnpeTarget):  # a DLC: nothing to quantize
            if not self.ctx.devices:
                raise ConfigError(
                    f"{self.spec.name}: target kind 'snpe' needs the 'devices' list of models.yaml "
                    "(load it with qc.config.load_project)."
                )
            self._target = SnpeRunner(
                f"{self.spec.name} (target)",
                target,
                self.ctx.devices,
                reference=self.reference.graph,
                input_layout=self.spec.preprocess.layout,
                lock_dir=self.ctx.device_lock_dir or default_cache_dir() / "devices",
                cache_dir=self.ctx.cache.root / "snpe",
            )
            return self._target
        assert isinstance(target, OrtInt8Target)
        key = self.target_key()
        with self.ctx.cache.locked("quantized", key) as folder:
            path = folder / "model.int8.onnx"
            if not self.ctx.cache.fresh(path):
                assert self.spec.calibration is not None
                name, size = self.io()
                calib = load_image_set(self.spec.calibration)
                feeds = (f for _, f, _ in iter_feeds(self.spec, calib, name, size))
                used = quantize_int8(self.spec.reference, target, feeds, path, self.spec.name)
                log.info("%s: quantized with %d calibration images", self.spec.name, used)
                self.ctx.cache.misses.append(f"quantized/{key}")
            else:
                self.ctx.cache.hits.append(f"quantized/{key}")
        self._target = OrtRunner(f"{self.spec.name} (target)", path)
        return self._target

    # -- comparison -----------------------------------------------------------------------------------------
    def comparison_key(self) -> str:
        spec = self.spec
        return stable_hash(
            "comparison",
            file_sha256(spec.reference),
            self.target_key(),
            spec.preprocess.model_dump(mode="json"),
            self.eval_images().fingerprint(),
            {k: v.model_dump(mode="json") for k, v in spec.outputs.items()},
            ort_version(),
        )

    def comparison(self) -> Comparison:
        key = self.comparison_key()
        with self.ctx.cache.locked("comparison", key) as folder:
            cached = self.ctx.cache.load_json("comparison", key)
            if cached is not None:
                self._copy_tensor_map(folder)
                return Comparison.from_json(cached)
            target = self.target()
            name, size = self.io()
            feeds = ((image_id, feed) for image_id, feed, _ in iter_feeds(self.spec, self.eval_images(), name, size))
            if isinstance(target, SnpeRunner):
                snpe_matches = target.tensor_map()
                self._write_tensor_map(target, folder)
                with target.session():
                    result = compare_stream(
                        self.spec.name, self.reference, target, list(snpe_matches), feeds, self.spec.outputs
                    )
                result.notes.append(
                    f"target DLC: {target.model_path()}; intermediates from snpe-net-run --debug (float32), final "
                    "outputs from the native output files, dequantized; DLC tensors matched by name and layout "
                    "(tensor_map.csv), returned in the ONNX layout."
                )
            else:
                matches = match_qdq(self.reference.graph(), target.graph())
                result = compare_stream(self.spec.name, self.reference, target, matches, feeds, self.spec.outputs)
                result.notes.append(
                    f"target model: {target.model_path()}; intermediates are the values consumers read "
                    "(DequantizeLinear outputs); final outputs come from the model as onnxruntime runs it."
                )
            self.ctx.cache.save_json("comparison", key, result.to_json())
            return result

    def _write_tensor_map(self, target: SnpeRunner, folder: Path) -> None:
        """``tensor_map.csv`` (reference tensor, DLC tensor, how, permutation) into the cache entry and the report."""
        from qc.cache import atomic_write_text
        from qc.compare.matching import TENSOR_MAP_COLUMNS
        from qc.report.tables import to_csv

        atomic_write_text(folder / "tensor_map.csv", to_csv(TENSOR_MAP_COLUMNS, target.tensor_map_rows()))
        self._copy_tensor_map(folder)

    def _copy_tensor_map(self, folder: Path) -> None:
        source = folder / "tensor_map.csv"
        if source.is_file():
            from qc.cache import atomic_write_text

            report = self.ctx.report_dir / self.spec.name
            report.mkdir(parents=True, exist_ok=True)
            atomic_write_text(report / "tensor_map.csv", source.read_text(encoding="utf-8"))

    # -- accuracy -------------------------------------------------------------------------------------------
    def accuracy_key(self) -> str:
        spec = self.spec
        task = spec.task.model_dump(mode="json") if spec.task else None
        return stable_hash(
            "accuracy",
            file_sha256(spec.reference),
            self.target_key(),
            task,
            spec.preprocess.model_dump(mode="json"),
            self.eval_images().fingerprint(),
            ort_version(),
        )

    def accuracy(self) -> tuple[AccuracyResult, DetectionSet, DetectionSet]:
        """Detections of both sides on the evaluation images, their COCO scores and their agreement."""
        task = self.spec.task
        if task is None:
            raise ConfigError(f"{self.spec.name}: the accuracy gates need a 'task' section (decoder, class_names).")
        key = self.accuracy_key()
        with self.ctx.cache.locked("accuracy", key) as folder:
            cached = self.ctx.cache.load_json("accuracy", key)
            if cached is not None and (folder / "reference.npz").is_file() and (folder / "target.npz").is_file():
                return (
                    AccuracyResult.from_json(cached),
                    DetectionSet.load(folder / "reference.npz"),
                    DetectionSet.load(folder / "target.npz"),
                )
            target = self.target()
            name, size = self.io()
            images = self.eval_images()
            names = task.names()
            feeds = ((i, f, t) for i, f, t in iter_feeds(self.spec, images, name, size))
            with maybe_session(target):  # SNPE: one device lease and run folder for the whole pass
                ref, tgt, sizes = collect(task, self.reference, target, feeds, size, len(names))
            result = score(task, ref, tgt, sizes, images.coco, names)
            ref.save(folder / "reference.npz")
            tgt.save(folder / "target.npz")
            self.ctx.cache.save_json("accuracy", key, result.to_json())
            return result, ref, tgt

    def close(self) -> None:
        """Release what the target holds (nothing stays leased between stages; kept for the fixtures)."""
        if isinstance(self._target, SnpeRunner):
            self._target.close()


def open_stages(models: Path, names: list[str], report_dir: Path, image_limit: int | None) -> list[ModelStages]:
    """The stages of the named models of a models.yaml, sharing one context (for the CLI, outside pytest)."""
    from qc.config import default_cache_dir, load_project

    project = load_project(Path(models))
    specs = {s.name: s for s in project.models}
    missing = [n for n in names if n not in specs]
    if missing:
        raise ConfigError(f"{models}: no model named {missing} (models: {', '.join(specs)}).")
    ctx = Context(StageCache(default_cache_dir() / "stages"), report_dir, image_limit, tuple(project.devices))
    return [ModelStages(specs[n], ctx) for n in names]
