"""``kind: qnn``: a QNN context binary run with ``qnn-net-run --retrieve_context`` on a device's HTP (over SSH, the
device pool and run folders of the ``snpe`` target), :class:`qc.qnn.device_runner.QnnDeviceRunner` behind it.

- The context binary is the entry's ``target.context_binary``, or, without one, exported by qc from the reference
  with the entry's quantization settings for ``htp_arch``/``soc_model`` (the host-side export of ``qnn-htp``:
  onnxruntime-qnn on this machine, cached). Which of the two ran is written to ``target_run.json`` in the model's
  report folder (the model page's run settings show it) and said in the comparison notes.
- Final outputs (and declared output slices) are compared and scored by the task in ONE pass over the images: one
  ``qnn-net-run`` per ``batch_size`` images. Per-layer tensors do not exist for a context binary (``qnn-net-run
  --debug`` refuses ``--retrieve_context``): every reference tensor is listed unmatched with that reason, so the
  ``layer_cosine`` gate fails saying so unless the entry leaves it out of ``gates`` (or expects it to fail).
- Per-op time from ``qnn-profile-viewer`` (HTP cycles; ``Input``/``Output OpId_n`` transfers are the I/O line of
  speed.json, never layers); FPS is the device's ``NetRun IPS``.

:mod:`qc.qnn.device_runner` (and paramiko behind it) is imported here, on first use, only.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from qc.cache import atomic_write_text, stable_hash
from qc.config import QnnDeviceTarget, QuantSettings, default_cache_dir
from qc.data.images import file_sha256
from qc.errors import ConfigError
from qc.targets.base import TARGET_RUN_JSON, ProfileSide, SpeedSource, onnx_reference_view

if TYPE_CHECKING:
    from qc.compare.matching import TensorMatch
    from qc.graph.view import GraphView
    from qc.pipeline import ModelStages
    from qc.qnn.context import ContextBinary
    from qc.qnn.device_runner import QnnDeviceRunner

log = logging.getLogger(__name__)


NO_LAYERS = (
    "per-layer outputs are unavailable on target kind 'qnn': qnn-net-run cannot use --debug (every layer's output) "
    "with --retrieve_context, and a context binary keeps no intermediate tensors; the final outputs are compared. "
    "For per-layer similarity add a qnn-htp entry (the same HTP preparation on the host), or leave layer_cosine out "
    "of this entry's 'gates'"
)
"""The reason every reference tensor is unmatched for this target (the layer_cosine gate's failure names it)."""


@dataclass(frozen=True)
class ContextSource:
    """The context binary the target runs and where it came from."""

    binary: Path
    exported: bool
    qdq_model: Path | None
    """The QDQ model an exported context was prepared from (None for a given binary)."""
    source_model: Path | None
    """The ONNX model whose node names the profile's ops carry (``target.source_model`` or the exported QDQ)."""
    sha256: str


class Qnn:
    """:class:`qc.targets.base.Target` over :class:`qc.qnn.device_runner.QnnDeviceRunner` (see the module docstring)."""

    kind: ClassVar[str] = "qnn"
    requires: ClassVar[tuple[str, ...]] = (
        "devices",
        "target.context_binary, or calibration + onnxruntime-qnn (x86_64 Linux) to export one",
    )
    speed_source: ClassVar[SpeedSource] = "runner"  # NetRun IPS of qnn-net-run on the device
    lint_profile: ClassVar[ProfileSide] = "target"  # qnn-profile-viewer's per-op cycles, named after ONNX nodes

    def __init__(self, stages: ModelStages) -> None:
        settings = stages.spec.target
        if not isinstance(settings, QnnDeviceTarget):
            raise ConfigError(f"{stages.spec.name}: target kind {settings.kind!r} is not {self.kind!r}.")
        if not stages.ctx.devices:
            raise ConfigError(
                f"{stages.spec.name}: target kind 'qnn' needs the 'devices' list of models.yaml "
                "(load it with qc.config.load_project)."
            )
        if settings.context_binary is None and stages.spec.calibration is None:
            raise ConfigError(
                f"{stages.spec.name}: target kind 'qnn' without target.context_binary exports one from the "
                "reference and needs 'calibration'."
            )
        self.stages = stages
        self.spec = stages.spec
        self.settings: QnnDeviceTarget = settings
        self._source: ContextSource | None = None
        self._runner: QnnDeviceRunner | None = None

    # -- the context binary -----------------------------------------------------------------------------------
    def quant_settings(self) -> QuantSettings:
        """The SNPE-named quantization settings alone (what an exported context is quantized with)."""
        fields = set(QuantSettings.model_fields)
        return QuantSettings(**{k: v for k, v in self.settings.model_dump().items() if k in fields})

    def export_key(self) -> str:
        """Cache key of an exported context: reference bytes, quantization and HTP settings, calibration images,
        preprocessing, onnxruntime and onnxruntime-qnn versions."""
        from qc.data.images import load_image_set
        from qc.pipeline import ort_version
        from qc.targets.qnn_htp import qnn_version

        calibration = self.spec.calibration
        assert calibration is not None  # checked at construction
        return stable_hash(
            "qnn-export",
            self.spec.reference,
            self.quant_settings(),
            self.settings.htp_arch,
            self.settings.soc_model,
            self.spec.preprocess,
            load_image_set(calibration).fingerprint(),
            ort_version(),
            qnn_version(),
        )

    def context(self) -> ContextSource:
        """The given context binary, or the one exported from the reference (built once, cached on disk)."""
        if self._source is not None:
            return self._source
        given = self.settings.context_binary
        if given is not None:
            if not given.is_file():
                raise ConfigError(f"{self.spec.name}: target.context_binary not found: {given}.")
            self._source = ContextSource(given, False, None, self.settings.source_model, file_sha256(given))
            return self._source
        binary, qdq = self._export()
        self._source = ContextSource(binary, True, qdq, self.settings.source_model or qdq, file_sha256(binary))
        return self._source

    def _export(self) -> tuple[Path, Path]:
        from qc.data.images import load_image_set
        from qc.pipeline import iter_feeds
        from qc.qnn.device_runner import export_for_target

        def build(folder: Path) -> tuple[tuple[Path, Path], dict[str, object]]:
            calibration = self.spec.calibration
            assert calibration is not None  # checked at construction
            name, size = self.stages.io()
            feeds = [f for _, f, _ in iter_feeds(self.spec, load_image_set(calibration), name, size)]
            binary, qdq = export_for_target(self.settings, self.spec.reference, feeds, folder, self.spec.name)
            log.info(
                "%s: exported a QNN context binary for HTP v%d / SoC %d from the reference (%d calibration images)",
                self.spec.name,
                self.settings.htp_arch,
                self.settings.soc_model,
                len(feeds),
            )
            data = {"context_binary": binary.name, "qdq_model": qdq.name, "calibration_images": len(feeds)}
            return (binary, qdq), data

        def load(data: object, folder: Path) -> tuple[Path, Path] | None:
            if not isinstance(data, dict):
                return None
            binary, qdq = folder / str(data.get("context_binary")), folder / str(data.get("qdq_model"))
            return (binary, qdq) if binary.is_file() and qdq.is_file() else None

        exported: tuple[Path, Path] = self.stages.ctx.cache.cached("qnn-context", self.export_key(), build, load)
        return exported

    def key(self) -> str:
        # what decides the outputs: the context binary's bytes and how its I/O is fed and read; not the devices,
        # the batch size, the perf profile or the profiling level
        s = self.settings
        return stable_hash("qnn", self.context().sha256, s.backend, s.native_io, s.io_layout)

    # -- runner -----------------------------------------------------------------------------------------------
    def runner(self) -> QnnDeviceRunner:
        if self._runner is None:
            from qc.qnn.device_runner import QnnDeviceRunner

            ctx = self.stages.ctx
            source = self.context()
            self._runner = QnnDeviceRunner(
                f"{self.spec.name} (target)",
                self.settings,
                ctx.devices,
                reference=self.stages.reference.graph,
                lock_dir=ctx.device_lock_dir or default_cache_dir() / "devices",
                context_binary=source.binary,
                source_model=source.source_model,
                cache_dir=ctx.cache.root / "qnn",
                run_id=ctx.run_id,
            )
        return self._runner

    def session(self) -> contextlib.AbstractContextManager[None]:
        return _lease(self.runner())

    # -- comparison -------------------------------------------------------------------------------------------
    def matches(self, folder: Path) -> list[TensorMatch]:
        """Every reference tensor unmatched (:data:`NO_LAYERS`): the final outputs are compared by the output rows.
        Writes ``tensor_map.csv`` (the reference I/O -> context tensor, with the permutation) and
        ``target_run.json``."""
        from qc import jsonio
        from qc.compare.matching import TENSOR_MAP_COLUMNS, TensorMatch
        from qc.report.tables import to_csv

        runner = self.runner()
        reference = self.stages.reference.graph()
        shapes = {**{t.name: t.shape or () for t in reference.tensors}, **reference.inputs}
        inputs, outputs = runner.io_plans()
        rows = [
            {
                "reference": p.key,
                "reference_shape": "x".join(str(d) for d in shapes.get(p.key, ())),
                "target": p.tensor.name,
                "target_shape": "x".join(str(d) for d in p.tensor.dims),
                "how": f"context {what} ({p.tensor.dtype})",
                "permutation": ",".join(str(a) for a in p.permutation),
                "layout": self.settings.io_layout,
                "reason": "",
            }
            for what, plans in (("input", inputs), ("output", outputs))
            for p in plans
        ]
        atomic_write_text(folder / "tensor_map.csv", to_csv(TENSOR_MAP_COLUMNS, rows))
        atomic_write_text(folder / TARGET_RUN_JSON, jsonio.dumps(self.context_summary(), indent=1, default=str))
        return [TensorMatch(t, None, "none", NO_LAYERS) for t in reference.tensors]

    def context_summary(self) -> dict[str, object]:
        """What ``target_run.json`` says (the model page's "target as run"): the binary, given or exported (with
        what), its SHA-256."""
        source = self.context()
        summary: dict[str, object] = {
            "context_binary": str(source.binary),
            "origin": "exported by qc from the reference" if source.exported else "given (target.context_binary)",
            "sha256": source.sha256,
            "source_model": str(source.source_model) if source.source_model is not None else None,
            "backend": self.settings.backend,
        }
        if source.exported:
            summary.update(
                qdq_model=str(source.qdq_model),
                htp_arch=self.settings.htp_arch,
                soc_model=self.settings.soc_model,
                quantization=self.quant_settings().model_dump(mode="json"),
            )
        return summary

    def comparison_note(self) -> str:
        source = self.context()
        s = self.settings
        if source.exported:
            origin = (
                f"exported by qc from the reference (QDQ {source.qdq_model}, quantized with the entry's settings) "
                f"for HTP v{s.htp_arch} / SoC {s.soc_model}, as no target.context_binary was given"
            )
        else:
            origin = "given in target.context_binary"
        return (
            f"target: QNN context binary {source.binary} ({origin}; sha256 {source.sha256[:16]}) run with "
            f"qnn-net-run --retrieve_context --backend {s.backend} on device(s) {', '.join(s.devices)}, "
            f"{s.batch_size} image(s) per call; final outputs only, "
            f"{'dequantized with the context quantizeParams' if s.native_io else 'as float files'}, returned in the "
            "ONNX layout (tensor_map.csv); no per-layer tensors: qnn-net-run --debug cannot be used with "
            "--retrieve_context."
        )

    def export_context_binary(self, out: Path) -> ContextBinary:
        """``qc export --context-binary OUT``: the context this target deploys, written to ``out`` (its EPContext
        model beside it). A given ``target.context_binary`` is already the deployable file: nothing to export."""
        from qc.qnn.context import export_context_binary
        from qc.qnn.session import HtpOptions

        if self.settings.context_binary is not None:
            raise ConfigError(
                f"{self.spec.name}: target.context_binary is given ({self.settings.context_binary}): that file is what "
                "this entry deploys; qc exports a context only for an entry without one."
            )
        source = self.context()
        assert source.qdq_model is not None  # an exported context always keeps its QDQ model
        options = HtpOptions(htp_arch=self.settings.htp_arch, soc_model=self.settings.soc_model)
        return export_context_binary(source.qdq_model, out, options, entry=self.spec.name)

    # -- lint and speed ---------------------------------------------------------------------------------------
    def lint_view(self) -> GraphView:
        return onnx_reference_view(self.stages)

    def unavailable_fps_sources(self) -> dict[str, str]:
        """Why a source this target cannot give is missing (for the fps gate's error)."""
        return {
            "host-wall": "qnn runs on the device: its throughput is qnn-net-run's NetRun IPS (speed.fps_source device)",
            "htp-cycles-estimate": "qnn measures on the device (speed.fps_source device); no estimate is needed",
        }

    # -- the rest ---------------------------------------------------------------------------------------------
    def onnx_model(self) -> Path | None:
        source = self.context()
        return source.qdq_model if source.exported else None  # a given binary: no ONNX counterpart qc knows

    def requantize(self) -> QuantSettings | None:
        return None  # variants would need a context export and a device run each: not part of the diagnosis

    def close(self) -> None:
        if self._runner is not None:
            self._runner.close()


@contextlib.contextmanager
def _lease(runner: QnnDeviceRunner) -> Iterator[None]:
    with runner.session():
        yield
