"""The ``qnn-htp`` target through qc's stages on the real HTP simulator, with a tiny detector (seconds)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from qc.cache import StageCache
from qc.config import load_project
from qc.errors import ConfigError
from qc.pipeline import Context, ModelStages
from qc.qnn.runner import HtpRunner
from qc.snpe.hostsim.split import ERROR_SPLIT_COLUMNS
from qc.targets.base import gated_figure, lint_findings, speed_figures
from qc.targets.qnn_htp import QnnHtp
from tests.models import models_yaml, tiny_detector, write_images

pytestmark = pytest.mark.usefixtures("htp_backend")

ENTRY = """\
  - name: {name}
    reference: tiny.onnx
    target: {{kind: qnn-htp{extra}}}
    preprocess: {{size: [32, 32], mode: letterbox}}
    eval_data: {{folder: eval}}
    calibration: {{folder: calib}}
    outputs:
      pred: {{slices: {{boxes: {{axis: 1, start: 0, stop: 4}}, scores: {{axis: 1, start: 4}}}}}}
    thresholds: {{layer_cosine: 0.5, output_cosine: 0.5, output_sqnr_db: 0}}
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("htp-target")
    tiny_detector(folder / "tiny.onnx")
    write_images(folder / "eval", 2, seed=1)
    write_images(folder / "calib", 4, seed=1)
    entries = [
        ENTRY.format(name="tiny-htp", extra=""),
        ENTRY.format(name="tiny-htp-clock", extra=", htp_clock_mhz: 1000"),
        ENTRY.format(name="tiny-htp-fp16", extra=", precision: fp16"),
    ]
    return models_yaml(folder, "".join(entries))


def _stages(project: Path, name: str, tmp_path: Path) -> ModelStages:
    spec = {m.name: m for m in load_project(project).models}[name]
    return ModelStages(spec, Context(StageCache(project.parent / "cache"), tmp_path / "reports"))


def test_comparison_on_htp_reports_exposure_and_writes_the_error_split(project: Path, tmp_path: Path) -> None:
    stages = _stages(project, "tiny-htp", tmp_path)
    try:
        target = stages.target_impl()
        assert isinstance(target, QnnHtp)
        result = stages.comparison()
        runner = stages.target()
        assert isinstance(runner, HtpRunner)
        assert runner.quantized()
    finally:
        stages.close()
    assert result.images == 2
    compared = {row.tensor: row for row in result.layers}
    assert "relu1" in compared
    assert "pred" in compared
    assert all(0.5 < row.metrics.cosine_mean <= 1.0 for row in result.layers)
    # onnxruntime's quantizer fuses Conv + Relu (no QDQ pair on the Conv's output): unmatched, with the reason
    assert {u.tensor: u.reason for u in result.unmatched} == {
        "conv1": "no tensor of this name (or its QDQ pair) in the target"
    }
    note = result.notes[-1]
    assert "QNN HTP backend (v73, soc_model 66" in note
    assert "exposing left the final outputs bit-identical (2 image(s))" in note
    report = tmp_path / "reports" / "models" / "tiny-htp"
    with (report / "htp_split.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == ERROR_SPLIT_COLUMNS
    split = {r["tensor"]: r for r in rows}
    assert {"relu1", "pred"} <= set(split)
    quant, runtime = float(split["relu1"]["cosine_quant"]), float(split["relu1"]["cosine_runtime"])
    assert 0.9 < quant < 1.0  # int8 quantization error of the CPU run
    assert 0.9 < runtime <= 1.0  # HTP vs CPU int8 on the same QDQ model: small, measured per tensor
    assert (report / "htp_split.json").is_file()


def test_layer_times_are_htp_cycles_with_transfers_apart(project: Path, tmp_path: Path) -> None:
    stages = _stages(project, "tiny-htp", tmp_path)
    try:
        runner = stages.target()
        feed = stages.first_feed()
        profile = runner.layer_times(feed, runs=2)
        assert {r.unit for r in profile.rows} == {"cycles"}
        assert abs(sum(r.share for r in profile.rows) - 1.0) < 1e-9
        assert {r.op_type for r in profile.io} == {"input transfer", "output transfer"}
        assert "conv2" in {r.layer for r in profile.rows}
        assert lint_findings(stages.target_impl()) == []
        target = stages.target_impl()
        stats = runner.speed(feed, rounds=2, warmup=0)
        assert "not the device's speed" in stats.source
        figures = speed_figures(target, stats)
        assert set(figures) == {"host-wall"}  # no documented clock: no estimate
        assert gated_figure(stages.spec, target, figures) is stats  # no FPS threshold: reported, nothing gated
        gated = stages.spec.model_copy(update={"thresholds": stages.spec.thresholds.model_copy(update={"min_fps": 1})})
        with pytest.raises(ConfigError, match=r"min_fps/min_fps_ratio need speed.fps_source for target kind 'qnn-htp'"):
            gated_figure(gated, target, figures)
        asks = gated.model_copy(update={"speed": gated.speed.model_copy(update={"fps_source": "htp-cycles-estimate"})})
        with pytest.raises(ConfigError, match="htp_clock_mhz"):
            gated_figure(asks, target, figures)
        wall = gated.model_copy(update={"speed": gated.speed.model_copy(update={"fps_source": "host-wall"})})
        assert gated_figure(wall, target, figures) is stats
    finally:
        stages.close()


def test_a_documented_clock_gives_a_labelled_estimate(project: Path, tmp_path: Path) -> None:
    stages = _stages(project, "tiny-htp-clock", tmp_path)
    try:
        runner = stages.target()
        assert isinstance(runner, HtpRunner)
        runner.layer_times(stages.first_feed(), runs=1)
        assert runner.profile is not None
        assert runner.profile.accelerator_cycles
        target = stages.target_impl()
        stats = runner.speed(stages.first_feed(), rounds=1, warmup=0)
        figures = speed_figures(target, stats)
        estimate = figures["htp-cycles-estimate"]
        assert estimate.source.startswith("htp-cycles-estimate: an estimate")
        assert estimate.fps == pytest.approx(1e9 / runner.profile.accelerator_cycles)
    finally:
        stages.close()


def test_fp16_precision_runs_the_float_graph_and_exposes_its_tensors(project: Path, tmp_path: Path) -> None:
    stages = _stages(project, "tiny-htp-fp16", tmp_path)
    try:
        runner = stages.target()
        assert isinstance(runner, HtpRunner)
        assert not runner.quantized()
        assert runner.model_path() == stages.spec.reference
        feed = stages.first_feed()
        deployed = runner.run(feed)
        everything = runner.run_all(feed)
        reference = stages.reference.run(feed)
        assert runner.exposure_change == 0.0
        assert {"relu1", "head", "pred"} <= set(everything)
        diff = np.abs(deployed["pred"] - reference["pred"])
        assert 0 < diff.max() < 0.05 * np.abs(reference["pred"]).max()  # fp16 arithmetic: close, not equal
        assert stages.target_impl().requantize() is None
    finally:
        stages.close()


def test_export_context_binary_runs_back_with_identical_outputs(project: Path, tmp_path: Path) -> None:
    from qc.cli import main
    from qc.qnn.context import context_session
    from qc.qnn.session import run_session

    out = tmp_path / "ctx" / "tiny.bin"
    assert main(["export", "tiny-htp", "--models", str(project), "--context-binary", str(out)]) == 0
    assert out.is_file()
    assert out.with_suffix(".onnx").is_file()
    stages = _stages(project, "tiny-htp", tmp_path)
    try:
        feed = stages.first_feed()
        deployed = stages.target().run(feed)
        back = run_session(context_session(out.with_suffix(".onnx"), entry="tiny-ctx"), feed)
        assert set(back) == set(deployed)
        for name, value in deployed.items():
            assert np.array_equal(back[name], value)
    finally:
        stages.close()


def test_refused_nodes_are_lint_findings_and_a_runner_error(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    from qc.qnn.session import HtpUnsupportedError

    nodes = [
        helper.make_node("Relu", ["images"], ["r"], name="relu_a"),
        helper.make_node("Det", ["r"], ["d"], name="det_b"),
        helper.make_node("Unsqueeze", ["d", "axes"], ["y"], name="unsq_c"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 3])],
        [onnx.numpy_helper.from_array(np.array([0], np.int64), "axes")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "det.onnx"))
    write_images(tmp_path / "eval", 1)
    project = models_yaml(
        tmp_path,
        "  - name: det-htp\n    reference: det.onnx\n    target: {kind: qnn-htp, precision: fp16}\n"
        "    preprocess: {size: [8, 8]}\n    eval_data: {folder: eval}\n",
    )
    stages = _stages(project, "det-htp", tmp_path)
    try:
        findings = lint_findings(stages.target_impl())
        assert [(f.rule, f.node, f.op_type, f.severity) for f in findings] == [
            ("htp-unsupported", "det_b", "Det", "error")
        ]
        with pytest.raises(HtpUnsupportedError, match=r"(?s)det-htp: .*det_b \(Det\)"):
            stages.target().run(stages.first_feed())
    finally:
        stages.close()
