"""The ``Target`` protocol: everything the pipeline, the gates and the diagnosis ask of a target kind."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal, Protocol

from qc.errors import ConfigError

if TYPE_CHECKING:
    from qc.compare.matching import TensorMatch
    from qc.config import ModelSpec, QuantSettings
    from qc.graph.lint import Finding
    from qc.graph.view import GraphView
    from qc.pipeline import ModelStages
    from qc.runners.base import Runner
    from qc.speed import LatencyStats

SpeedSource = Literal["host", "runner"]
"""``host``: pytest-benchmark times ``runner.run`` in this process; ``runner``: ``runner.speed`` measures it where
the model runs (a device tool such as snpe-throughput-net-run)."""

ProfileSide = Literal["reference", "target"]


class Target(Protocol):
    """One target kind, built over the stages of one models.yaml entry: ``Target(stages)``.

    Construction checks what the kind needs (``requires``: e.g. calibration images, the ``devices`` list) and
    raises a ConfigError naming what is missing; nothing is quantized, uploaded or leased until asked.
    """

    kind: ClassVar[str]
    requires: ClassVar[tuple[str, ...]]
    """What building it needs besides the reference: ``calibration``, ``devices``, ... (documentation and errors)."""
    speed_source: ClassVar[SpeedSource]
    lint_profile: ClassVar[ProfileSide]
    """Whose per-layer time the lint findings' time shares come from: the FP32 reference's or the target's."""

    def __init__(self, stages: ModelStages) -> None: ...

    def key(self) -> str:
        """Cache key of everything that decides the target's results (model bytes, settings, tool versions)."""
        ...

    def runner(self) -> Runner:
        """The runner of the target (quantize / open / connect once; cached on disk and in the object).

        How it runs a batch is the runner's: a :class:`qc.runners.base.BatchRunner` (``batch_size``, ``run_batch``,
        ``run_all_batch``) when it is cheaper per image in batches (a device tool call per batch), else image by image.
        """
        ...

    def session(self) -> contextlib.AbstractContextManager[None]:
        """One device lease and run folder for a whole stage (a no-op for in-process runners)."""
        ...

    def matches(self, folder: Path) -> list[TensorMatch]:
        """Reference tensor -> target tensor (with layout), for every reference tensor; may write artifacts such as
        ``tensor_map.csv`` into the cache ``folder`` (copied into the model's report folder)."""
        ...

    def comparison_note(self) -> str:
        """One sentence for the comparison's notes: what was compared and where the values came from."""
        ...

    def lint_view(self) -> GraphView:
        """The graph the lint gate checks: the target's own (e.g. the DLC's) or the ONNX reference."""
        ...

    def onnx_model(self) -> Path | None:
        """The ONNX QDQ model the target runs (the diagnosis builds its local-error model from it), or None."""
        ...

    def requantize(self) -> QuantSettings | None:
        """The host quantization settings when the target quantizes the reference itself (sensitivity and advice
        re-quantize variants of it), else None."""
        ...

    def close(self) -> None:
        """Release what the runner holds (device run folders)."""
        ...


@contextlib.contextmanager
def no_session() -> Iterator[None]:
    """The session of a target that runs in this process: nothing to lease."""
    yield


def onnx_reference_view(stages: ModelStages) -> GraphView:
    """The lint view of the entry's FP32 ONNX reference (onnx is imported here, only when linting)."""
    import onnx

    from qc.graph.view import view_from_onnx

    return view_from_onnx(onnx.load(str(stages.spec.reference)))


TARGET_RUN_JSON = "target_run.json"
"""What a target ran when models.yaml does not say it all (e.g. a context binary qc exported): a JSON object a target
may write into its comparison cache folder from ``matches``; copied into the model's report folder and shown in the
model page's run settings as "target as run"."""


# -- optional hooks ------------------------------------------------------------------------------------------------
# A target kind may define these methods; the callers below give the default when it does not.
#   finish_comparison(folder) -> None: write files from the comparison pass into its cache folder (TARGET_ARTIFACTS)
#   lint_findings() -> list[Finding]: findings of its own beside the lint rules' (e.g. nodes the runtime refuses)
#   default_fps_source: ClassVar[str | None]: the figure min_fps gates when speed.fps_source is unset (None: the
#     user must choose); default: the timed figure's source (:func:`timed_fps_source`)
#   fps_estimates() -> dict[source, LatencyStats]: figures besides the timed one (after the target's layer_times)
#   unavailable_fps_sources() -> dict[source, why]: sources it cannot give, with the reason


def finish_comparison(target: Target, folder: Path) -> None:
    """Let the target write what it gathered during the comparison pass into the cache ``folder``."""
    hook = getattr(target, "finish_comparison", None)
    if callable(hook):
        hook(folder)


def lint_findings(target: Target) -> list[Finding]:
    """The target's own lint findings (none for a target without the hook)."""
    hook = getattr(target, "lint_findings", None)
    return list(hook()) if callable(hook) else []


def timed_fps_source(target: Target) -> str:
    """Where the timed throughput comes from: ``host-wall`` (timed in this process) or ``device``."""
    return "device" if target.speed_source == "runner" else "host-wall"


def speed_figures(target: Target, timed: LatencyStats) -> dict[str, LatencyStats]:
    """Every throughput figure of the target by source: the timed one and the target's estimates."""
    figures = {timed_fps_source(target): timed}
    hook = getattr(target, "fps_estimates", None)
    if callable(hook):
        figures.update(hook())
    return figures


def gated_figure(spec: ModelSpec, target: Target, figures: dict[str, LatencyStats]) -> LatencyStats:
    """The figure ``min_fps``/``min_fps_ratio`` gate: ``speed.fps_source``, else the target's default.

    A ConfigError naming the entry, the source asked for and why the target cannot give it, when the thresholds
    ask for a figure that does not exist; without an FPS threshold the timed figure is reported (nothing is gated).
    """
    timed = figures[timed_fps_source(target)]
    gated = spec.thresholds.min_fps is not None or spec.thresholds.min_fps_ratio is not None
    default: str | None = getattr(target, "default_fps_source", timed_fps_source(target))
    source: str | None = spec.speed.fps_source or default
    if not gated:
        return figures.get(source, timed) if source else timed
    if source is None:
        raise ConfigError(
            f"{spec.name}: min_fps/min_fps_ratio need speed.fps_source for target kind {target.kind!r}: its timed "
            f"figure ({timed.source}) is not the device's speed; choose one of {sorted(figures)} (or remove the "
            "FPS thresholds)."
        )
    if source not in figures:
        hook = getattr(target, "unavailable_fps_sources", None)
        reasons: dict[str, str] = hook() if callable(hook) else {}
        why = reasons.get(source, "it does not measure or estimate it")
        raise ConfigError(
            f"{spec.name}: speed.fps_source {source!r} is not available for target kind {target.kind!r} ({why}); "
            f"it gives {sorted(figures)}."
        )
    return figures[source]
