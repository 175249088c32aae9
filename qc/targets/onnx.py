"""``kind: onnx``: an already quantized or converted ONNX file (AIMET, NNCF, onnxruntime QDQ), run on onnxruntime."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from qc.cache import stable_hash
from qc.config import OnnxTarget
from qc.errors import ConfigError
from qc.runners.ort import OrtRunner
from qc.targets.base import ProfileSide, SpeedSource, no_session, onnx_reference_view

if TYPE_CHECKING:
    from qc.compare.matching import TensorMatch
    from qc.config import QuantSettings
    from qc.graph.view import GraphView
    from qc.pipeline import ModelStages


class Onnx:
    """:class:`qc.targets.base.Target` for an ONNX file compared as it is."""

    kind: ClassVar[str] = "onnx"
    requires: ClassVar[tuple[str, ...]] = ("target.model",)
    speed_source: ClassVar[SpeedSource] = "host"
    lint_profile: ClassVar[ProfileSide] = "reference"

    def __init__(self, stages: ModelStages) -> None:
        self.stages = stages
        self.spec = stages.spec
        self._runner: OrtRunner | None = None

    def _settings(self) -> OnnxTarget:
        settings = self.spec.target
        if not isinstance(settings, OnnxTarget):
            raise ConfigError(f"{self.spec.name}: target kind {settings.kind!r} is not {self.kind!r}.")
        return settings

    def key(self) -> str:
        return stable_hash("onnx", self._settings().model)

    def runner(self) -> OrtRunner:
        if self._runner is None:
            self._runner = OrtRunner(f"{self.spec.name} (target)", self._settings().model)
        return self._runner

    def session(self) -> contextlib.AbstractContextManager[None]:
        return no_session()

    def matches(self, folder: Path) -> list[TensorMatch]:
        from qc.compare.matching import match_qdq

        return match_qdq(self.stages.reference.graph(), self.runner().graph())

    def comparison_note(self) -> str:
        return (
            f"target model: {self.runner().model_path()}; intermediates are the values consumers read "
            "(DequantizeLinear outputs); final outputs come from the model as onnxruntime runs it."
        )

    def lint_view(self) -> GraphView:
        return onnx_reference_view(self.stages)

    def onnx_model(self) -> Path | None:
        return self.runner().model_path()

    def requantize(self) -> QuantSettings | None:
        return None

    def close(self) -> None:
        """Nothing to release: onnxruntime sessions go with the object."""
