"""models.yaml against hostile or careless input: one expansion rule, bounds, binary files, alias bombs, bad models."""

from __future__ import annotations

from pathlib import Path

import pytest
from onnx import TensorProto, helper

from qc.cli import main
from qc.config import load_models, load_project
from qc.errors import ConfigError

DEVICE_FILE = """\
devices:
  - name: dev
    host: ${QC_T_HOST}
    user: ${QC_T_USER}
    auth: {agent: true}
    remote_root: ${QC_T_ROOT}/qc
    setup: source ${QC_T_ROOT}/env.sh && echo $${HOME}
    env: {LD_LIBRARY_PATH: "${QC_T_ROOT}/lib"}
models:
  - name: m
    reference: model.onnx
    target: {kind: snpe, dlc: model.dlc, devices: [dev]}
    preprocess: {input: "${QC_T_INPUT}"}
    eval_data: {folder: images}
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "model.onnx").write_bytes(_tiny_onnx())
    (tmp_path / "model.dlc").write_bytes(b"dlc")
    (tmp_path / "images").mkdir()
    return tmp_path


def _tiny_onnx() -> bytes:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    return bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())


def test_every_string_field_expands_variables(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {"HOST": "10.0.0.7", "USER": "qa", "ROOT": "/data/t", "INPUT": "images"}.items():
        monkeypatch.setenv(f"QC_T_{key}", value)
    (folder / "models.yaml").write_text(DEVICE_FILE)
    project = load_project(folder / "models.yaml")
    dev = project.devices[0]
    assert (dev.host, dev.user, dev.remote_root) == ("10.0.0.7", "qa", "/data/t/qc")
    assert dev.setup == "source /data/t/env.sh && echo ${HOME}"  # $${ is the escape for a literal ${
    assert dev.env == {"LD_LIBRARY_PATH": "/data/t/lib"}
    assert project.models[0].preprocess.input == "images"


def test_unset_variable_is_an_error_in_every_string_field(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("HOST", "USER", "ROOT", "INPUT"):
        monkeypatch.delenv(f"QC_T_{key}", raising=False)
    text = DEVICE_FILE.replace(
        "kind: snpe, dlc: model.dlc, devices: [dev]}", 'kind: ort-int8, float_nodes: ["${QC_T_NODE}"]}'
    )
    text = text.replace(
        "    eval_data: {folder: images}\n", "    eval_data: {folder: images}\n    calibration: {folder: images}\n"
    )
    (folder / "models.yaml").write_text(text)
    with pytest.raises(ConfigError) as info:
        load_project(folder / "models.yaml")
    where = {
        line.split(": ")[1]: line.split(": ")[0].rsplit("models.yaml:", 1)[1] for line in str(info.value).splitlines()
    }
    assert where == {
        "devices[0].host": "3:11",
        "devices[0].user": "4:11",
        "devices[0].remote_root": "6:18",
        "devices[0].setup": "7:12",
        "devices[0].env.LD_LIBRARY_PATH": "8:28",
        "models[0].target.float_nodes[0]": "12:44",
        "models[0].preprocess.input": "13:25",
    }
    assert "unknown variable ${QC_T_ROOT}" in str(info.value)


BOUNDS = """\
models:
  - name: m
    reference: model.onnx
    target: {kind: onnx, model: model.onnx}
    eval_data: {folder: images}
    preprocess: {scale: 0}
    thresholds:
      output_sqnr_db: -1000
      max_map_drop: 3
      layer_cosine: .nan
      baseline: {fps: 5}
      overrides: {"x*": {output_sqnr_db: 1e9}}
"""


def test_thresholds_are_bounded(folder: Path) -> None:
    (folder / "models.yaml").write_text(BOUNDS)
    with pytest.raises(ConfigError) as info:
        load_models(folder / "models.yaml")
    text = str(info.value)
    for field in (
        "preprocess.scale",
        "thresholds.output_sqnr_db",
        "thresholds.max_map_drop",
        "thresholds.layer_cosine",
        "thresholds.baseline.fps",
        "thresholds.overrides.x*.output_sqnr_db",
    ):
        assert f"models[0].{field}: " in text, field
    assert len(text.splitlines()) == 6
    (folder / "models.yaml").write_text(
        BOUNDS.replace("-1000", "-50")
        .replace("max_map_drop: 3", "max_map_drop: 1")
        .replace(".nan", "0.5")
        .replace("{fps: 5}", "{fps: 1}")
        .replace("1e9", "200")
        .replace("{scale: 0}", "{scale: 1}")
    )
    assert load_models(folder / "models.yaml")[0].thresholds.output_sqnr_db == -50


def test_binary_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "models.yaml").write_bytes(b"models:\n  - \xff\xfe\x00binary")
    with pytest.raises(ConfigError, match=r"models.yaml:2:5: not a UTF-8 text file \(byte 0xff at offset 12\)"):
        load_models(tmp_path / "models.yaml")
    (tmp_path / "models.yaml").write_bytes(b"models:\n  - a\x00b\n")
    with pytest.raises(ConfigError, match=r"models.yaml:2:6: invalid YAML: .*character 0x00"):
        load_models(tmp_path / "models.yaml")


def test_alias_bomb_is_refused(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 7)]
    (tmp_path / "models.yaml").write_text("\n".join([*lines, "models: *a6", ""]))  # 9**7 values from 400 bytes
    with pytest.raises(ConfigError, match=r"models.yaml:\d+:\d+: YAML aliases expand to more than 10000 values"):
        load_models(tmp_path / "models.yaml")
    (tmp_path / "models.yaml").write_text("models: &x [*x]\n")
    with pytest.raises(ConfigError, match=r"models.yaml:1:9: a YAML alias refers to a value that contains it"):
        load_models(tmp_path / "models.yaml")


def test_a_few_aliases_still_load(folder: Path) -> None:
    text = """\
common: &pre {size: [32, 32], mode: resize}
models:
  - {name: a, reference: model.onnx, target: {kind: onnx, model: model.onnx}, eval_data: {folder: images},
     preprocess: *pre}
  - {name: b, reference: model.onnx, target: {kind: onnx, model: model.onnx}, eval_data: {folder: images},
     preprocess: *pre}
"""
    (folder / "models.yaml").write_text(text.replace("common:", "x-common:"))
    with pytest.raises(ConfigError, match="x-common: unknown field"):
        load_models(folder / "models.yaml")  # the anchor's holder is still a checked field, as before
    (folder / "models.yaml").write_text(
        text.replace("common: &pre {size: [32, 32], mode: resize}\n", "").replace(
            "preprocess: *pre}", "preprocess: &pre {size: [32, 32], mode: resize}}", 1
        )
    )
    a, b = load_models(folder / "models.yaml")
    assert a.preprocess == b.preprocess


@pytest.mark.parametrize("content", [b"not a model\n", b"", _tiny_onnx()[:40]], ids=["text", "empty", "truncated"])
def test_validate_checks_every_onnx_file(folder: Path, content: bytes, capsys: pytest.CaptureFixture[str]) -> None:
    (folder / "bad.onnx").write_bytes(content)
    (folder / "models.yaml").write_text(
        "models:\n  - name: m\n    reference: bad.onnx\n    target: {kind: onnx, model: model.onnx}\n"
        "    eval_data: {folder: images}\n"
    )
    assert main(["validate", str(folder / "models.yaml")]) == 2
    err = capsys.readouterr().err
    assert "models.yaml:3:16: models[0].reference: not a valid ONNX model" in err
    assert str(folder / "bad.onnx") in err
    (folder / "bad.onnx").write_bytes(_tiny_onnx())
    assert main(["validate", str(folder / "models.yaml")]) == 0
    assert "m: target onnx" in capsys.readouterr().out
