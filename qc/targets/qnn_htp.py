"""``kind: qnn-htp``: the reference quantized on the host (QDQ in the form HTP accepts, the SNPE-named settings of
``ort-int8``) or kept in float (``precision: fp16``), run on Qualcomm's HTP backend (the simulator of
``onnxruntime-qnn``) with the CPU fallback always disabled.

- Final outputs, accuracy and agreement come from the graph as deployed; per-layer tensors from a copy whose
  activations are extra graph outputs. The comparison notes say whether exposing changed the final outputs.
- The comparison pass also writes ``htp_split.csv``: per tensor, HTP vs onnxruntime's CPU int8 on the same QDQ
  model (the runtime part) beside CPU int8 vs FP32 (the quantization part).
- Per-layer time is HTP cycles from QNN's profile. The simulator's wall time is no device speed: ``min_fps`` gates
  only the figure ``speed.fps_source`` names (``host-wall``, or ``htp-cycles-estimate`` with ``htp_clock_mhz``).
- Nodes HTP refuses are an error naming each node and op type, and ``htp-unsupported`` lint findings.
"""

from __future__ import annotations

import importlib.metadata
import logging
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from qc.cache import atomic_write_text, stable_hash
from qc.config import QnnHtpTarget, QuantSettings
from qc.data.images import load_image_set
from qc.errors import ConfigError
from qc.targets.base import ProfileSide, SpeedSource, no_session, onnx_reference_view

if TYPE_CHECKING:
    import contextlib

    from qc.compare.matching import TensorMatch
    from qc.graph.lint import Finding
    from qc.graph.view import GraphView
    from qc.pipeline import ModelStages
    from qc.qnn.context import ContextBinary
    from qc.qnn.runner import HtpRunner
    from qc.qnn.session import HtpOptions
    from qc.speed import LatencyStats

log = logging.getLogger(__name__)

SPLIT_CSV = "htp_split.csv"
SPLIT_JSON = "htp_split.json"
ESTIMATE_SOURCE = "htp-cycles-estimate"


def qnn_version() -> str:
    """The installed onnxruntime-qnn version (part of the target's key)."""
    from qc.qnn.session import PACKAGE

    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return "missing"


class QnnHtp:
    """:class:`qc.targets.base.Target` on the QNN HTP backend (see the module docstring)."""

    kind: ClassVar[str] = "qnn-htp"
    requires: ClassVar[tuple[str, ...]] = ("calibration (precision quantized)", "onnxruntime-qnn (x86_64 Linux)")
    speed_source: ClassVar[SpeedSource] = "host"  # the simulator's wall time, timed in this process
    lint_profile: ClassVar[ProfileSide] = "target"  # HTP cycles per ONNX node
    default_fps_source: ClassVar[str | None] = None  # a simulator's wall time is no device speed: the user chooses

    def __init__(self, stages: ModelStages) -> None:
        from qc.qnn.session import HtpUnavailableError, htp_missing

        settings = stages.spec.target
        if not isinstance(settings, QnnHtpTarget):
            raise ConfigError(f"{stages.spec.name}: target kind {settings.kind!r} is not {self.kind!r}.")
        if settings.precision == "quantized" and stages.spec.calibration is None:
            raise ConfigError(f"{stages.spec.name}: target kind 'qnn-htp' (precision quantized) needs 'calibration'.")
        missing = htp_missing()
        if missing is not None:
            raise HtpUnavailableError(f"{stages.spec.name}: target kind 'qnn-htp': {missing}.")
        self.stages = stages
        self.spec = stages.spec
        self.settings: QnnHtpTarget = settings
        self._runner: HtpRunner | None = None
        self._workdir: Path | None = None
        self._split_folder: Path | None = None

    # -- identity -------------------------------------------------------------------------------------------
    def options(self) -> HtpOptions:
        from qc.qnn.session import HtpOptions

        return HtpOptions.for_target(self.settings)

    def quant_settings(self) -> QuantSettings:
        """The SNPE-named quantization settings alone (what ``ort-int8`` would use)."""
        fields = set(QuantSettings.model_fields)
        return QuantSettings(**{k: v for k, v in self.settings.model_dump().items() if k in fields})

    def key(self) -> str:
        from qc.pipeline import inputs_key, ort_version

        quantized = self.settings.precision == "quantized"
        calibration = self.spec.calibration
        return stable_hash(
            "qnn-htp",
            self.spec.reference,
            self.settings,
            inputs_key(self.spec) if quantized else None,
            load_image_set(calibration).fingerprint() if quantized and calibration is not None else None,
            ort_version(),
            qnn_version(),
            self.options().provider_options(),
        )

    # -- runner ---------------------------------------------------------------------------------------------
    def _model(self) -> Path:
        if self.settings.precision == "fp16":
            return self.spec.reference
        from qc.pipeline import iter_feeds
        from qc.qnn.quantize import quantize_htp

        assert self.spec.calibration is not None  # checked at construction

        def build(folder: Path) -> tuple[Path, dict[str, object]]:
            path = folder / "model.htp.onnx"
            assert self.spec.calibration is not None
            name, size = self.stages.io()
            calib = load_image_set(self.spec.calibration)
            feeds = (f for _, f, _ in iter_feeds(self.spec, calib, name, size))
            used = quantize_htp(self.spec.reference, self.quant_settings(), feeds, path, self.spec.name)
            log.info("%s: quantized for the HTP with %d calibration images", self.spec.name, used)
            return path, {"model": path.name, "calibration_images": used}

        def load(_data: object, folder: Path) -> Path | None:
            path = folder / "model.htp.onnx"
            return path if path.is_file() else None

        path = self.stages.ctx.cache.cached("quantized", self.key(), build, load)
        return path

    def runner(self) -> HtpRunner:
        if self._runner is None:
            from qc.qnn.runner import HtpRunner

            model = self._model()
            self._workdir = Path(tempfile.mkdtemp(prefix="qc-htp-"))
            self._runner = HtpRunner(
                f"{self.spec.name} (target)", model, self.options(), workdir=self._workdir, entry=self.spec.name
            )
        return self._runner

    def session(self) -> contextlib.AbstractContextManager[None]:
        return no_session()

    # -- comparison -----------------------------------------------------------------------------------------
    def matches(self, folder: Path) -> list[TensorMatch]:
        """Reference tensors matched through QDQ renames; those HTP fuses away (not exposed) are unmatched. Starts
        the error split (quantized precision), finished by :meth:`finish_comparison`."""
        from qc.compare.matching import TensorMatch, match_qdq
        from qc.qnn.runner import SplitTap
        from qc.runners.ort import OrtRunner

        runner = self.runner()
        graph = runner.graph()
        exposed = set(runner.exposed())
        available = exposed | set(graph.inputs) | set(graph.outputs)
        found = []
        for m in match_qdq(self.stages.reference.graph(), graph):
            if m.target is not None and m.target not in available:
                m = TensorMatch(
                    m.reference,
                    None,
                    "none",
                    "the HTP fuses it into the op before it (e.g. Conv + LeakyRelu): exposing it would change the "
                    "prepared graph, so it is not compared",
                )
            found.append(m)
        if runner.quantized():
            host = OrtRunner(f"{self.spec.name} (CPU int8, same QDQ model)", runner.model_path())
            runner.tap = SplitTap(self.spec.name, self.stages.reference, host, sorted(exposed))
            self._split_folder = folder
        return found

    def finish_comparison(self, folder: Path) -> None:
        """Write ``htp_split.csv`` / ``htp_split.json`` from the comparison pass into ``folder``."""
        from qc import jsonio
        from qc.report.tables import to_csv
        from qc.snpe.hostsim.split import ERROR_SPLIT_COLUMNS

        runner = self._runner
        if runner is None or runner.tap is None:
            return
        split = runner.tap.result()
        runner.tap = None
        summary = split.summary()
        summary["rule"] = str(summary["rule"]).replace("device", "HTP").replace("host simulation", "CPU int8")
        summary["sides"] = {
            "quant": "onnxruntime CPU int8 (same QDQ model) vs the FP32 reference",
            "runtime": "the QNN HTP backend vs onnxruntime CPU int8 on the same QDQ model",
        }
        atomic_write_text(folder / SPLIT_CSV, to_csv(ERROR_SPLIT_COLUMNS, split.csv_rows()))
        atomic_write_text(folder / SPLIT_JSON, jsonio.dumps(summary, indent=1, default=str))

    def comparison_note(self) -> str:
        runner = self.runner()
        what = "the QDQ model (quantized for the HTP)" if runner.quantized() else "the FP32 reference in HTP fp16"
        note = (
            f"target: {what} {runner.model_path()} on the QNN HTP backend (v{self.settings.htp_arch}, soc_model "
            f"{self.settings.soc_model}, the onnxruntime-qnn {qnn_version()} simulator, CPU fallback disabled); "
            f"intermediates from a copy exposing {len(runner.exposed())} activations as graph outputs, final "
            "outputs from the graph as deployed"
        )
        if runner.exposure_change is None:
            return note + "."
        if runner.exposure_change == 0.0:
            return note + f"; exposing left the final outputs bit-identical ({runner.exposure_checks} image(s))."
        return (
            note + f"; exposing CHANGED the final outputs by up to {runner.exposure_change:.6g} (max abs, "
            f"{runner.exposure_checks} image(s)): the per-layer values come from a graph HTP prepared differently."
        )

    # -- lint and speed -------------------------------------------------------------------------------------
    def lint_view(self) -> GraphView:
        return onnx_reference_view(self.stages)

    def lint_findings(self) -> list[Finding]:
        """``htp-unsupported`` findings: the nodes HTP refuses in the deployed graph (none when it runs)."""
        from qc.qnn.session import HtpUnsupportedError

        try:
            self.runner().deployed_session()
        except HtpUnsupportedError as exc:
            return list(exc.findings)
        return []

    def fps_estimates(self) -> dict[str, LatencyStats]:
        """FPS from the profiled run's accelerator cycles and ``htp_clock_mhz``, labelled an estimate; none without a
        clock (qc knows no documented HTP clock) or before :meth:`HtpRunner.layer_times` ran."""
        from qc.speed import LatencyStats

        clock = self.settings.htp_clock_mhz
        profile = self._runner.profile if self._runner is not None else None
        cycles = profile.accelerator_cycles if profile is not None else None
        if clock is None or profile is None or not cycles:
            return {}
        latency_ms = cycles / (clock * 1e3)
        source = (
            f"{ESTIMATE_SOURCE}: an estimate, {cycles:.0f} accelerator cycles (QNN profile, mean of {profile.runs} "
            f"run(s)) / htp_clock_mhz {clock:g}; not a measurement: the simulator's cycle counts vary with the "
            "host's load (compare shares, not absolute cycles)"
        )
        return {ESTIMATE_SOURCE: LatencyStats(1000.0 / latency_ms, *(latency_ms,) * 4, profile.runs, source)}

    def unavailable_fps_sources(self) -> dict[str, str]:
        """Why a source this target cannot give is missing (for the fps gate's error)."""
        return {
            "device": "qnn-htp runs Qualcomm's HTP simulator on this host; no device is involved",
            ESTIMATE_SOURCE: "set target.htp_clock_mhz to your device's documented HTP clock (qc assumes none)",
        }

    def export_context_binary(self, out: Path) -> ContextBinary:
        """The HTP context binary of the deployed graph for the configured SoC (``qc export --context-binary``)."""
        from qc.qnn.context import export_context_binary

        return export_context_binary(self.runner().model_path(), out, self.options(), entry=self.spec.name)

    # -- the rest -------------------------------------------------------------------------------------------
    def onnx_model(self) -> Path | None:
        return self.runner().model_path() if self.settings.precision == "quantized" else None

    def requantize(self) -> QuantSettings | None:
        return self.quant_settings() if self.settings.precision == "quantized" else None

    def close(self) -> None:
        self._runner = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
