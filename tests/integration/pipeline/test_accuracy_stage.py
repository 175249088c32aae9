"""The accuracy stage on the real demo detector (YOLOv3-tiny) and photos: both sides' AP, agreement, artifacts."""

from __future__ import annotations

import json
import math
from pathlib import Path

from qc.assets import AssetPaths
from qc.cache import StageCache
from qc.config import TaskSpec, load_models
from qc.pipeline import Context, ModelStages
from qc.report.accuracy import write_accuracy

ENTRY = """\
models:
  - name: demo-a16
    reference: {root}/yolov3-tiny-coco.onnx
    target: {{kind: ort-int8, activation_bitwidth: 16}}
    preprocess: {{size: [416, 416], mode: letterbox, pad_value: 127.5, scale: 0.00392156862745098}}
    eval_data: {{coco: {{annotations: {root}/eval/annotations.json, images: {root}/eval/images}}, limit: 2}}
    calibration: {{folder: {root}/calibration, limit: 2}}
    task: {{decoder: yolo-decoded, outputs: [yolo_decoded], class_names: {root}/darknet/coco.names, pictures: 1}}
"""


def test_accuracy_stage_on_the_demo_model(tmp_path: Path, demo_assets: AssetPaths) -> None:
    (tmp_path / "models.yaml").write_text(ENTRY.format(root=demo_assets.root))
    spec = load_models(tmp_path / "models.yaml")[0]
    stages = ModelStages(spec, Context(StageCache(tmp_path / "cache"), tmp_path / "reports"))
    result, ref, tgt = stages.accuracy()
    assert result.images == 2
    assert result.reference is not None
    assert result.target is not None
    assert 0.0 < result.reference.ap <= 1.0
    assert abs(result.drop("ap")) < 0.05  # 16-bit activations barely move the detections
    assert result.agreement.ap > 0.8
    assert result.category_map[0] == 1
    assert result.category_map[56] == 62
    files = write_accuracy(
        result,
        ref,
        tgt,
        stages.eval_images(),
        spec.task.names() if isinstance(spec.task, TaskSpec) else [],
        tmp_path / "out",
        pictures=1,
        model=spec.name,
    )
    summary = json.loads((tmp_path / "out" / "accuracy.json").read_text())
    for key in (
        "images",
        "reference.ap",
        "reference.ap50",
        "target.ap",
        "target.ap50",
        "drop.ap",
        "drop.ap50",
        "agreement_ap",
    ):
        assert key in summary
        assert summary[key] is not None
        assert not (isinstance(summary[key], float) and math.isnan(summary[key]))
    dets = json.loads((tmp_path / "out" / "detections_target.json").read_text())
    assert dets
    assert set(dets[0]) == {"image_id", "category_id", "bbox", "score"}
    assert any(f.suffix == ".png" for f in files)
    again = ModelStages(spec, Context(StageCache(tmp_path / "cache"), tmp_path / "reports"))
    assert again.accuracy()[0].to_json() == result.to_json()
    assert again.ctx.cache.hits
