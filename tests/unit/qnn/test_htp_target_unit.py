"""The ``qnn-htp`` target without the HTP: its spec, speed sources, speed.json figures, the model page split
section, the export command's error and the missing-package message."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import ValidationError

from qc.config import ModelSpec, QnnHtpTarget, SpeedSettings
from qc.errors import ConfigError
from qc.report.speed import write_speed
from qc.snpe.hostsim.split import ERROR_SPLIT_COLUMNS
from qc.speed import LatencyStats, LayerTimeRow
from qc.targets.base import gated_figure, speed_figures, timed_fps_source

BASE: dict[str, Any] = {
    "name": "m",
    "reference": "m.onnx",
    "eval_data": {"folder": "eval"},
}


def _spec(**fields: Any) -> ModelSpec:
    return ModelSpec.model_validate({**BASE, **fields})


def _stats(fps: float, source: str) -> LatencyStats:
    ms = 1000.0 / fps
    return LatencyStats(fps, ms, ms, ms, ms, 3, source)


def test_qnn_htp_spec_defaults_to_the_rvc4_and_needs_calibration_when_quantized() -> None:
    spec = _spec(target={"kind": "qnn-htp"}, calibration={"folder": "calib"})
    assert isinstance(spec.target, QnnHtpTarget)
    assert (spec.target.htp_arch, spec.target.soc_model, spec.target.precision) == (73, 66, "quantized")
    assert spec.target.htp_clock_mhz is None
    with pytest.raises(ValidationError, match="target kind 'qnn-htp' \\(precision quantized\\) needs a 'calibration'"):
        _spec(target={"kind": "qnn-htp"})
    assert isinstance(_spec(target={"kind": "qnn-htp", "precision": "fp16"}).target, QnnHtpTarget)
    with pytest.raises(ValidationError, match="htp_clock_mhz"):
        _spec(target={"kind": "qnn-htp", "precision": "fp16", "htp_clock_mhz": 0})
    with pytest.raises(ValidationError, match="fps_source"):
        SpeedSettings.model_validate({"fps_source": "simulator"})


class HostTarget:
    kind: ClassVar[str] = "ort-int8"
    speed_source: ClassVar[str] = "host"


class DeviceTarget:
    kind: ClassVar[str] = "snpe"
    speed_source: ClassVar[str] = "runner"


class SimulatorTarget:
    kind: ClassVar[str] = "qnn-htp"
    speed_source: ClassVar[str] = "host"
    default_fps_source: ClassVar[str | None] = None

    def __init__(self, estimates: dict[str, LatencyStats]) -> None:
        self.estimates = estimates

    def fps_estimates(self) -> dict[str, LatencyStats]:
        return self.estimates

    def unavailable_fps_sources(self) -> dict[str, str]:
        return {"htp-cycles-estimate": "set target.htp_clock_mhz"}


def test_min_fps_gates_the_chosen_source_and_fails_clearly_without_it() -> None:
    spec = _spec(target={"kind": "onnx", "model": "t.onnx"}, thresholds={"min_fps": 5})
    wall = _stats(10, "pytest-benchmark")
    host: Any = HostTarget()
    assert timed_fps_source(host) == "host-wall"
    assert timed_fps_source(DeviceTarget()) == "device"  # type: ignore[arg-type]
    assert gated_figure(spec, host, speed_figures(host, wall)) is wall  # the default: the timed figure
    asks_device = spec.model_copy(update={"speed": SpeedSettings(fps_source="device")})
    with pytest.raises(ConfigError, match=r"speed\.fps_source 'device' is not available for target kind 'ort-int8'"):
        gated_figure(asks_device, host, speed_figures(host, wall))

    sim: Any = SimulatorTarget({})
    figures = speed_figures(sim, wall)
    with pytest.raises(ConfigError, match=r"min_fps/min_fps_ratio need speed.fps_source for target kind 'qnn-htp'"):
        gated_figure(spec, sim, figures)
    estimate_spec = spec.model_copy(update={"speed": SpeedSettings(fps_source="htp-cycles-estimate")})
    with pytest.raises(ConfigError, match=r"not available .*\(set target.htp_clock_mhz\)"):
        gated_figure(estimate_spec, sim, figures)
    estimate = _stats(300, "htp-cycles-estimate: an estimate")
    sim_clock: Any = SimulatorTarget({"htp-cycles-estimate": estimate})
    assert gated_figure(estimate_spec, sim_clock, speed_figures(sim_clock, wall)) is estimate
    no_gate = spec.model_copy(update={"thresholds": spec.thresholds.model_copy(update={"min_fps": None})})
    assert gated_figure(no_gate, sim, figures) is wall  # nothing gated: the timed figure is reported


def test_speed_json_names_the_source_of_each_figure(tmp_path: Path) -> None:
    wall = _stats(0.3, "QNN HTP simulator wall time on this host (not the device's speed)")
    estimate = _stats(250, "htp-cycles-estimate: an estimate, 4000000 accelerator cycles")
    layers = [LayerTimeRow("conv", "Conv", 300.0, "cycles", 0.75), LayerTimeRow("relu", "Relu", 100.0, "cycles", 0.25)]
    io = [LayerTimeRow("input OpId_2", "input transfer", 100.0, "cycles", 0.2)]
    write_speed(
        tmp_path,
        wall,
        None,
        layers,
        io=io,
        figures={"host-wall": wall, "htp-cycles-estimate": estimate},
        gated_source="htp-cycles-estimate",
    )
    data = json.loads((tmp_path / "speed.json").read_text())
    assert data["fps_source"] == "htp-cycles-estimate"
    assert data["figures"]["host-wall"]["source"] == "host-wall"
    assert data["figures"]["host-wall"]["estimate"] is False
    assert data["figures"]["htp-cycles-estimate"]["estimate"] is True
    assert data["figures"]["htp-cycles-estimate"]["fps"] == pytest.approx(250)
    assert data["profiled_unit"] == "cycles"
    assert data["io_time_total"] == 100.0
    header = (tmp_path / "layer_times.csv").read_text().splitlines()[0]
    assert header == "layer,op_type,time,unit,share"
    assert (tmp_path / "op_types.csv").read_text().splitlines()[1].startswith("Conv,300")
    assert ",cycles," in (tmp_path / "op_types.csv").read_text()


def test_model_page_shows_the_error_split_only_when_written(tmp_path: Path) -> None:
    from qc.report.dashboard import write_dashboard
    from qc.report.tables import to_csv

    folder = tmp_path / "reports" / "models" / "htp-model"
    folder.mkdir(parents=True)
    rows = [
        {
            "index": 1,
            "tensor": "conv_13",
            "op_type": "LeakyRelu",
            "cosine_quant": 0.95,
            "sqnr_db_quant": 10.5,
            "cosine_runtime": 0.97,
            "sqnr_db_runtime": 12.0,
        }
    ]
    (folder / "htp_split.csv").write_text(to_csv(ERROR_SPLIT_COLUMNS, rows))
    other = tmp_path / "reports" / "models" / "cpu-model"
    other.mkdir()
    (other / "layers.csv").write_text("index,tensor,op_type\n")
    write_dashboard(tmp_path / "reports", settings={})
    page = (folder / "index.html").read_text(encoding="utf-8")
    assert 'id="split"' in page
    assert "Quantization vs runtime error" in page
    assert "conv_13" in page
    assert ">-1.5<" in page  # quant - runtime SQNR
    assert "Mean SQNR per tensor" in page
    assert 'href="htp_split.csv"' in page
    assert 'id="split"' not in (other / "index.html").read_text(encoding="utf-8")


def test_export_needs_a_target_with_a_context_binary(tmp_path: Path) -> None:
    from qc.targets.export import export_context_binary
    from tests.models import tiny_detector

    tiny_detector(tmp_path / "tiny.onnx")
    (tmp_path / "eval").mkdir()
    (tmp_path / "models.yaml").write_text(
        "models:\n  - name: plain\n    reference: tiny.onnx\n    target: {kind: onnx, model: tiny.onnx}\n"
        "    eval_data: {folder: eval}\n"
    )
    with pytest.raises(ConfigError, match="plain: target kind 'onnx' has no context binary to export"):
        export_context_binary(tmp_path / "models.yaml", "plain", tmp_path / "out.bin", tmp_path / "reports")


def test_a_missing_backend_is_named_when_the_target_is_built(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from qc.cache import StageCache
    from qc.pipeline import Context, ModelStages
    from qc.qnn import session
    from qc.qnn.session import HtpUnavailableError
    from qc.targets.qnn_htp import QnnHtp

    monkeypatch.setattr(
        session, "htp_missing", lambda: "the package onnxruntime-qnn is not installed (No module named x)"
    )
    spec = _spec(target={"kind": "qnn-htp", "precision": "fp16"})
    stages = ModelStages(spec, Context(StageCache(tmp_path / "cache"), tmp_path / "reports"))
    with pytest.raises(HtpUnavailableError, match="m: target kind 'qnn-htp': the package onnxruntime-qnn is not"):
        QnnHtp(stages)
