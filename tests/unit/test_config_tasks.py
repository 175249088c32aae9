"""models.yaml with segmentation and classification tasks: bad fields at LINE:COL, task-aware baseline tolerances,
diagnosis metrics validated against the entry's task, history directions from every task's headlines."""

from __future__ import annotations

from pathlib import Path

import pytest

from qc.config import BaselineTolerances, ClassificationTask, SegmentationTask, load_models
from qc.errors import ConfigError
from qc.tasks import task_class

ENTRY = """\
models:
  - name: seg
    reference: model.onnx
    target: {{kind: onnx, model: model.onnx}}
    eval_data: {{folder: images}}
    task:
      kind: segmentation
{seg}
  - name: cls
    reference: model.onnx
    target: {{kind: onnx, model: model.onnx}}
    eval_data: {{folder: images}}
    task:
      kind: classification
{cls}
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "model.onnx").write_bytes(b"x")
    (tmp_path / "images").mkdir()
    (tmp_path / "labels.csv").write_text("file,label\na.png,1\n")
    return tmp_path


def _write(folder: Path, seg: str, cls: str, extra: str = "") -> Path:
    path = folder / "models.yaml"
    path.write_text(ENTRY.format(seg=seg, cls=cls) + extra)
    return path


def test_good_task_sections_load_typed(folder: Path) -> None:
    path = _write(
        folder,
        "      output: mask\n      activation: sigmoid\n      ground_truth: {folder: images}",
        "      labels: {csv: labels.csv}\n      top_k: 3",
    )
    seg, cls = load_models(path)
    assert isinstance(seg.task, SegmentationTask)
    assert seg.task.activation == "sigmoid"
    assert seg.task.ground_truth is not None
    assert isinstance(cls.task, ClassificationTask)
    assert cls.task.top_k == 3
    assert seg.applies("miou_drop")
    assert not seg.applies("top1_drop")
    assert not seg.applies("map_drop")
    assert cls.applies("top1_agreement")
    assert not cls.applies("mask_agreement")


def test_bad_task_fields_are_reported_at_their_line_and_column(folder: Path) -> None:
    path = _write(
        folder,
        "      activation: relu\n      threshold: 2\n      outputz: x",
        "      labels: {csv: missing.csv}\n      top_k: 0",
    )
    with pytest.raises(ConfigError) as err:
        load_models(path)
    text = str(err.value)
    assert "models.yaml:8:19: models[0].task.activation: Input should be 'none', 'sigmoid' or 'softmax'" in text
    assert "models.yaml:9:18: models[0].task.threshold: Input should be less than or equal to 1" in text
    assert "models.yaml:10:7: models[0].task.outputz: unknown field (allowed: kind, output, layout" in text
    assert "models.yaml:18:14: models[1].task.top_k: Input should be greater than 0" in text


def test_a_missing_label_file_is_reported_at_its_position(folder: Path) -> None:
    path = _write(folder, "      pictures: 1", "      labels: {csv: missing.csv}")
    with pytest.raises(ConfigError, match=r"models.yaml:15:21: models\[1\]\.task\.labels\.csv: file not found"):
        load_models(path)


def test_gates_of_another_task_and_foreign_diagnosis_metrics_are_refused(folder: Path) -> None:
    path = _write(folder, "      pictures: 1", "      top_k: 1", "    gates: [miou_drop]\n")
    with pytest.raises(ConfigError, match=r"gates \['miou_drop'\] need a task of kind \['segmentation'\]"):
        load_models(path)
    path = _write(folder, "      pictures: 1", "      top_k: 1", "    diagnose: {metric: ap}\n")
    with pytest.raises(ConfigError, match=r"diagnose.metric: 'ap' is not a metric of this entry's task; expected \["):
        load_models(path)
    path = _write(folder, "      pictures: 1", "      top_k: 1", "    diagnose: {metric: top1}\n")
    assert load_models(path)[1].diagnose.metric == "top1"


def test_baseline_tolerances_cover_the_task_headlines_and_take_overrides(folder: Path) -> None:
    seg = task_class("segmentation")
    table = BaselineTolerances().table(seg.headlines)
    assert table["target_miou"] == (0.01, False)
    assert table["agreement.mask"] == (0.01, False)
    assert "drop.miou" not in table  # trended, not gated, unless asked for
    assert table["target_fps"] == (0.2, True)
    assert BaselineTolerances(metrics={"drop.miou": 0.05}).table(seg.headlines)["drop.miou"] == (0.05, False)
    detection = BaselineTolerances(target_ap=0.03).table(task_class("detection").headlines)
    assert detection["target_ap"] == (0.03, False)
    extra = "    thresholds: {baseline: {metrics: {target_ap: 1}}}\n"
    path = _write(folder, "      pictures: 1", "      top_k: 1", extra)
    with pytest.raises(ConfigError, match=r"\['target_ap'\] are not headline metrics of this entry's task"):
        load_models(path)


def test_history_directions_come_from_every_task() -> None:
    from qc.gates import GATE_NAMES
    from qc.report.history import higher_is_better, regressions

    directions = higher_is_better()
    assert directions["drop.miou"] is False
    assert directions["agreement.top1"] is True
    assert directions["target_ap"] is True
    assert directions["ap_drop"] is False
    assert not set(directions) & set(GATE_NAMES)
    found, _ = regressions({"drop.top1": 0.10}, {"drop.top1": 0.02}, {"drop.top1": (0.05, False)})
    assert [r.metric for r in found] == ["drop.top1"]  # a drop that grows is a regression
