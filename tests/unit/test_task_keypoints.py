"""The keypoints task on synthetic outputs whose OKS (hence OKS AP and agreement) is known exactly."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qc.config import ModelSpec, load_models
from qc.data.images import ImageItem, ImageSet
from qc.data.preprocess import Transform, to_tensor
from qc.errors import ConfigError, DataError
from qc.eval.keypoints import COCO_KEYPOINT_NAMES, COCO_SIGMAS, person_crop
from qc.gates import Evidence, check, gate_info
from qc.tasks import task_of
from qc.tasks.keypoints import KeypointsTask
from qc.tasks.keypoints_collect import KeypointsOutcome, person_boxes

SIG = np.asarray(COCO_SIGMAS)
INPUT = (64, 64)
W, H = 640, 480
THRESHOLDS = np.linspace(0.5, 0.95, 10)
# people: (image id, box x, y, w, h); person 3 is a crowd box: never a crop
PEOPLE = [(1, (100.0, 50.0, 100.0, 200.0)), (1, (300.0, 100.0, 80.0, 160.0)), (2, (200.0, 40.0, 120.0, 240.0))]


def _keypoints(box: tuple[float, float, float, float], seed: int) -> np.ndarray:
    x, y, w, h = box
    rng = np.random.default_rng(seed)
    return np.stack([x + rng.uniform(0.1, 0.9, 17) * w, y + rng.uniform(0.1, 0.9, 17) * h], axis=1)


def _coco(labelled: bool = True) -> dict[str, Any]:
    anns = []
    for k, (iid, box) in enumerate(PEOPLE):
        ann: dict[str, Any] = {"id": k + 1, "image_id": iid, "category_id": 1, "bbox": list(box),
                               "area": box[2] * box[3], "iscrowd": 0}  # fmt: skip
        if labelled:
            kp = _keypoints(box, k)
            ann["keypoints"] = np.concatenate([kp, np.full((17, 1), 2.0)], axis=1).reshape(-1).tolist()
            ann["num_keypoints"] = 17
        anns.append(ann)
    anns.append({"id": 9, "image_id": 2, "category_id": 1, "bbox": [0, 0, 50, 50], "area": 2500, "iscrowd": 1})
    anns.append({"id": 10, "image_id": 2, "category_id": 3, "bbox": [0, 0, 50, 50], "area": 2500, "iscrowd": 0})
    return {
        "images": [{"id": i, "file_name": f"{i}.png", "width": W, "height": H} for i in (1, 2)],
        "annotations": anns,
        "categories": [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}],
    }


def _images(labelled: bool = True) -> ImageSet:
    items = tuple(ImageItem(i, Path(f"{i}.png"), W, H) for i in (1, 2))
    return ImageSet(items, _coco(labelled), "synthetic")


def _spec(task: dict[str, Any] | None = None, **thresholds: float) -> ModelSpec:
    settings = {
        "kind": "keypoints",
        "decoder": "top-down-regression",
        "outputs": ["landmarks"],
        "landmarks": {"num_keypoints": 17, "values_per_point": 3},
        "person_score_output": "presence",
    }
    return ModelSpec.model_validate(
        {
            "name": "pose",
            "reference": "m.onnx",
            "target": {"kind": "onnx", "model": "t.onnx"},
            "preprocess": {"size": list(INPUT)},
            "eval_data": {"folder": "images"},
            "task": {**settings, **(task or {})},
            "thresholds": thresholds,
        }
    )


def _shift(oks: np.ndarray, area: float) -> np.ndarray:
    """Per-keypoint distances giving keypoint i exactly the similarity ``oks[i]``."""
    out: np.ndarray = np.sqrt(-np.log(oks) * 2 * area * (2 * SIG) ** 2)
    return out


def _crop_transform(box: tuple[float, float, float, float], box_scale: float = 1.25) -> Transform:
    x, y, w, h = box
    return person_crop(np.zeros((H, W, 3), np.uint8), [x, y, x + w, y + h], INPUT, box_scale=box_scale)[1]


def _outputs(points: np.ndarray, tf: Transform, presence: float) -> dict[str, np.ndarray]:
    net = np.stack([points[:, 0] * tf.scale_x + tf.pad_x, points[:, 1] * tf.scale_y + tf.pad_y], axis=1)
    flat = np.concatenate([net, np.ones((17, 1))], axis=1).reshape(1, -1).astype(np.float32)
    return {"landmarks": flat, "presence": np.array([[presence]], np.float32)}


PER_POINT = np.full(17, 0.72)
PER_POINT[15] = 0.3  # left_ankle: the worst point
PERSON_OKS = float(PER_POINT.mean())  # 0.6953: matches at OKS thresholds 0.5 .. 0.65


def _outcome(task: KeypointsTask, images: ImageSet) -> KeypointsOutcome:
    collector = task.collector(INPUT, images)
    for i, (_iid, xyxy) in enumerate(person_boxes(task.settings, images)):
        x1, y1, x2, y2 = xyxy if xyxy is not None else (0.0, 0.0, float(W), float(H))  # a whole image
        box = (x1, y1, x2 - x1, y2 - y1)
        tf = _crop_transform(box, 1.25 if xyxy is not None else 1.0)
        truth = _keypoints(box, i)
        moved = truth + np.stack([_shift(PER_POINT, box[2] * box[3]), np.zeros(17)], axis=1)
        collector.add(i, tf, _outputs(truth, tf, 0.9), _outputs(moved, tf, 0.2 if i == 2 else 0.8))
    return collector.finish()


@pytest.fixture(scope="module")
def labelled() -> tuple[KeypointsTask, KeypointsOutcome]:
    task = KeypointsTask(_spec())
    return task, _outcome(task, _images())


def test_plan_is_one_crop_per_person_box_crowds_and_other_classes_left_out() -> None:
    task = KeypointsTask(_spec())
    plan = person_boxes(task.settings, _images())
    assert [(i, b) for i, b in plan] == [(i, (x, y, x + w, y + h)) for i, (x, y, w, h) in PEOPLE]
    folder = ImageSet((ImageItem(0, Path("a.png")), ImageItem(1, Path("b.png"))), None, "folder")
    assert person_boxes(task.settings, folder) == [(0, None), (1, None)]  # no labels: each whole image


def test_oks_ap_of_both_sides_and_the_drop_are_exact(labelled: tuple[KeypointsTask, KeypointsOutcome]) -> None:
    _, o = labelled
    assert o.reference is not None
    assert o.target is not None
    assert o.reference.ap == pytest.approx(1.0)
    expected = float((THRESHOLDS <= PERSON_OKS).sum()) / 10  # every person a true positive up to its OKS
    assert expected == pytest.approx(0.4)
    assert o.target.ap == pytest.approx(expected)
    assert o.drop() == pytest.approx(1.0 - expected)
    assert (o.images, o.inputs) == (2, 3)


def test_agreement_per_keypoint_and_lost_people(labelled: tuple[KeypointsTask, KeypointsOutcome]) -> None:
    _, o = labelled
    a = o.agreement
    assert a.num_matched == 3
    assert a.mean_oks == pytest.approx(PERSON_OKS, abs=1e-4)
    assert a.per_keypoint_oks["left_ankle"] == pytest.approx(0.3, abs=1e-4)
    assert a.per_keypoint_oks["nose"] == pytest.approx(0.72, abs=1e-4)
    assert o.people_lost == 1  # presence 0.2 < person_threshold 0.25 where the reference sees the person


def test_gates_pass_and_fail_on_the_known_values(labelled: tuple[KeypointsTask, KeypointsOutcome]) -> None:
    _, o = labelled
    strict = _spec(max_oks_ap_drop=0.5, min_keypoint_agreement=0.7)
    loose = _spec(max_oks_ap_drop=0.61, min_keypoint_agreement=0.69)
    drop = check("oks_ap_drop", Evidence(strict, accuracy=o))
    assert not drop.passed
    assert "OKS AP drop over budget" in drop.message
    assert "target OKS AP 0.4000" in drop.message
    assert check("oks_ap_drop", Evidence(loose, accuracy=o)).passed
    agree = check("keypoint_agreement", Evidence(strict, accuracy=o))
    assert not agree.passed
    assert "0.6953 < threshold 0.7000" in agree.message
    assert "left_ankle" in agree.message
    assert "loses 1 of them" in agree.message
    assert check("keypoint_agreement", Evidence(loose, accuracy=o)).passed
    assert gate_info("oks_ap_drop").labels
    assert not gate_info("keypoint_agreement").labels


def test_labelled_gate_without_labels_fails_clearly() -> None:
    task = KeypointsTask(_spec())
    o = _outcome(task, ImageSet(_images().items, None, "folder"))
    verdict = check("oks_ap_drop", Evidence(_spec(), accuracy=o))
    assert not verdict.passed
    assert "no labels" in verdict.message
    assert check("keypoint_agreement", Evidence(_spec(min_keypoint_agreement=0.6), accuracy=o)).passed
    boxes_only = _outcome(task, _images(labelled=False))  # COCO boxes but no keypoints
    verdict = check("oks_ap_drop", Evidence(_spec(), accuracy=boxes_only))
    assert not verdict.passed
    assert "no person with keypoints" in verdict.message


def test_headlines_metrics_score_and_calibration(labelled: tuple[KeypointsTask, KeypointsOutcome]) -> None:
    task, o = labelled
    metrics = task.metrics(o)
    assert {h.name for h in task.headlines} <= set(metrics)
    assert metrics["target_oks_ap"] == pytest.approx(0.4)
    assert task.score(o, "oks_ap", "reference") == pytest.approx(1.0)
    assert task.score(o, "keypoint_agreement", "reference") == 1.0
    assert task.score(o, "keypoint_agreement", "target") == pytest.approx(PERSON_OKS, abs=1e-4)
    assert set(task.diagnosis_metrics) == {"oks_ap", "keypoint_agreement"}
    cal = task.calibration_metrics(o)
    assert cal["drop_oks_ap"] == pytest.approx(0.6)
    assert cal["keypoint_mean_oks"] == pytest.approx(PERSON_OKS, 1e-4)
    unlabelled = _outcome(task, ImageSet(_images().items, None, "folder"))
    assert task.score(unlabelled, "oks_ap", "target") == 0.0
    assert math.isnan(task.calibration_metrics(unlabelled)["drop_oks_ap"])


def test_save_load_and_report(labelled: tuple[KeypointsTask, KeypointsOutcome], tmp_path: Path) -> None:
    task, o = labelled
    data = task.save(o, tmp_path)
    from qc.jsonio import dumps, loads

    loaded = task.load(loads(dumps(data)), tmp_path)
    assert loaded is not None
    assert dumps(loaded.summary()) == dumps(o.summary())
    from PIL import Image

    for i in (1, 2):
        Image.new("RGB", (W, H), (90, 90, 90)).save(tmp_path / f"{i}.png")
    photos = ImageSet(tuple(ImageItem(i, tmp_path / f"{i}.png", W, H) for i in (1, 2)), _coco(), "synthetic")
    files = task.write_report(o, photos, tmp_path / "report")
    assert {f.name for f in files} == {"accuracy.json", "keypoints_reference.json", "keypoints_target.json",
                                       "keypoints.csv", "1.png", "2.png"}  # fmt: skip
    with Image.open(tmp_path / "report" / "pictures" / "1.png") as im:
        assert im.size[0] > 2 * W  # both sides
    # image 2's one person has the same OKS as image 1's two: the ranking ties break by image id
    assert [i for i, _ in o.disagreement] == [1, 2]
    assert o.disagreement[0][1] == pytest.approx(1 - PERSON_OKS, abs=1e-4)
    with (tmp_path / "report" / "keypoints.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert next(r["keypoint"] for r in rows) == "left_ankle"  # worst first
    assert set(rows[0]) == {"keypoint", "mean_pixel_error", "mean_normalized_error", "oks"}
    assert len(rows) == 17
    assert {r["keypoint"] for r in rows} == set(COCO_KEYPOINT_NAMES)
    (tmp_path / "missing").mkdir()
    assert task.load(data, tmp_path / "missing") is None


def test_inputs_are_crops_of_every_box_normalised_by_preprocess(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    pixels = {i: rng.integers(0, 255, (H, W, 3), dtype=np.uint8) for i in (1, 2)}
    for i, rgb in pixels.items():
        Image.fromarray(rgb).save(tmp_path / f"{i}.png")
    images = ImageSet(tuple(ImageItem(i, tmp_path / f"{i}.png", W, H) for i in (1, 2)), _coco(), "synthetic")
    spec = _spec({"crop": {"box_scale": 1.5, "border": "constant", "pad_value": 10}})
    task = KeypointsTask(spec)
    inputs = task.inputs(images, "x", INPUT)
    assert inputs is not None
    assert inputs.count == 3
    assert "3 inputs is a person crop" in inputs.note
    feeds = list(inputs.feeds)
    assert [i for i, _, _ in feeds] == [0, 1, 2]
    x, y, w, h = PEOPLE[2][1]
    crop, tf = person_crop(pixels[2], [x, y, x + w, y + h], INPUT, box_scale=1.5, border="constant", pad_value=10)
    np.testing.assert_array_equal(feeds[2][1]["x"], to_tensor(crop, spec.preprocess))
    assert feeds[2][2] == tf
    assert task.inputs_key() is not None
    yolo = KeypointsTask(_spec({"decoder": "yolo-pose", "landmarks": None, "person_score_output": None}))
    assert yolo.inputs(images, "x", INPUT) is None
    assert yolo.inputs_key() is None
    no_people = ImageSet(images.items, {**_coco(), "annotations": []}, "empty.json")
    with pytest.raises(DataError, match="no box of category 1"):
        task.inputs(no_people, "x", INPUT)


def test_yolo_pose_head_decoded_on_whole_images() -> None:
    spec = _spec({"decoder": "yolo-pose", "landmarks": None, "person_score_output": None, "outputs": ["head"]})
    task = KeypointsTask(spec)
    collector = task.collector(INPUT, _images())
    identity = Transform(1.0, 1.0, 0.0, 0.0, W, H)
    for iid in (1, 2):
        ref_rows: list[np.ndarray] = []
        tgt_rows: list[np.ndarray] = []
        for k, (pid, (x, y, w, h)) in enumerate(PEOPLE):
            if pid != iid:
                continue
            truth = _keypoints((x, y, w, h), k)
            moved = truth + np.stack([_shift(np.full(17, 0.92), w * h), np.zeros(17)], axis=1)
            for rows, pts in ((ref_rows, truth), (tgt_rows, moved)):
                kp = np.concatenate([pts, np.ones((17, 1))], axis=1).reshape(-1)
                rows.append(np.concatenate([[x + w / 2, y + h / 2, w, h, 0.9], kp]))
        ref = np.zeros((1, 56, 20), np.float32)
        tgt = np.zeros((1, 56, 20), np.float32)
        ref[0, :, : len(ref_rows)] = np.asarray(ref_rows).T
        tgt[0, :, : len(tgt_rows)] = np.asarray(tgt_rows).T
        collector.add(iid, identity, {"head": ref}, {"head": tgt})
    o = collector.finish()
    assert o.reference is not None
    assert o.target is not None
    assert o.reference.ap == pytest.approx(1.0)
    assert o.target.ap == pytest.approx(float((THRESHOLDS <= 0.92).sum()) / 10)
    assert o.agreement.mean_oks == pytest.approx(0.92, abs=1e-4)
    assert o.people_lost == 0


def test_heatmap_decoder_and_missing_outputs_are_clear() -> None:
    spec = _spec({"decoder": "top-down-heatmap", "landmarks": None, "outputs": ["heatmaps"]})
    task = KeypointsTask(spec)
    images = ImageSet(_images().items[:1], _coco(), "synthetic")
    collector = task.collector(INPUT, images)
    hm = np.zeros((1, 17, 16, 16), np.float32)
    hm[0, np.arange(17), np.arange(17) % 16, 3] = 1.0
    for i in (0, 1):
        tf = _crop_transform(PEOPLE[i][1])
        outs = {"heatmaps": hm, "presence": np.array([[1.0]], np.float32)}
        collector.add(i, tf, outs, outs)
    o = collector.finish()
    assert o.agreement.mean_oks == pytest.approx(1.0)
    with pytest.raises(DataError, match=r"task\.person_score_output 'presence' is not an output of the reference"):
        task.collector(INPUT, images).add(0, _crop_transform(PEOPLE[0][1]), {"heatmaps": hm}, {"heatmaps": hm})
    with pytest.raises(DataError, match=r"task\.outputs names 'heatmaps'"):
        task.collector(INPUT, images).add(0, _crop_transform(PEOPLE[0][1]), {"x": hm}, {"x": hm})


def test_task_of_and_unknown_gate() -> None:
    task = task_of(_spec())
    assert isinstance(task, KeypointsTask)
    assert task.gates == ("oks_ap_drop", "keypoint_agreement")
    assert [gate_info(g).labels for g in task.gates] == [True, False]
    with pytest.raises(ConfigError, match="not a keypoints gate"):
        task.check("map_drop", _outcome(task, _images()))


ENTRY = """\
models:
  - name: pose
    reference: m.onnx
    target: {{kind: onnx, model: m.onnx}}
    eval_data: {{folder: .}}
    task:
      kind: keypoints
{task}
"""


@pytest.mark.parametrize(
    ("task", "line", "message"),
    [
        ("      decoder: top-down-regression", 7, "decoder 'top-down-regression' needs 'landmarks'"),
        ("      decoder: bottom-up", 8, "Input should be 'top-down-regression', 'top-down-heatmap' or 'yolo-pose'"),
        (
            "      decoder: yolo-pose\n      crop: {box_scale: 1.1}",
            7,
            "['crop'] apply to top-down decoders only",
        ),
        (
            "      decoder: yolo-pose\n      head: {num_keypoints: 5}",
            7,
            "sigmas 'coco' are COCO's 17; give one sigma per keypoint for 5 keypoints",
        ),
        (
            "      decoder: top-down-regression\n      landmarks: {num_keypoints: 33}\n      keypoint_map: [0, 40]",
            7,
            "keypoint_map indices [40] are out of range for the model's 33 points",
        ),
        (
            "      decoder: top-down-regression\n      landmarks: {num_keypoints: 3, score_index: 3}",
            9,
            "{'score_index': 3} out of range",
        ),
        (
            "      decoder: top-down-regression\n      landmarks: {num_keypoints: 2}\n      sigmas: [0.1]",
            7,
            "1 sigmas given for 2 keypoints",
        ),
    ],
)
def test_config_errors_name_the_line(tmp_path: Path, task: str, line: int, message: str) -> None:
    path = tmp_path / "models.yaml"
    path.write_text(ENTRY.format(task=task))
    (tmp_path / "m.onnx").write_bytes(b"x")
    with pytest.raises(ConfigError) as info:
        load_models(path)
    text = str(info.value)
    assert f"{path}:{line}:" in text, text
    assert message in text, text
