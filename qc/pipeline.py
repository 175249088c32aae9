"""The stages, in the one direction data flows: spec -> inputs -> reference + target runs -> comparison / task.

The target kind (:mod:`qc.targets`) and the task kind (:mod:`qc.tasks`) come from registries: nothing here knows
which kinds exist.

Each stage caches its result under a key hashed from what it depends on (model bytes, images, settings, qc
and onnxruntime versions), so a warm second run does no quantization and no inference.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from qc import progress
from qc.cache import StageCache, stable_hash
from qc.compare.layerwise import Comparison, compare_stream
from qc.config import DeviceSpec, ModelSpec
from qc.data.images import ImageSet, file_sha256, iter_images, load_image_set
from qc.data.preprocess import Transform, preprocess
from qc.errors import ConfigError, ModelError
from qc.runners.base import GraphTensors, Runner
from qc.runners.ort import OrtRunner
from qc.targets.base import finish_comparison

if TYPE_CHECKING:
    from qc.targets.base import Target
    from qc.tasks.base import Task

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
    run_id: str | None = None
    """The run's id (device run folders are named after it); the pytest plugin passes its own."""


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
        self._target: Target | None = None
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
    def target_impl(self) -> Target:
        """The :class:`qc.targets.base.Target` of the entry's target kind (from the registry)."""
        if self._target is None:
            from qc.targets import target_for

            self._target = target_for(self)
        return self._target

    def target_key(self) -> str:
        return self.target_impl().key()

    def target(self) -> Runner:
        """The target's runner (quantized, opened or connected once)."""
        return self.target_impl().runner()

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
                self._copy_artifacts(folder)
                return Comparison.from_json(cached)
            target = self.target_impl()
            runner = target.runner()
            name, size = self.io()
            feeds = ((image_id, feed) for image_id, feed, _ in iter_feeds(self.spec, self.eval_images(), name, size))
            matches = target.matches(folder)
            self._copy_artifacts(folder)
            with target.session(), progress.task(self.spec.name, "compare", len(self.eval_images())) as bar:
                result = compare_stream(self.spec.name, self.reference, runner, matches, feeds, self.spec.outputs, bar)
            result.notes.append(target.comparison_note())
            finish_comparison(target, folder)
            self._copy_artifacts(folder)
            self.ctx.cache.save_json("comparison", key, result.to_json())
            return result

    def _copy_artifacts(self, folder: Path) -> None:
        """Files a target wrote beside its cached comparison (``tensor_map.csv``) go into the model's report."""
        from qc.cache import atomic_write_text
        from qc.report.paths import model_dir

        for name in TARGET_ARTIFACTS:
            source = folder / name
            if source.is_file():
                report = model_dir(self.ctx.report_dir, self.spec.name)
                report.mkdir(parents=True, exist_ok=True)
                atomic_write_text(report / name, source.read_text(encoding="utf-8"))

    # -- accuracy -------------------------------------------------------------------------------------------
    def task(self) -> Task:
        """The entry's :class:`qc.tasks.base.Task` (a ConfigError when the entry has no ``task`` section)."""
        from qc.tasks import task_of

        return task_of(self.spec)

    def accuracy_key(self) -> str:
        spec = self.spec
        task = self.task().key() if spec.task else None
        return stable_hash(
            "accuracy",
            file_sha256(spec.reference),
            self.target_key(),
            task,
            spec.preprocess.model_dump(mode="json"),
            self.eval_images().fingerprint(),
            ort_version(),
        )

    def accuracy(self) -> Any:
        """The task's outcome on the evaluation images, both sides (detection: ``result, reference, target``)."""
        task = self.task()
        key = self.accuracy_key()
        with self.ctx.cache.locked("accuracy", key) as folder:
            cached = self.ctx.cache.load_json("accuracy", key)
            if cached is not None:
                outcome = task.load(cached, folder)
                if outcome is not None:
                    return outcome
            target = self.target_impl()
            runner = target.runner()
            name, size = self.io()
            images = self.eval_images()
            feeds = iter_feeds(self.spec, images, name, size)
            with target.session(), progress.task(self.spec.name, "evaluate", len(images)) as bar:
                # a device target: one lease and run folder for the whole pass; bar counts the images taken
                outcome = task.evaluate(self.reference, runner, bar.each(feeds), size, images)
            self.ctx.cache.save_json("accuracy", key, task.save(outcome, folder))
            return outcome

    def close(self) -> None:
        """Release what the target holds (nothing stays leased between stages; kept for the fixtures)."""
        if self._target is not None:
            self._target.close()


TARGET_ARTIFACTS = ("tensor_map.csv", "htp_split.csv", "htp_split.json")
"""Files a target may write beside its cached comparison; each is copied into the model's report folder."""


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
