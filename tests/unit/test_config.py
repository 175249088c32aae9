"""models.yaml loading: typed entries, every error at once with file:LINE:COL, thresholds and expectations."""

from __future__ import annotations

from pathlib import Path

import pytest

from qc.config import OnnxTarget, OrtInt8Target, Thresholds, ThresholdValues, load_models
from qc.errors import ConfigError

GOOD = """\
models:
  - name: m1
    reference: model.onnx
    target: {kind: ort-int8, activation_bitwidth: 16, float_downstream_of: [head]}
    eval_data: {folder: images}
    calibration: {folder: images, limit: 3}
    outputs:
      out: {slices: {boxes: {start: 0, stop: 4}, scores: {start: 4}}}
    thresholds: {layer_cosine: 0.9, overrides: {"out[scores]": {output_cosine: 0.5}, "out*": {output_cosine: 0.7}}}
    expect: {output_cosine: fail}
  - name: m2
    reference: ${QC_TEST_VAR}/model.onnx
    target: {kind: onnx, model: model.onnx}
    eval_data: {coco: {annotations: ann.json, images: images}}
"""


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "model.onnx").write_bytes(b"x")
    (tmp_path / "ann.json").write_text("{}")
    (tmp_path / "images").mkdir()
    monkeypatch.setenv("QC_TEST_VAR", str(tmp_path))
    return tmp_path


def test_good_file_loads_typed_entries(folder: Path) -> None:
    (folder / "models.yaml").write_text(GOOD)
    m1, m2 = load_models(folder / "models.yaml")
    assert isinstance(m1.target, OrtInt8Target)
    assert m1.target.activation_bitwidth == 16
    assert m1.reference == folder / "model.onnx"
    assert m1.calibration is not None
    assert m1.calibration.limit == 3
    assert m1.outputs["out"].slices["scores"].stop is None
    assert isinstance(m2.target, OnnxTarget)
    assert m2.reference == folder / "model.onnx"
    assert m1.expected("output_cosine") == "fail"
    assert m1.expected("layer_cosine") == "pass"
    assert m2.expected("layer_cosine") == "pass"


def test_threshold_overrides_first_match_wins() -> None:
    t = Thresholds(
        layer_cosine=0.9,
        overrides={"out[scores]": ThresholdValues(output_cosine=0.5), "out*": ThresholdValues(output_cosine=0.7)},
    )
    assert t.for_tensor("out[scores]").output_cosine == 0.5
    assert t.for_tensor("out[boxes]").output_cosine == 0.7
    assert t.for_tensor("other").output_cosine == 0.99
    assert t.for_tensor("out[scores]").layer_cosine == 0.9


BAD = """\
models:
  - name: bad name
    reference: missing.onnx
    target:
      kind: ort-int8
      activation_bitwidth: 12
      colour: red
    preprocess: {size: [416, -1], layout: NCWH}
    eval_data: {folder: images}
    calibration: {folder: images}
  - name: m2
    reference: ${QC_NO_SUCH_VAR}/x.onnx
    target: {kind: snpe-typo}
    eval_data: {folder: images, coco: {annotations: ann.json, images: images}}
    thresholds: {layer_cosine: 2, overrides: {"x*": {foo: 1}}}
    expect: {bogus: fail}
  - name: m3
    target: {kind: ort-int8}
    eval_data: {folder: images}
"""


def test_bad_file_reports_every_error_with_line_and_column(folder: Path) -> None:
    (folder / "models.yaml").write_text(BAD)
    with pytest.raises(ConfigError) as info:
        load_models(folder / "models.yaml")
    lines = str(info.value).splitlines()
    where = {line.split(": ")[1]: line.split(": ")[0].rsplit("models.yaml:", 1)[1] for line in lines}
    assert where["models[0].name"] == "2:11"
    assert where["models[0].target.activation_bitwidth"] == "6:28"
    assert where["models[0].target.colour"] == "7:7"  # the unknown key itself
    assert where["models[0].preprocess.size"] == "8:24"
    assert where["models[0].preprocess.layout"] == "8:43"
    assert where["models[1].reference"] == "12:16"
    assert where["models[1].target"] == "13:13"
    assert where["models[1].eval_data"] == "14:16"
    assert where["models[1].thresholds.layer_cosine"] == "15:32"
    assert where["models[1].thresholds.overrides.x*.foo"] == "15:54"
    assert where["models[1].expect"] == "16:13"
    assert where["models[2].reference"] == "17:5"  # missing field: the entry's position
    text = str(info.value)
    assert "unknown target kind 'snpe-typo'" in text
    assert "${QC_NO_SUCH_VAR}" in text
    assert "required field is missing" in text
    assert len(lines) == 12


def test_missing_files_are_reported_with_positions(folder: Path) -> None:
    (folder / "models.yaml").write_text(GOOD.replace("reference: model.onnx", "reference: gone.onnx"))
    with pytest.raises(ConfigError, match=r"models.yaml:3:16: models\[0\].reference: file not found: .*gone.onnx"):
        load_models(folder / "models.yaml")


def test_yaml_syntax_error_and_duplicate_keys(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("models:\n  - name: [unclosed\n")
    with pytest.raises(ConfigError, match=r"a.yaml:\d+:\d+: invalid YAML"):
        load_models(tmp_path / "a.yaml")
    (tmp_path / "b.yaml").write_text("models:\n  - name: a\n    name: b\n")
    with pytest.raises(ConfigError, match=r"b.yaml:3:5: name: duplicate key"):
        load_models(tmp_path / "b.yaml")


def test_duplicate_model_names_and_empty_file(folder: Path) -> None:
    doubled = GOOD.replace("name: m2", "name: m1")
    (folder / "models.yaml").write_text(doubled)
    with pytest.raises(ConfigError) as err:
        load_models(folder / "models.yaml")
    line, text = [(n, x) for n, x in enumerate(doubled.splitlines(), 1) if "name: m1" in x][1]
    col = text.index("m1") + 1
    assert f"models.yaml:{line}:{col}: models[1].name: model name 'm1' is used twice (first at models[0])" in str(
        err.value
    )
    (folder / "empty.yaml").write_text("")
    with pytest.raises(ConfigError, match=r"empty.yaml:1:1"):
        load_models(folder / "empty.yaml")


def test_duplicate_device_names_are_reported_where_they_stand(folder: Path) -> None:
    devices = "devices:\n  - {name: lab, local: true}\n  - {name: lab, local: true}\n"
    (folder / "models.yaml").write_text(devices + GOOD)
    with pytest.raises(ConfigError) as err:
        load_models(folder / "models.yaml")
    assert "models.yaml:3:12: devices[1].name: device name 'lab' is used twice (first at devices[0])" in str(err.value)
