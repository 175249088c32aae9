"""The ``Target`` protocol: everything the pipeline, the gates and the diagnosis ask of a target kind."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal, Protocol

if TYPE_CHECKING:
    from qc.compare.matching import TensorMatch
    from qc.config import QuantSettings
    from qc.graph.view import GraphView
    from qc.pipeline import ModelStages
    from qc.runners.base import Runner

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
