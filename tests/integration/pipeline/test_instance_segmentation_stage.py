"""The instance-segmentation task through the pipeline: a YOLOv8-seg shaped model with known masks, labelled."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from qc.cache import StageCache
from qc.config import load_models
from qc.eval.instance_masks import encode
from qc.gates import Evidence, check
from qc.pipeline import Context, ModelStages
from qc.tasks.instance_segmentation import InstanceOutcome
from tests.models import models_yaml, tiny_yolov8_seg, write_images

L = 8.0


def _model(path: Path) -> None:
    """Two detections on a 64 x 64 input: class a, box x [12, 32) y [4, 36), mask rows [8, 32) (prototype 0);
    class b, box x [40, 60) y [36, 60), the whole box (prototype 1)."""
    protos = np.full((1, 2, 16, 16), -L, np.float32)
    protos[0, 0, 2:8] = L
    protos[0, 1] = L
    rows = np.zeros((20, 4 + 2 + 2), np.float32)
    rows[0, :4], rows[0, 4], rows[0, 6:] = [22, 20, 20, 32], 0.9, [1, 0]
    rows[1, :4], rows[1, 5], rows[1, 6:] = [50, 48, 20, 24], 0.8, [0, 1]
    tiny_yolov8_seg(path, rows.T[None], protos)


def _labels(folder: Path) -> None:
    anns = []
    for iid in range(2):
        for k, ((x1, x2), (y1, y2), cat) in enumerate((((12, 32), (8, 32), 1), ((40, 60), (36, 60), 2))):
            m = np.zeros((64, 64), np.uint8)
            m[y1:y2, x1:x2] = 1
            anns.append({"id": 10 * iid + k + 1, "image_id": iid, "category_id": cat, "segmentation": encode(m),
                         "area": float(m.sum()), "bbox": [x1, y1, x2 - x1, y2 - y1], "iscrowd": 0})  # fmt: skip
    coco = {
        "images": [{"id": i, "file_name": f"img_{i:03d}.png", "width": 64, "height": 64} for i in range(2)],
        "annotations": anns,
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
    }
    (folder / "eval.json").write_text(json.dumps(coco))


def test_known_masks_score_perfectly_through_the_one_pass(tmp_path: Path) -> None:
    _model(tmp_path / "seg.onnx")
    write_images(tmp_path / "eval", 2, size=(64, 64))
    _labels(tmp_path)
    models_yaml(
        tmp_path,
        """\
  - name: seg
    reference: seg.onnx
    target: {kind: onnx, model: seg.onnx}
    preprocess: {size: [64, 64]}
    eval_data: {coco: {annotations: eval.json, images: eval}}
    outputs:
      head: {slices: {boxes: {axis: 1, start: 0, stop: 4}, scores: {axis: 1, start: 4, stop: 6},
                      coefficients: {axis: 1, start: 6, stop: 8}}}
    task: {kind: instance-segmentation, class_names: [a, b], num_coefficients: 2}
""",
    )
    spec = load_models(tmp_path / "models.yaml")[0]
    stages = ModelStages(spec, Context(StageCache(tmp_path / "cache"), tmp_path / "reports"))
    comparison = stages.comparison()
    assert {r.output for r in comparison.outputs} == {"head", "head[boxes]", "head[scores]", "head[coefficients]",
                                                       "protos"}  # fmt: skip
    outcome = stages.accuracy()
    assert isinstance(outcome, InstanceOutcome)
    assert outcome.reference is not None
    assert outcome.target is not None
    assert outcome.reference.ap == pytest.approx(1.0)
    assert outcome.target.ap == pytest.approx(1.0)
    assert outcome.agreement.scores.ap == pytest.approx(1.0)
    assert check("mask_ap_drop", Evidence(spec, accuracy=outcome)).passed
    assert check("instance_mask_agreement", Evidence(spec, accuracy=outcome)).passed
