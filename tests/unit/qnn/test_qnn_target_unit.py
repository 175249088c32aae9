"""The ``qnn`` target kind without a device: models.yaml validation (``qc validate`` at LINE:COL), the registry entry,
its speed sources, and the layer gate's message when a target gives no layer outputs."""

from __future__ import annotations

from pathlib import Path

import pytest
from onnx import TensorProto, helper

from qc import gates
from qc.cli import main
from qc.compare.layerwise import Comparison, Unmatched
from qc.config import ModelSpec, QnnDeviceTarget, load_project
from qc.errors import ConfigError
from qc.speed import LatencyStats
from qc.targets import target_class
from qc.targets.base import gated_figure
from qc.targets.qnn import NO_LAYERS, Qnn

HEAD = """\
devices:
  - name: dev
    host: 10.0.0.2
    user: root
    auth: {agent: true}
models:
  - name: m
    reference: model.onnx
    eval_data: {folder: images}
    target:
      kind: qnn
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    (tmp_path / "model.onnx").write_bytes(model.SerializeToString())
    (tmp_path / "ctx.bin").write_bytes(b"context")
    (tmp_path / "images").mkdir()
    return tmp_path


def validate(folder: Path, target: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    (folder / "models.yaml").write_text(HEAD + target)
    code = main(["validate", str(folder / "models.yaml")])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_validate_accepts_a_qnn_entry_and_resolves_its_paths(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    entry = "      context_binary: ctx.bin\n      source_model: model.onnx\n      devices: [dev]\n"
    code, out = validate(folder, entry, capsys)
    assert code == 0, out
    assert "m: target qnn" in out
    target = load_project(folder / "models.yaml").models[0].target
    assert isinstance(target, QnnDeviceTarget)
    assert target.context_binary == folder / "ctx.bin"  # relative to the models.yaml folder
    assert target.source_model == folder / "model.onnx"
    assert (target.htp_arch, target.soc_model, target.backend) == (73, 66, "libQnnHtp.so")


def test_validate_rejects_bad_qnn_fields_at_their_line_and_column(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = validate(
        folder,
        "      context_binary: ctx.bin\n"
        "      devices: [dev]\n"
        "      batch_size: 0\n"
        "      perf_profile: turbo\n"
        "      htp_arch: 70\n"
        '      backend: "libQnnHtp.so\\nrm -rf /"\n'
        "      io_layout: nchw\n"
        "      contxt: x.bin\n",
        capsys,
    )
    assert code == 2
    yaml = folder / "models.yaml"
    assert f"{yaml}:14:19: models[0].target.batch_size: Input should be greater than 0, found 0" in out
    assert f"{yaml}:15:21: models[0].target.perf_profile: perf_profile 'turbo' is not one of low_balanced," in out
    assert f"{yaml}:16:17: models[0].target.htp_arch: Input should be 68, 69, 73, 75, 79 or 81, found 70" in out
    assert f"{yaml}:17:16: models[0].target.backend: backend 'libQnnHtp.so\\nrm -rf /' must be a library" in out
    assert f"{yaml}:18:18: models[0].target.io_layout: Input should be 'auto', 'onnx' or 'nhwc'" in out
    assert f"{yaml}:19:7: models[0].target.contxt: unknown field (allowed: per_channel," in out
    assert "context_binary, source_model, devices, backend" in out


def test_validate_names_missing_files_and_devices(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = validate(
        folder, "      context_binary: missing.bin\n      source_model: nope.onnx\n      devices: [dev]\n", capsys
    )
    assert code == 2
    yaml = folder / "models.yaml"
    assert f"{yaml}:12:23: models[0].target.context_binary: file not found: {folder / 'missing.bin'}" in out
    assert f"{yaml}:13:21: models[0].target.source_model: file not found: {folder / 'nope.onnx'}" in out
    code, out = validate(folder, "      context_binary: ctx.bin\n      devices: [dev, lab-2]\n", capsys)
    assert code == 2
    assert f"{yaml}:13:22: models[0].target.devices[1]: model 'm': unknown device 'lab-2'; devices are ['dev']" in out
    code, out = validate(folder, "      devices: [dev]\n", capsys)  # no context binary: exported, needs calibration
    assert code == 2
    assert f"{yaml}:7:5: models[0]: target kind 'qnn' without target.context_binary exports one from the " in out
    assert "it needs a 'calibration' image set" in out


def test_registry_entry_and_speed_sources() -> None:
    from qc.targets.base import Target

    cls = target_class("qnn")
    assert cls is Qnn
    static: type[Target] = Qnn  # mypy checks that the class satisfies the Target protocol
    assert static.kind == "qnn"
    assert (cls.speed_source, cls.lint_profile) == ("runner", "target")
    spec = ModelSpec.model_validate(
        {
            "name": "m",
            "reference": "r.onnx",
            "target": {"kind": "qnn", "context_binary": "c.bin", "devices": ["dev"]},
            "eval_data": {"folder": "."},
            "thresholds": {"min_fps": 10},
        }
    )
    target = Qnn.__new__(Qnn)  # the speed-source hooks read no state
    timed = LatencyStats(100.0, 10.0, 10.0, 10.0, 10.0, 5, "NetRun IPS")
    assert gated_figure(spec, target, {"device": timed}) is timed
    host = spec.model_copy(update={"speed": spec.speed.model_copy(update={"fps_source": "host-wall"})})
    with pytest.raises(ConfigError, match=r"'host-wall' is not available for target kind 'qnn' \(qnn runs on the"):
        gated_figure(host, target, {"device": timed})


def test_layer_gate_without_layers_names_the_reasons() -> None:
    target = {"kind": "onnx", "model": "t.onnx"}
    spec = ModelSpec.model_validate({"name": "m", "reference": "r", "target": target, "eval_data": {"folder": "."}})
    rows = [Unmatched(f"t{i}", "Conv", NO_LAYERS) for i in range(7)] + [Unmatched("s", "Shape", "not compared: int64")]
    verdict = gates.check("layer_cosine", gates.Evidence(spec, comparison=Comparison("m", 3, unmatched=rows)))
    assert not verdict.passed
    assert verdict.message.startswith("m: no layer could be compared; 8 reference tensors were unmatched (7 tensor")
    assert "qnn-net-run cannot use --debug (every layer's output) with --retrieve_context" in verdict.message
    assert verdict.message.endswith("; 1 tensor(s): not compared: int64).")
    bare = gates.check("layer_cosine", gates.Evidence(spec, comparison=Comparison("m", 3)))
    assert bare.message == "m: no layer could be compared; 0 reference tensors were unmatched."


def test_export_of_an_entry_with_its_own_context_binary_is_refused(tmp_path: Path) -> None:
    """``qc export`` on a kind: qnn entry that names its context binary: that file is the deployable; nothing is
    exported (and no export is attempted)."""
    from qc.cache import StageCache
    from qc.config import DeviceSpec
    from qc.pipeline import Context, ModelStages

    (tmp_path / "c.bin").write_bytes(b"ctx")
    spec = ModelSpec.model_validate(
        {
            "name": "given",
            "reference": tmp_path / "r.onnx",
            "target": {"kind": "qnn", "context_binary": tmp_path / "c.bin", "devices": ["dev"]},
            "eval_data": {"folder": tmp_path},
        }
    )
    device = DeviceSpec.model_validate({"name": "dev", "local": True})
    target = Qnn(ModelStages(spec, Context(StageCache(tmp_path / "cache"), tmp_path / "r", devices=(device,))))
    with pytest.raises(ConfigError, match=r"given: target.context_binary is given \(.*c.bin\): that file is what"):
        target.export_context_binary(tmp_path / "out.bin")
    assert not (tmp_path / "out.bin").exists()
