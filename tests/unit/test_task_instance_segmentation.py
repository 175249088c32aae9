"""The instance-segmentation task on synthetic YOLOv8-seg heads whose masks (hence mask AP) are known exactly."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qc.config import ModelSpec, load_models
from qc.data.images import ImageItem, ImageSet
from qc.data.preprocess import Transform
from qc.errors import ConfigError, DataError
from qc.eval.instance_masks import encode
from qc.gates import Evidence, check, gate_info
from qc.jsonio import dumps, loads
from qc.tasks import task_of
from qc.tasks.instance_segmentation import InstanceOutcome, InstanceSegmentationTask

INPUT = (64, 64)
L = 8.0
THRESHOLDS = np.linspace(0.5, 0.95, 10)
# detection A (class a): box x [12, 32) y [4, 36); prototype 0 keeps rows [8, 32), prototype 2 rows [16, 32).
# detection B (class b): box x [40, 60) y [36, 60); prototype 1 is the whole box.
A_BOX, B_BOX = [22.0, 20.0, 20.0, 32.0], [50.0, 48.0, 20.0, 24.0]
A_IOU = (16 * 20) / (24 * 20)  # the target's A mask (rows [16, 32)) inside the reference's (rows [8, 32))


def _protos() -> np.ndarray:
    p = np.full((1, 3, 16, 16), -L, np.float32)
    p[0, 0, 2:8] = L
    p[0, 1] = L
    p[0, 2, 4:8] = L
    return p


def _head(dets: list[tuple[list[float], int, float, list[float]]], anchors: int = 30) -> np.ndarray:
    rows = np.zeros((anchors, 4 + 2 + 3), np.float32)
    for i, (box, cls, score, coef) in enumerate(dets):
        rows[i, :4], rows[i, 4 + cls], rows[i, 6:] = box, score, coef
    return rows.T[None]


def _rect(x: tuple[int, int], y: tuple[int, int]) -> np.ndarray:
    m = np.zeros(INPUT, np.uint8)
    m[y[0] : y[1], x[0] : x[1]] = 1
    return m


def _coco(labelled: bool = True) -> dict[str, Any]:
    anns = []
    for iid in (1, 2):
        for k, (m, cat) in enumerate(((_rect((12, 32), (8, 32)), 1), (_rect((40, 60), (36, 60)), 2))):
            ys, xs = np.nonzero(m)
            ann: dict[str, Any] = {"id": 10 * iid + k, "image_id": iid, "category_id": cat, "area": float(m.sum()),
                                   "bbox": [float(xs.min()), float(ys.min()), float(np.ptp(xs) + 1),
                                            float(np.ptp(ys) + 1)], "iscrowd": 0}  # fmt: skip
            if labelled:
                ann["segmentation"] = encode(m)
            anns.append(ann)
    return {
        "images": [{"id": i, "file_name": f"{i}.png", "height": 64, "width": 64} for i in (1, 2)],
        "annotations": anns,
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
    }


def _spec(task: dict[str, Any] | None = None, **thresholds: float) -> ModelSpec:
    settings = {"kind": "instance-segmentation", "class_names": ["a", "b"], "num_coefficients": 3}
    return ModelSpec.model_validate(
        {
            "name": "seg",
            "reference": "m.onnx",
            "target": {"kind": "onnx", "model": "t.onnx"},
            "preprocess": {"size": list(INPUT)},
            "eval_data": {"folder": "images"},
            "task": {**settings, **(task or {})},
            "thresholds": thresholds,
        }
    )


def _outcome(task: InstanceSegmentationTask, coco: dict[str, Any] | None) -> InstanceOutcome:
    items = tuple(ImageItem(i, Path(f"{i}.png"), 64, 64) for i in (1, 2))
    collector = task.collector(INPUT, ImageSet(items, coco, "synthetic"))
    tf = Transform(1.0, 1.0, 0.0, 0.0, 64, 64)
    reference = _head([(A_BOX, 0, 0.9, [1, 0, 0]), (B_BOX, 1, 0.8, [0, 1, 0])])
    target = _head([(A_BOX, 0, 0.9, [0, 0, 1]), (B_BOX, 1, 0.8, [0, 1, 0])])  # A's mask loses its top third
    for iid in (1, 2):
        collector.add(iid, tf, {"head": reference, "protos": _protos()}, {"head": target, "protos": _protos()})
    return collector.finish()


@pytest.fixture(scope="module")
def labelled() -> tuple[InstanceSegmentationTask, InstanceOutcome]:
    task = InstanceSegmentationTask(_spec())
    return task, _outcome(task, _coco())


def test_mask_ap_of_both_sides_is_exact(labelled: tuple[InstanceSegmentationTask, InstanceOutcome]) -> None:
    _, o = labelled
    assert o.reference is not None
    assert o.target is not None
    assert o.reference.ap == pytest.approx(1.0)
    a_ap = float((THRESHOLDS <= A_IOU).sum()) / 10  # class a: a true positive up to IoU 2/3; class b: perfect
    assert o.target.ap == pytest.approx((a_ap + 1.0) / 2)
    assert o.target.per_class_ap == pytest.approx({"a": a_ap, "b": 1.0})
    assert o.drop() == pytest.approx(1.0 - (a_ap + 1.0) / 2)
    assert o.agreement.scores.ap == pytest.approx((a_ap + 1.0) / 2)  # the reference's masks are the labels here
    assert o.agreement.mean_iou == pytest.approx((A_IOU + 1.0) / 2)
    assert o.category_map == {0: 1, 1: 2}


def test_gates_pass_and_fail(labelled: tuple[InstanceSegmentationTask, InstanceOutcome]) -> None:
    _, o = labelled
    strict, loose = (
        _spec(max_mask_ap_drop=0.05, min_instance_mask_agreement=0.8),
        _spec(max_mask_ap_drop=0.35, min_instance_mask_agreement=0.65),
    )
    drop = check("mask_ap_drop", Evidence(strict, accuracy=o))
    assert not drop.passed
    assert "mask AP drop over budget" in drop.message
    assert "target mask AP 0.7000" in drop.message
    assert check("mask_ap_drop", Evidence(loose, accuracy=o)).passed
    agree = check("instance_mask_agreement", Evidence(strict, accuracy=o))
    assert not agree.passed
    assert "mask agreement AP 0.7000 < threshold 0.8000" in agree.message
    assert check("instance_mask_agreement", Evidence(loose, accuracy=o)).passed
    assert gate_info("mask_ap_drop").labels
    assert not gate_info("instance_mask_agreement").labels


def test_labelled_gate_without_labels_fails_clearly() -> None:
    task = InstanceSegmentationTask(_spec())
    unlabelled = _outcome(task, None)
    verdict = check("mask_ap_drop", Evidence(_spec(), accuracy=unlabelled))
    assert not verdict.passed
    assert "no labels" in verdict.message
    assert check("instance_mask_agreement", Evidence(_spec(min_instance_mask_agreement=0.6), accuracy=unlabelled))
    boxes_only = _outcome(task, _coco(labelled=False))
    verdict = check("mask_ap_drop", Evidence(_spec(), accuracy=boxes_only))
    assert not verdict.passed
    assert "no (non-crowd) segmentation" in verdict.message


def test_empty_agreement_fails_instead_of_passing() -> None:
    task = InstanceSegmentationTask(_spec({"deploy_threshold": 0.95}))
    o = _outcome(task, None)  # no reference instance reaches 0.95
    verdict = check("instance_mask_agreement", Evidence(_spec(), accuracy=o))
    assert not verdict.passed
    assert "undefined" in verdict.message
    assert task.score(o, "mask_agreement", "target") == 0.0
    assert math.isnan(task.calibration_metrics(o)["mask_agreement_ap"])


def test_headlines_metrics_score(labelled: tuple[InstanceSegmentationTask, InstanceOutcome]) -> None:
    task, o = labelled
    metrics = task.metrics(o)
    assert {h.name for h in task.headlines} <= set(metrics)
    assert task.score(o, "mask_ap", "reference") == pytest.approx(1.0)
    assert task.score(o, "mask_agreement", "reference") == 1.0
    assert task.score(o, "mask_agreement", "target") == pytest.approx(0.7)
    assert set(task.diagnosis_metrics) == {"mask_ap", "mask_agreement"}
    assert task.calibration_metrics(o) == pytest.approx({"drop_mask_ap": 0.3, "mask_agreement_ap": 0.7})
    with pytest.raises(ConfigError, match="not an instance-segmentation metric"):
        task.score(o, "miou", "target")


def test_save_load_and_report(labelled: tuple[InstanceSegmentationTask, InstanceOutcome], tmp_path: Path) -> None:
    task, o = labelled
    data = task.save(o, tmp_path)
    loaded = task.load(loads(dumps(data)), tmp_path)
    assert loaded is not None
    assert dumps(loaded.summary()) == dumps(o.summary())
    assert loaded.target_instances == o.target_instances
    files = task.write_report(o, ImageSet((), None, ""), tmp_path / "report")
    assert {f.name for f in files} == {"accuracy.json", "masks_reference.json", "masks_target.json"}
    summary = loads((tmp_path / "report" / "accuracy.json").read_text())
    assert summary["target.mask_ap"] == pytest.approx(0.7)
    assert len(loads((tmp_path / "report" / "masks_target.json").read_text())) == 4


def test_outputs_auto_by_rank_and_errors() -> None:
    task = task_of(_spec())
    assert isinstance(task, InstanceSegmentationTask)
    assert task.gates == ("mask_ap_drop", "instance_mask_agreement")
    images = ImageSet((ImageItem(1, Path("1.png"), 64, 64),), None, "x")
    tf = Transform(1.0, 1.0, 0.0, 0.0, 64, 64)
    head = _head([(A_BOX, 0, 0.9, [1, 0, 0])])
    with pytest.raises(DataError, match="cannot tell the YOLOv8-seg head"):
        task.collector(INPUT, images).add(1, tf, {"a": head, "b": head}, {"a": head, "b": head})
    named = InstanceSegmentationTask(_spec({"outputs": ["out0", "protos"]}))
    with pytest.raises(DataError, match=r"task.outputs \['out0'\] are not outputs of the reference"):
        named.collector(INPUT, images).add(1, tf, {"head": head, "protos": _protos()}, {})


def test_config_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "models.yaml"
    path.write_text(
        "models:\n  - name: seg\n    reference: m.onnx\n    target: {kind: onnx, model: m.onnx}\n"
        "    eval_data: {folder: .}\n    task:\n      kind: instance-segmentation\n      class_names: [a]\n"
        "      outputs: [head]\n      mask_threshold: 1.5\n      decoder: yolov5-seg\n"
    )
    (tmp_path / "m.onnx").write_bytes(b"x")
    with pytest.raises(ConfigError) as info:
        load_models(path)
    text = str(info.value)
    assert f"{path}:9:16: models[0].task.outputs: give two outputs [head, prototypes]" in text, text
    assert f"{path}:10:23: models[0].task.mask_threshold:" in text, text
    assert f"{path}:11:16: models[0].task.decoder:" in text, text
    path.write_text(path.read_text().replace("instance-segmentation", "pose-estimation"))
    with pytest.raises(ConfigError, match="unknown task kind 'pose-estimation'; expected one of"):
        load_models(path)


def test_labels_missing_tells_calibrate_when_the_labels_hold_no_masks() -> None:
    task = InstanceSegmentationTask(_spec())
    items = (ImageItem(1, Path("1.png"), 64, 64),)
    assert task.labels_missing(ImageSet(items, _coco(), "a.json")) is None
    assert task.labels_missing(ImageSet(items, None, "folder")) is None
    reason = task.labels_missing(ImageSet(items, _coco(labelled=False), "boxes.json"))
    assert reason is not None
    assert "boxes.json" in reason
