"""Classification labels, top-k, agreement and KL divergence, accumulated image by image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qc.errors import DataError, MetricError
from qc.eval.classification import (
    ClassificationAccumulator,
    label_from_name,
    labels_from_csv,
    probabilities,
    topk,
)


def test_labels_from_csv_indices_and_names(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text("file,label\nimgs/a.jpg,3\nb.png,cat\n")
    assert labels_from_csv(path, ["dog", "cat"]) == {"a.jpg": 3, "b.png": 1}
    path.write_text("file,label\na.jpg,zebra\n")
    with pytest.raises(DataError, match=r"labels.csv:2: label 'zebra'"):
        labels_from_csv(path, ["dog"])
    path.write_text("name,class\na.jpg,1\n")
    with pytest.raises(DataError, match="columns 'file' and 'label'"):
        labels_from_csv(path)
    path.write_text("file,label\na.jpg,1\na.jpg,2\n")
    with pytest.raises(DataError, match="labelled twice"):
        labels_from_csv(path)


def test_label_from_name() -> None:
    assert label_from_name("data/imagenet_07_609.jpg", r"_(\d+)\.\w+$") == 609
    assert label_from_name("rot_270_x.png", r"rot_(?P<label>\d+)_") == 270
    with pytest.raises(DataError, match="does not match"):
        label_from_name("x.jpg", r"_(\d+)\.jpg$")
    with pytest.raises(DataError, match="must capture a class index"):
        label_from_name("a_b.jpg", r"_(\w)\.jpg$")


def test_probabilities_topk_and_errors() -> None:
    p = probabilities(np.array([[1.0, 2.0, 3.0]]), "softmax")
    assert p.sum() == pytest.approx(1.0)
    assert p.argmax() == 2
    assert probabilities(np.array([0.2, 0.6, 0.2]), "none").tolist() == pytest.approx([0.2, 0.6, 0.2])
    with pytest.raises(DataError, match="set activation: softmax"):
        probabilities(np.array([-3.0, 1.0]), "none")
    with pytest.raises(MetricError, match="NaN"):
        probabilities(np.array([np.nan, 1.0]), "softmax")
    assert topk(np.array([0.1, 0.5, 0.5, 0.3]), 3).tolist() == [1, 2, 3]


def test_accumulator_counts_agreement_and_kl() -> None:
    acc = ClassificationAccumulator(activation="none", top=2)
    acc.add("a", np.array([0.7, 0.2, 0.1]), np.array([0.6, 0.3, 0.1]), label=0)  # both right
    acc.add("b", np.array([0.5, 0.4, 0.1]), np.array([0.3, 0.6, 0.1]), label=0)  # target top-2 only
    acc.add("c", np.array([0.2, 0.3, 0.5]), np.array([0.2, 0.3, 0.5]))  # no label
    res = acc.result()
    assert res.images == 3
    assert res.labelled == 2
    assert res.reference_top1 == pytest.approx(1.0)
    assert res.target_top1 == pytest.approx(0.5)
    assert res.target_top5 == pytest.approx(1.0)
    assert res.top1_drop == pytest.approx(0.5)
    assert res.top1_agreement == pytest.approx(2 / 3)
    kl_a = 0.7 * np.log(0.7 / 0.6) + 0.2 * np.log(0.2 / 0.3)
    kl_b = 0.5 * np.log(0.5 / 0.3) + 0.4 * np.log(0.4 / 0.6)
    assert res.mean_kl == pytest.approx((kl_a + kl_b) / 3, rel=1e-6)
    assert res.disagreements == ["b"]
    assert res.metrics()["top1_drop"] == pytest.approx(0.5)
    with pytest.raises(DataError, match="out of range"):
        acc.add("d", np.array([0.5, 0.3, 0.2]), np.array([0.5, 0.3, 0.2]), label=5)
    with pytest.raises(DataError, match="earlier images had 3"):
        acc.add("e", np.array([0.5, 0.5]), np.array([0.5, 0.5]), label=0)


def test_label_free_result_and_empty() -> None:
    acc = ClassificationAccumulator()
    acc.add("a", np.array([1.0, 0.0]), np.array([0.0, 1.0]))
    res = acc.result()
    assert res.reference_top1 is None
    assert res.top1_agreement == 0.0
    with pytest.raises(MetricError, match="needs labels"):
        _ = res.top1_drop
    with pytest.raises(MetricError):
        ClassificationAccumulator().result()


def test_settings_label_sources(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from qc.eval.classification import ClassificationSettings

    csv_path = tmp_path / "l.csv"
    csv_path.write_text("file,label\na.png,2\n")
    by_csv = ClassificationSettings.model_validate({"labels": {"csv": str(csv_path)}}).label_of()
    assert by_csv is not None
    assert by_csv("dir/a.png") == 2
    with pytest.raises(DataError, match=r"no label for image b\.png"):
        by_csv("b.png")
    by_name = ClassificationSettings.model_validate({"labels": {"pattern": r"_(\d+)\.jpg$"}}).label_of()
    assert by_name is not None
    assert by_name("x_17.jpg") == 17
    assert ClassificationSettings().label_of() is None
    with pytest.raises(ValidationError, match="capturing group"):
        ClassificationSettings.model_validate({"labels": {"pattern": r"\d+"}})
    with pytest.raises(ValidationError, match="not a regular expression"):
        ClassificationSettings.model_validate({"labels": {"pattern": "("}})


def test_evaluate_classification_with_file_name_labels() -> None:
    from qc.eval.classification import ClassificationSettings, evaluate_classification

    settings = ClassificationSettings.model_validate({"labels": {"pattern": r"_(\d+)\.png$"}, "top_k": 1})
    good, bad = np.array([0.0, 5.0, 0.0]), np.array([5.0, 0.0, 0.0])
    res = evaluate_classification(settings, [("x_1.png", good, good), ("y_1.png", good, bad)])
    assert res.reference_top1 == pytest.approx(1.0)
    assert res.target_top1 == pytest.approx(0.5)
    assert res.top1_agreement == pytest.approx(0.5)
