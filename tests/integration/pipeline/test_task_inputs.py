"""A task that feeds its own inputs (top-down keypoints: one crop per person box) drives every stream of its entry:
the one pass of comparison + accuracy, the speed input and the calibration of a quantizing target."""

from __future__ import annotations

from pathlib import Path

import pytest

from qc import progress
from qc.cache import StageCache
from qc.config import KeypointsTask, load_models
from qc.data.images import load_image_set
from qc.pipeline import Context, ModelStages, count_feeds, inputs_key, iter_feeds
from qc.tasks.keypoints_collect import KeypointsOutcome
from tests.models import KEYPOINTS_TASK, keypoints_project, tiny_detector, tiny_project

ENTRY = f"""\
  - name: pose-a16
    reference: pose.onnx
    target: {{kind: ort-int8, activation_bitwidth: 16}}
    preprocess: {{size: [32, 32]}}
    eval_data: {{coco: {{annotations: eval.json, images: eval}}}}
    calibration: {{folder: calib}}
    task: {KEYPOINTS_TASK}
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("keypoints")
    keypoints_project(folder, ENTRY)
    return folder


def test_one_pass_runs_the_crops_for_comparison_and_accuracy(project: Path) -> None:
    spec = load_models(project / "models.yaml")[0]
    stages = ModelStages(spec, Context(StageCache(project / "cache"), project / "reports"))
    seen: list[progress.Event] = []
    with progress.sink(seen.append):
        comparison = stages.comparison()  # fills the accuracy in the same pass
        outcome = stages.accuracy()
    assert isinstance(outcome, KeypointsOutcome)
    assert comparison.images == 4  # 4 person boxes of category 1 on 3 photos; the car box is no crop
    assert any("each of the 4 inputs is a person crop" in n for n in comparison.notes)
    assert (outcome.images, outcome.inputs) == (3, 4)
    assert {("compare", 4), ("calibrate", 4)} <= {(e.stage, e.total) for e in seen}
    assert not [e for e in seen if e.stage == "evaluate"]  # no second pass for the accuracy
    assert outcome.agreement.num_matched == 4
    assert outcome.agreement.mean_oks > 0.9  # 16-bit activations on a 4-channel model
    assert outcome.reference is not None
    assert not outcome.reference.empty
    feed = stages.first_feed()
    assert feed["images"].shape == (1, 3, 32, 32)


def test_calibration_of_a_set_without_boxes_is_one_whole_image_per_photo(project: Path) -> None:
    spec = load_models(project / "models.yaml")[0]
    assert spec.calibration is not None
    calib = load_image_set(spec.calibration)
    feeds = list(iter_feeds(spec, calib, "images", (32, 32)))
    assert count_feeds(spec, calib, "images", (32, 32)) == len(feeds) == 4
    _, _, tf = feeds[0]
    assert (tf.orig_w, tf.orig_h) == (80, 60)
    # the whole 80 x 60 photo, squared by growing its short side: 80 px -> 32 px, centred vertically
    assert tf.scale_x == pytest.approx(32 / 80)
    assert tf.pad_y == pytest.approx(10 * 32 / 80)  # the 80 x 80 square starts 10 px above the photo


def test_whole_image_tasks_keep_their_inputs_and_cache_keys(tmp_path: Path) -> None:
    tiny_project(tmp_path, [{"name": "tiny", "bits": 8}])
    tiny_detector(tmp_path / "tiny.onnx")
    spec = load_models(tmp_path / "models.yaml")[0]
    assert inputs_key(spec) is spec.preprocess  # no task hook: the key is exactly what it was before
    images = load_image_set(spec.eval_data)
    ids = [i for i, _, _ in iter_feeds(spec, images, "images", (32, 32))]
    assert ids == [item.image_id for item in images.items]
    assert count_feeds(spec, images, "images", (32, 32)) == len(images)


def test_crop_settings_change_the_target_and_comparison_keys(project: Path, tmp_path: Path) -> None:
    spec = load_models(project / "models.yaml")[0]
    task = spec.task
    assert isinstance(task, KeypointsTask)
    wider = task.model_copy(update={"crop": task.crop.model_copy(update={"box_scale": 1.5})})
    other = spec.model_copy(update={"task": wider})
    ctx = Context(StageCache(tmp_path / "cache"), tmp_path / "reports")
    a, b = ModelStages(spec, ctx), ModelStages(other, ctx)
    assert inputs_key(spec) != inputs_key(other)
    assert a.target_key() != b.target_key()
    assert a.comparison_key() != b.comparison_key()


def test_calibrate_skips_an_entry_whose_labels_hold_no_keypoints(project: Path, tmp_path: Path) -> None:
    import json

    from qc.calibrate import _why_not
    from qc.config import CocoData, ImageData

    spec = load_models(project / "models.yaml")[0]
    ctx = Context(StageCache(tmp_path / "cache"), tmp_path / "reports")
    assert _why_not(ModelStages(spec, ctx)) is None  # person keypoints labelled: calibratable
    coco = json.loads((project / "eval.json").read_text())
    for ann in coco["annotations"]:
        ann.pop("keypoints", None)
        ann.pop("num_keypoints", None)
    (tmp_path / "boxes.json").write_text(json.dumps(coco))
    boxes = ImageData(coco=CocoData(annotations=tmp_path / "boxes.json", images=project / "eval"))
    reason = _why_not(ModelStages(spec.model_copy(update={"eval_data": boxes}), ctx))
    assert reason is not None
    assert "hold no person (category 1) with keypoints" in reason
