"""The classification task on synthetic logits with exactly known top-1 / top-5, its gates, cache and artifacts."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qc import gates
from qc.config import ModelSpec
from qc.data.images import ImageItem, ImageSet
from qc.data.preprocess import Transform
from qc.tasks import task_class, task_of
from qc.tasks.classification import Classification, ClassificationOutcome

IDENTITY = Transform(1.0, 1.0, 0.0, 0.0, 8, 8)
FILES = ["a_0.png", "b_1.png", "c_2.png"]  # labels 0, 1, 2 in the file name
# reference arg-max 0, 1, 3 -> top-1 2/3; target arg-max 0, 2, 3 -> top-1 1/3; they agree on 2 of 3 images
REF_TOP = [0, 1, 3]
TGT_TOP = [0, 2, 3]


def _logits(top: int, second: int) -> np.ndarray:
    x = np.zeros((1, 6), np.float32)
    x[0, top] = 4.0
    x[0, second] = 2.0
    return x


def _spec(labelled: bool = True, thresholds: dict[str, float] | None = None) -> ModelSpec:
    task: dict[str, Any] = {"kind": "classification", "activation": "softmax", "top_k": 2}
    if labelled:
        task["labels"] = {"pattern": r"_(\d+)\.png$"}
    return ModelSpec.model_validate(
        {
            "name": "cls",
            "reference": "r.onnx",
            "target": {"kind": "onnx", "model": "t.onnx"},
            "eval_data": {"folder": "."},
            "task": task,
            "thresholds": thresholds or {},
        }
    )


def _outcome(spec: ModelSpec) -> ClassificationOutcome:
    images = ImageSet(tuple(ImageItem(i, Path(name)) for i, name in enumerate(FILES)))
    collector = task_of(spec).collector((8, 8), images)
    for i, (r, t) in enumerate(zip(REF_TOP, TGT_TOP, strict=True)):
        # image 2 (label 2): the reference's second choice is the label -> a top-2 hit; the target's is not
        second_ref, second_tgt = (2, 5) if i == 2 else (5, 5)
        collector.add(i, IDENTITY, {"scores": _logits(r, second_ref)}, {"scores": _logits(t, second_tgt)})
    outcome = collector.finish()
    assert isinstance(outcome, ClassificationOutcome)
    return outcome


def test_the_registry_builds_it_and_its_metrics_are_exact() -> None:
    spec = _spec()
    assert task_class("classification") is Classification
    task = task_of(spec)
    outcome = _outcome(spec)
    m = task.metrics(outcome)
    assert m["reference_top1"] == pytest.approx(2 / 3)
    assert m["target_top1"] == pytest.approx(1 / 3)
    assert m["drop.top1"] == pytest.approx(1 / 3)
    assert m["reference_top5"] == pytest.approx(1.0)  # top_k 2: image 2's label is the reference's second choice
    assert m["target_top5"] == pytest.approx(1 / 3)
    assert m["agreement.top1"] == pytest.approx(2 / 3)
    assert m["mean_kl"] > 0
    assert task.score(outcome, "top1", "reference") == pytest.approx(2 / 3)
    assert task.score(outcome, "top1_agreement", "reference") == 1.0
    assert task.score(outcome, "top1_agreement", "target") == pytest.approx(2 / 3)
    assert {h.name for h in task.headlines} <= set(m)
    assert not {h.name for h in task.headlines} & set(gates.GATE_NAMES)


@pytest.mark.parametrize(
    ("thresholds", "verdicts"),
    [
        ({"max_top1_drop": 0.34, "min_top1_agreement": 0.66}, {"top1_drop": True, "top1_agreement": True}),
        ({"max_top1_drop": 0.33, "min_top1_agreement": 0.67}, {"top1_drop": False, "top1_agreement": False}),
    ],
)
def test_gates_pass_and_fail_on_their_thresholds(thresholds: dict[str, float], verdicts: dict[str, bool]) -> None:
    spec = _spec(thresholds=thresholds)
    outcome = _outcome(spec)
    for gate, passed in verdicts.items():
        result = gates.check(gate, gates.Evidence(spec, accuracy=outcome))
        assert result.passed is passed, result.message
    agreement = gates.check("top1_agreement", gates.Evidence(spec, accuracy=outcome))
    assert "top-1 agreement 0.6667 (2/3 images)" in agreement.message


def test_the_labelled_gate_without_labels_fails_and_says_why() -> None:
    spec = _spec(labelled=False)
    outcome = _outcome(spec)
    result = gates.check("top1_drop", gates.Evidence(spec, accuracy=outcome))
    assert not result.passed
    assert "no labels" in result.message
    assert "task.labels" in result.message
    assert "reference_top1" not in task_of(spec).metrics(outcome)


def test_cache_round_trip_and_the_predictions_file(tmp_path: Path) -> None:
    spec = _spec()
    task = task_of(spec)
    outcome = _outcome(spec)
    again = task.load(json.loads(json.dumps(task.save(outcome, tmp_path))), tmp_path)
    assert again is not None
    assert task.metrics(again) == task.metrics(outcome)
    files = task.write_report(outcome, ImageSet(()), tmp_path / "report")
    assert {p.name for p in files} == {"accuracy.json", "predictions.csv"}
    with (tmp_path / "report" / "predictions.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["file"], r["reference_top1"], r["target_top1"], r["agree"]) for r in rows] == [
        ("a_0.png", "0", "0", "true"),
        ("b_1.png", "1", "2", "false"),
        ("c_2.png", "3", "3", "true"),
    ]
    assert [r["target_correct"] for r in rows] == ["true", "false", "false"]
    summary = json.loads((tmp_path / "report" / "accuracy.json").read_text())
    assert summary["drop.top1"] == pytest.approx(1 / 3)
