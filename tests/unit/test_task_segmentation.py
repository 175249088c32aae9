"""The segmentation task on synthetic outputs with exactly known mIoU, its gates, cache round trip and artifacts."""

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
from qc.tasks.segmentation import Segmentation, SegmentationOutcome

H = W = 4
IDENTITY = Transform(1.0, 1.0, 0.0, 0.0, W, H)
# ground truth: columns 0-1 foreground; reference = ground truth; target: columns 0-2 foreground
GT = np.zeros((H, W), np.int64)
GT[:, :2] = 1
REF = np.where(GT == 1, 0.9, 0.1).astype(np.float32)[None, None]
TGT = REF.copy()
TGT[..., 2] = 0.8
# target vs truth: foreground IoU 8/12, background IoU 4/8 -> mIoU 7/12; reference: 1.0; drop 5/12
# target vs reference: foreground IoU 8/12 = the mask agreement


def _spec(tmp_path: Path, labelled: bool = True, thresholds: dict[str, float] | None = None) -> ModelSpec:
    task: dict[str, Any] = {"kind": "segmentation", "output": "mask", "class_names": ["bg", "fg"]}
    if labelled:
        task["ground_truth"] = {"folder": str(tmp_path)}
    return ModelSpec.model_validate(
        {
            "name": "seg",
            "reference": "r.onnx",
            "target": {"kind": "onnx", "model": "t.onnx"},
            "eval_data": {"folder": str(tmp_path)},
            "task": task,
            "thresholds": thresholds or {},
        }
    )


def _images(tmp_path: Path, n: int = 2) -> ImageSet:
    from PIL import Image

    items = []
    for i in range(n):
        path = tmp_path / f"im{i}.png"
        Image.fromarray(np.full((H, W, 3), 60 * i, np.uint8)).save(path)
        np.save(tmp_path / f"im{i}.npy", GT)
        items.append(ImageItem(i, path))
    return ImageSet(tuple(items))


def _outcome(tmp_path: Path, spec: ModelSpec, n: int = 2) -> SegmentationOutcome:
    images = _images(tmp_path, n)
    collector = task_of(spec).collector((H, W), images)
    for item in images.items:
        collector.add(item.image_id, IDENTITY, {"mask": REF, "other": REF}, {"mask": TGT, "other": REF})
    outcome = collector.finish()
    assert isinstance(outcome, SegmentationOutcome)
    return outcome


def test_the_registry_builds_it_and_its_metrics_are_exact(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    assert task_class("segmentation") is Segmentation
    task = task_of(spec)
    outcome = _outcome(tmp_path, spec)
    m = task.metrics(outcome)
    assert m["reference_miou"] == pytest.approx(1.0)
    assert m["target_miou"] == pytest.approx(7 / 12)
    assert m["drop.miou"] == pytest.approx(5 / 12)
    assert m["agreement.mask"] == pytest.approx(8 / 12)
    assert task.score(outcome, "miou", "target") == pytest.approx(7 / 12)
    assert task.score(outcome, "mask_agreement", "reference") == 1.0
    assert task.calibration_metrics(outcome)["miou_drop"] == pytest.approx(5 / 12)
    assert {h.name for h in task.headlines} <= set(m)
    assert not {h.name for h in task.headlines} & set(gates.GATE_NAMES)  # summary.csv: one column per gate
    assert [w.file_name for w in outcome.worst] == ["im0.png", "im1.png"]  # equal agreement: first seen first


@pytest.mark.parametrize(
    ("thresholds", "verdicts"),
    [
        ({"max_miou_drop": 0.42, "min_mask_agreement": 0.66}, {"miou_drop": True, "mask_agreement": True}),
        ({"max_miou_drop": 0.41, "min_mask_agreement": 0.67}, {"miou_drop": False, "mask_agreement": False}),
    ],
)
def test_gates_pass_and_fail_on_their_thresholds(
    tmp_path: Path, thresholds: dict[str, float], verdicts: dict[str, bool]
) -> None:
    spec = _spec(tmp_path, thresholds=thresholds)
    outcome = _outcome(tmp_path, spec)
    for gate, passed in verdicts.items():
        result = gates.check(gate, gates.Evidence(spec, accuracy=outcome))
        assert result.passed is passed, result.message
    drop = gates.check("miou_drop", gates.Evidence(spec, accuracy=outcome))
    assert "reference mIoU 1.0000, target mIoU 0.5833, drop 0.4167" in drop.message
    assert drop.metrics["drop.miou"] == pytest.approx(5 / 12)


def test_the_labelled_gate_without_ground_truth_fails_and_says_why(tmp_path: Path) -> None:
    spec = _spec(tmp_path, labelled=False)
    outcome = _outcome(tmp_path, spec)
    result = gates.check("miou_drop", gates.Evidence(spec, accuracy=outcome))
    assert not result.passed
    assert "no ground-truth masks" in result.message
    assert "task.ground_truth" in result.message
    assert gates.check("mask_agreement", gates.Evidence(spec, accuracy=outcome)).passed is False  # 0.667 < 0.9
    assert "reference_miou" not in task_of(spec).metrics(outcome)


def test_cache_round_trip_and_report_artifacts(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    task = task_of(spec)
    outcome = _outcome(tmp_path, spec)
    cache = tmp_path / "cache"
    cache.mkdir()
    data = json.loads(json.dumps(task.save(outcome, cache)))
    again = task.load(data, cache)
    assert again is not None
    assert task.metrics(again) == task.metrics(outcome)
    assert np.array_equal(again.worst[0].target, outcome.worst[0].target)
    report = tmp_path / "report"
    files = task.write_report(outcome, _images(tmp_path), report)
    assert {p.name for p in files} >= {"accuracy.json", "per_class_iou.csv", "im0.png", "im1.png"}
    summary = json.loads((report / "accuracy.json").read_text())
    assert summary["drop.miou"] == pytest.approx(5 / 12)
    assert summary["target.per_class_iou"] == {"bg": pytest.approx(0.5), "fg": pytest.approx(2 / 3)}
    with (report / "per_class_iou.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["class"] for r in rows] == ["bg", "fg"]
    assert float(rows[0]["drop"]) == pytest.approx(0.5)


def test_a_missing_output_is_named(tmp_path: Path) -> None:
    from qc.errors import DataError

    spec = _spec(tmp_path)
    collector = task_of(spec).collector((H, W), _images(tmp_path, 1))
    with pytest.raises(DataError, match=r"task\.output 'mask' is not an output of the reference"):
        collector.add(0, IDENTITY, {"other": REF}, {"other": REF})


def test_crops_feed_one_input_per_person_box_and_score_inside_each_crop(tmp_path: Path) -> None:
    """task.crops (a top-down model's mask): one input per person box, crowds and other classes left out; each
    crop's mask lands on its image through the crop's transform, and pixels outside the crop are not scored."""
    from PIL import Image

    from qc.data.images import read_rgb
    from qc.eval.keypoints import person_crop
    from qc.pipeline import inputs_key

    Image.fromarray(np.full((40, 60, 3), 90, np.uint8)).save(tmp_path / "a.png")
    coco = {
        "images": [{"id": 7, "file_name": "a.png", "width": 60, "height": 40}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 1, "bbox": [4, 4, 16, 16], "area": 256, "iscrowd": 0},
            {"id": 2, "image_id": 7, "category_id": 1, "bbox": [30, 10, 20, 20], "area": 400, "iscrowd": 0},
            {"id": 3, "image_id": 7, "category_id": 1, "bbox": [0, 0, 60, 40], "area": 2400, "iscrowd": 1},
            {"id": 4, "image_id": 7, "category_id": 3, "bbox": [0, 0, 9, 9], "area": 81, "iscrowd": 0},
        ],
        "categories": [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}],
    }
    images = ImageSet((ImageItem(7, tmp_path / "a.png", 60, 40),), coco, "synthetic")
    spec = ModelSpec.model_validate(
        {
            "name": "mask",
            "reference": "r.onnx",
            "target": {"kind": "onnx", "model": "t.onnx"},
            "eval_data": {"folder": str(tmp_path)},
            "preprocess": {"size": [8, 8]},
            "task": {
                "kind": "segmentation",
                "output": "m",
                "activation": "sigmoid",
                "crops": {"crop": {"box_scale": 1.0}},
            },
        }
    )
    task = task_of(spec)
    assert isinstance(task, Segmentation)
    assert inputs_key(spec) == {"preprocess": spec.preprocess, "task_inputs": {"crops": spec.task.crops}}  # type: ignore[union-attr]
    inputs = task.inputs(images, "x", (8, 8))
    assert inputs is not None
    assert inputs.count == 2
    feeds = list(inputs.feeds)
    assert [i for i, _, _ in feeds] == [0, 1]
    expected = person_crop(read_rgb(tmp_path / "a.png"), (4, 4, 20, 20), (8, 8), box_scale=1.0)[1]
    assert feeds[0][2] == expected
    # crop 0: both sides foreground everywhere; crop 1: the target loses the left half of its crop
    collector = task.collector((8, 8), images)
    ones = np.full((1, 1, 8, 8), 5.0, np.float32)
    half = ones.copy()
    half[..., :4] = -5.0
    collector.add(0, feeds[0][2], {"m": ones}, {"m": ones})
    collector.add(1, feeds[1][2], {"m": ones}, {"m": half})
    result = collector.finish().result
    assert result.images == 2
    assert result.agreement_foreground_iou == pytest.approx((16 * 16 + 20 * 10) / (16 * 16 + 20 * 20))
    assert result.agreement_pixel_accuracy == pytest.approx((16 * 16 + 20 * 10) / (16 * 16 + 20 * 20))
    # a task without crops feeds whole images and keeps its key: exactly the preprocessing
    plain = spec.model_copy(update={"task": spec.task.model_copy(update={"crops": None})})  # type: ignore[union-attr]
    assert inputs_key(plain) == plain.preprocess
    assert task_of(plain).inputs(images, "x", (8, 8)) is None  # type: ignore[attr-defined]
