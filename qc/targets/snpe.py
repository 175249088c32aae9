"""``kind: snpe``: a DLC run with the SNPE tools on a device (over SSH) or with a local SDK.

:mod:`qc.snpe.runner` (and paramiko behind it) is imported here, on first use, only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from qc.cache import atomic_write_text, stable_hash
from qc.config import SnpeTarget, default_cache_dir
from qc.errors import ConfigError
from qc.targets.base import ProfileSide, SpeedSource

if TYPE_CHECKING:
    from qc.compare.matching import TensorMatch
    from qc.config import QuantSettings
    from qc.graph.view import GraphView
    from qc.pipeline import ModelStages
    from qc.snpe.runner import SnpeRunner


class Snpe:
    """:class:`qc.targets.base.Target` over :class:`qc.snpe.runner.SnpeRunner` (its public API only)."""

    kind: ClassVar[str] = "snpe"
    requires: ClassVar[tuple[str, ...]] = ("target.dlc", "devices")
    speed_source: ClassVar[SpeedSource] = "runner"  # snpe-throughput-net-run on the device
    lint_profile: ClassVar[ProfileSide] = "target"  # snpe-diagview's per-layer time (DLC layers are ONNX node names)

    def __init__(self, stages: ModelStages) -> None:
        settings = stages.spec.target
        if not isinstance(settings, SnpeTarget):
            raise ConfigError(f"{stages.spec.name}: target kind {settings.kind!r} is not {self.kind!r}.")
        if not stages.ctx.devices:
            raise ConfigError(
                f"{stages.spec.name}: target kind 'snpe' needs the 'devices' list of models.yaml "
                "(load it with qc.config.load_project)."
            )
        self.stages = stages
        self.spec = stages.spec
        self.settings: SnpeTarget = settings
        self._runner: SnpeRunner | None = None

    def key(self) -> str:
        # the DLC decides the results; batch size or devices do not
        return stable_hash("snpe", self.settings.dlc, self.settings.runtime, self.settings.native_io)

    def runner(self) -> SnpeRunner:
        if self._runner is None:
            from qc.snpe.runner import SnpeRunner

            ctx = self.stages.ctx
            self._runner = SnpeRunner(
                f"{self.spec.name} (target)",
                self.settings,
                ctx.devices,
                reference=self.stages.reference.graph,
                input_layout=self.spec.preprocess.layout,
                lock_dir=ctx.device_lock_dir or default_cache_dir() / "devices",
                cache_dir=ctx.cache.root / "snpe",
                run_id=ctx.run_id,
            )
        return self._runner

    def session(self) -> contextlib.AbstractContextManager[None]:
        return _lease(self.runner())

    def matches(self, folder: Path) -> list[TensorMatch]:
        from qc.compare.matching import TENSOR_MAP_COLUMNS
        from qc.report.tables import to_csv

        runner = self.runner()
        found: list[TensorMatch] = list(runner.tensor_map())
        atomic_write_text(folder / "tensor_map.csv", to_csv(TENSOR_MAP_COLUMNS, runner.tensor_map_rows()))
        return found

    def comparison_note(self) -> str:
        return (
            f"target DLC: {self.settings.dlc}; intermediates from snpe-net-run --debug (float32), final "
            "outputs from the native output files, dequantized; DLC tensors matched by name and layout "
            "(tensor_map.csv), returned in the ONNX layout."
        )

    def lint_view(self) -> GraphView:
        from qc.snpe.graph import view_from_dlc

        return view_from_dlc(self.runner().dlc_info())  # the DLC's own graph, as it runs

    def onnx_model(self) -> Path | None:
        return None  # a compiled DLC: the local-error model needs an ONNX QDQ counterpart

    def requantize(self) -> QuantSettings | None:
        return None

    def close(self) -> None:
        if self._runner is not None:
            self._runner.close()


@contextlib.contextmanager
def _lease(runner: SnpeRunner) -> Iterator[None]:
    with runner.session():
        yield
