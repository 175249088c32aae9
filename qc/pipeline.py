"""The stages, in the one direction data flows: spec -> inputs -> reference + target runs -> comparison / task.

The target kind (:mod:`qc.targets`) and the task kind (:mod:`qc.tasks`) come from registries: nothing here knows
which kinds exist.

Each stage caches its result under a key hashed from what it depends on (model bytes, images, settings, qc
and onnxruntime versions), so a warm second run does no quantization and no inference.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from qc import progress
from qc.cache import StageCache, stable_hash
from qc.compare.layerwise import Comparison, compare_stream
from qc.config import DeviceSpec, ModelSpec
from qc.data.images import ImageSet, iter_images, load_image_set
from qc.data.preprocess import Transform, preprocess
from qc.errors import ConfigError, MetricError, ModelError, QcError
from qc.runners.base import GraphTensors, Runner
from qc.runners.ort import OrtRunner
from qc.targets.base import TARGET_RUN_JSON, finish_comparison

if TYPE_CHECKING:
    from qc.targets.base import Target
    from qc.tasks.base import InputsHook, Task, TaskInputs

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


def task_inputs(spec: ModelSpec, images: ImageSet, input_name: str, size: tuple[int, int]) -> TaskInputs | None:
    """The inputs the entry's task feeds instead of whole preprocessed images (:class:`qc.tasks.base.InputsHook`,
    e.g. a top-down keypoint model's person crops), or None."""
    hook = _inputs_hook(spec)
    return hook.inputs(images, input_name, size) if hook is not None else None


def inputs_key(spec: ModelSpec) -> object:
    """What decides the model inputs besides the images: ``preprocess`` (exactly that object when the task feeds
    whole images, so such entries keep their cache keys) and the task's input settings."""
    hook = _inputs_hook(spec)
    key = hook.inputs_key() if hook is not None else None
    return spec.preprocess if key is None else {"preprocess": spec.preprocess, "task_inputs": key}


def _inputs_hook(spec: ModelSpec) -> InputsHook | None:
    if spec.task is None:
        return None
    from qc.tasks import task_class

    cls = task_class(spec.task.kind)
    if not callable(getattr(cls, "inputs", None)):
        return None
    hook: InputsHook = cls(spec)  # type: ignore[assignment]  # structural: it has inputs and inputs_key
    return hook


def count_feeds(spec: ModelSpec, images: ImageSet, input_name: str, size: tuple[int, int]) -> int:
    """How many inputs :func:`iter_feeds` yields for ``images`` (progress totals)."""
    custom = task_inputs(spec, images, input_name, size)
    return custom.count if custom is not None else len(images)


def iter_feeds(
    spec: ModelSpec, images: ImageSet, input_name: str, size: tuple[int, int]
) -> Iterator[tuple[int, dict[str, np.ndarray], Transform]]:
    """The model inputs of ``images``, in order: one preprocessed input per image, or the task's own inputs
    (:func:`task_inputs`) when it provides them. Every stream of an entry reads its inputs here (comparison,
    accuracy, speed, diagnosis, a quantizing target's calibration)."""
    custom = task_inputs(spec, images, input_name, size)
    if custom is not None:
        yield from custom.feeds
        return
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

    # -- comparison and accuracy: one pass over the images ---------------------------------------------------
    def comparison_key(self) -> str:
        spec = self.spec
        return stable_hash(
            "comparison",
            spec.reference,
            self.target_key(),
            inputs_key(spec),
            self.eval_images().fingerprint(),
            spec.outputs,
            ort_version(),
        )

    def comparison(self) -> Comparison:
        """Per-layer and per-output metrics of the target against the reference on the evaluation images.

        Computed in one pass with the accuracy stage (when the entry has a task and its result is not cached yet):
        both results are cached, so the target runs once per image for the two stages.
        """
        comparison, _ = self._evaluate("comparison")
        assert comparison is not None
        return comparison

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

    def task(self) -> Task:
        """The entry's :class:`qc.tasks.base.Task` (a ConfigError when the entry has no ``task`` section)."""
        from qc.tasks import task_of

        return task_of(self.spec)

    def accuracy_key(self) -> str:
        spec = self.spec
        return stable_hash(
            "accuracy",
            spec.reference,
            self.target_key(),
            self.task().key() if spec.task else None,
            spec.preprocess,
            self.eval_images().fingerprint(),
            ort_version(),
        )

    def accuracy(self) -> Any:
        """The task's outcome on the evaluation images, both sides (detection: ``result, reference, target``).

        Shares the comparison's pass over the images when neither is cached (see :meth:`comparison`).
        """
        self.task()  # no task section: a ConfigError before anything runs
        _, outcome = self._evaluate("accuracy")
        return outcome

    def _evaluate(self, want: str) -> tuple[Comparison | None, Any]:
        """The comparison and the task outcome, from the cache or from ONE pass over the images for both.

        Both entries are locked in a fixed order (comparison, then accuracy) whichever is asked, so two workers
        cannot deadlock and one pass fills both. When both are missing, one pass computes and caches both; when
        only the asked one is missing, only it is computed (the accuracy alone runs the target's deployed path).
        """
        cache = self.ctx.cache
        task = self.task() if self.spec.task is not None else None
        ckey = self.comparison_key()
        akey = self.accuracy_key() if task is not None else ""
        with contextlib.ExitStack() as stack:
            cfolder = stack.enter_context(cache.locked("comparison", ckey))
            afolder = stack.enter_context(cache.locked("accuracy", akey)) if task is not None else None
            comparison = cache.read("comparison", ckey, self._load_comparison)
            if want == "comparison" and comparison is not None:
                return comparison, None
            outcome = cache.read("accuracy", akey, task.load) if task is not None else None
            if want == "accuracy" and outcome is not None:
                return comparison, outcome
            if comparison is not None:  # the accuracy is asked and missing; the comparison is cached
                assert task is not None  # accuracy() checked it
                assert afolder is not None
                cache.clear("accuracy", akey)
                outcome = self._accuracy_pass(task)
                cache.commit("accuracy", akey, task.save(outcome, afolder))
                return comparison, outcome
            cache.clear("comparison", ckey)
            both = task if outcome is None else None
            if both is not None:
                cache.clear("accuracy", akey)
            try:
                comparison, fresh, problem = self._one_pass(cfolder, both)
            except MetricError:
                if want != "accuracy" or task is None or afolder is None:
                    raise
                # the comparison itself cannot be computed (its error reaches the comparison gates): the accuracy
                # still can, on the target's deployed path
                outcome = self._accuracy_pass(task)
                cache.commit("accuracy", akey, task.save(outcome, afolder))
                return None, outcome
            cache.commit("comparison", ckey, comparison.to_json())
            if both is not None and afolder is not None:
                if fresh is not None:
                    cache.commit("accuracy", akey, both.save(fresh, afolder))
                    outcome = fresh
                elif want == "accuracy" and problem is not None:
                    raise problem
                elif problem is not None:
                    log.warning("%s: the accuracy stage failed in the shared pass: %s", self.spec.name, problem)
            return comparison, outcome

    def _load_comparison(self, data: Any, folder: Path) -> Comparison:
        self._copy_artifacts(folder)
        return Comparison.from_json(data)

    def _one_pass(self, folder: Path, task: Task | None) -> tuple[Comparison, Any, QcError | None]:
        """The comparison stream over the evaluation images; with a ``task``, its collector scores the same final
        outputs (the target's outputs as deployed) in the same pass. Returns (comparison, outcome or None, the
        task's error or None: a task error does not stop the comparison)."""
        target = self.target_impl()
        runner = target.runner()
        name, size = self.io()
        images = self.eval_images()
        collector = task.collector(size, images) if task is not None else None
        transforms: dict[int, Transform] = {}
        problem: QcError | None = None
        custom = task_inputs(self.spec, images, name, size)
        total = custom.count if custom is not None else len(images)

        def feeds() -> Iterator[tuple[int, dict[str, np.ndarray]]]:
            for image_id, feed, transform in iter_feeds(self.spec, images, name, size):
                if collector is not None:
                    transforms[image_id] = transform
                yield image_id, feed

        def on_outputs(image_id: int, reference: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray]) -> None:
            nonlocal collector, problem
            transform = transforms.pop(image_id, None)
            if collector is None or transform is None:
                return
            try:
                collector.add(image_id, transform, reference, outputs)
            except QcError as exc:
                problem, collector = exc, None
                transforms.clear()

        matches = target.matches(folder)
        self._copy_artifacts(folder)
        # a device target: one lease and run folder for the whole pass
        with target.session(), progress.task(self.spec.name, "compare", total) as bar:
            result = compare_stream(
                self.spec.name,
                self.reference,
                runner,
                matches,
                feeds(),
                self.spec.outputs,
                on_outputs=on_outputs if collector is not None else None,
                bar=bar,
            )
        result.notes.append(target.comparison_note())
        if custom is not None:
            result.notes.append(custom.note)
        finish_comparison(target, folder)  # a target's own per-tensor files (e.g. htp_split.csv) beside the entry
        self._copy_artifacts(folder)
        outcome = None
        if collector is not None:
            try:
                outcome = collector.finish()
            except QcError as exc:
                problem = exc
        return result, outcome, problem

    def _accuracy_pass(self, task: Task) -> Any:
        """The task alone over the evaluation images (the target's deployed path, ``run``)."""
        target = self.target_impl()
        runner = target.runner()
        name, size = self.io()
        images = self.eval_images()
        feeds = iter_feeds(self.spec, images, name, size)
        total = count_feeds(self.spec, images, name, size)
        # a device target: one lease and run folder for the whole pass; bar counts the inputs taken
        with target.session(), progress.task(self.spec.name, "evaluate", total) as bar:
            return task.evaluate(self.reference, runner, bar.each(feeds), size, images)

    def close(self) -> None:
        """Release what the target holds (nothing stays leased between stages; kept for the fixtures)."""
        if self._target is not None:
            self._target.close()


TARGET_ARTIFACTS = ("tensor_map.csv", "htp_split.csv", "htp_split.json", TARGET_RUN_JSON)
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
