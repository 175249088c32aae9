"""Cache keys: every byte that can change a stage's result is in its key, and nothing of where the files are.

A property test: each input of each stage (reference bytes, target model, calibration images, evaluation images,
annotations, class names, a user decoder's source, settings) is perturbed and the keys of the stages it feeds must
change; the same files moved elsewhere (a copied project, a renamed image folder) must give the same keys.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qc.cache import StageCache, canonical, stable_hash
from qc.config import load_models
from qc.diagnose.stage import diagnosis_key
from qc.errors import DataError
from qc.pipeline import Context, ModelStages
from tests.models import tiny_detector, write_images

ENTRY = """\
models:
  - name: tiny
    reference: tiny.onnx
    target: {target}
    preprocess: {{size: [32, 32], mode: letterbox}}
    eval_data: {{coco: {{annotations: eval/annotations.json, images: {images}}}}}
    calibration: {{folder: calib}}
    outputs:
      pred: {{slices: {{boxes: {{axis: 1, start: 0, stop: 4}}, scores: {{axis: 1, start: 4}}}}}}
    task: {{decoder: "{decoder}", class_names: names.txt, score_threshold: {score}}}
"""
DEFAULTS = {
    "target": "{kind: ort-int8}",
    "images": "eval/images",
    "decoder": "yolov8",
    "score": "0.001",
}
STAGES = ("target", "comparison", "accuracy", "diagnosis")


def write_project(folder: Path, **entry: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    tiny_detector(folder / "tiny.onnx")
    tiny_detector(folder / "int8.onnx", seed=3)
    images = write_images(folder / "eval" / "images", 3, seed=1)
    write_images(folder / "calib", 3, seed=2)
    coco = {
        "images": [
            {"id": i + 1, "file_name": p.name, "width": 48, "height": 40}
            for i, p in enumerate(sorted(images.iterdir()))
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [2.0, 3.0, 10.0, 12.0], "iscrowd": 0, "area": 120.0},
            {"id": 2, "image_id": 2, "category_id": 2, "bbox": [5.0, 5.0, 8.0, 6.0], "iscrowd": 0, "area": 48.0},
        ],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
    }
    (folder / "eval" / "annotations.json").write_text(json.dumps(coco, indent=1))
    (folder / "names.txt").write_text("cat\ndog\nbird\n")
    (folder / "mydecoder.py").write_text("def decode(outputs, settings):\n    return []\n")
    write_yaml(folder, **entry)
    return folder


def write_yaml(folder: Path, **entry: str) -> None:
    (folder / "models.yaml").write_text(ENTRY.format(**{**DEFAULTS, **entry}))


def keys(folder: Path) -> dict[str, str]:
    spec = load_models(folder / "models.yaml")[0]
    stages = ModelStages(spec, Context(StageCache(folder / "cache"), folder / "reports"))
    return {
        "target": stages.target_key(),
        "comparison": stages.comparison_key(),
        "accuracy": stages.accuracy_key(),
        "diagnosis": diagnosis_key(stages),
    }


def _flip(path: Path, offset: int = -1) -> None:
    data = bytearray(path.read_bytes())
    data[offset % len(data)] ^= 0x01
    path.write_bytes(bytes(data))


def _edit_json(path: Path, change: Callable[[dict[str, object]], None]) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=1))


def _rename_category(coco: dict[str, object]) -> None:
    coco["categories"] = [{"id": 1, "name": "dog"}, {"id": 2, "name": "cat"}]  # names swapped


def _move_box(coco: dict[str, object]) -> None:
    anns = coco["annotations"]
    assert isinstance(anns, list)
    anns[0]["bbox"] = [2.0, 3.0, 10.0, 13.0]


def _swap_names(folder: Path) -> None:
    (folder / "names.txt").write_text("dog\ncat\nbird\n")


# perturbation -> the stages whose result it can change (their keys must change)
PERTURBATIONS: dict[str, tuple[Callable[[Path], object], set[str]]] = {
    "reference bytes": (lambda f: tiny_detector(f / "tiny.onnx", seed=7), set(STAGES)),
    "calibration image": (lambda f: _flip(f / "calib" / "img_001.png"), set(STAGES)),
    "evaluation image": (lambda f: _flip(f / "eval" / "images" / "img_002.png"), set(STAGES) - {"target"}),
    "annotation category renamed": (
        lambda f: _edit_json(f / "eval" / "annotations.json", _rename_category),
        {"accuracy", "diagnosis"},
    ),
    "annotation box moved": (
        lambda f: _edit_json(f / "eval" / "annotations.json", _move_box),
        {"accuracy", "diagnosis"},
    ),
    "class_names lines swapped": (_swap_names, {"accuracy", "diagnosis"}),
    "quantization setting": (
        lambda f: write_yaml(f, target="{kind: ort-int8, activation_bitwidth: 16}"),
        set(STAGES),
    ),
    "preprocessing setting": (
        lambda f: (f / "models.yaml").write_text((f / "models.yaml").read_text().replace("letterbox", "resize")),
        set(STAGES),
    ),
    "output slices": (
        lambda f: (f / "models.yaml").write_text((f / "models.yaml").read_text().replace("stop: 4", "stop: 3")),
        {"comparison", "diagnosis"},
    ),
    "task setting": (lambda f: write_yaml(f, score="0.01"), {"accuracy", "diagnosis"}),
}


@pytest.mark.parametrize("name", list(PERTURBATIONS))
def test_each_input_is_in_the_keys_of_the_stages_it_feeds(tmp_path: Path, name: str) -> None:
    folder = write_project(tmp_path / "p")
    before = keys(folder)
    perturb, feeds = PERTURBATIONS[name]
    perturb(folder)
    after = keys(folder)
    unchanged = sorted(s for s in feeds if before[s] == after[s])
    assert not unchanged, f"{name}: the keys of {unchanged} did not change"


def test_the_target_model_file_is_in_the_keys(tmp_path: Path) -> None:
    folder = write_project(tmp_path / "p", target="{kind: onnx, model: int8.onnx}")
    before = keys(folder)
    _flip(folder / "int8.onnx", 100)
    after = keys(folder)
    assert all(before[s] != after[s] for s in STAGES)


def test_a_user_decoders_source_is_in_the_accuracy_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = write_project(tmp_path / "p", decoder="mydecoder:decode")
    monkeypatch.syspath_prepend(str(folder))
    before = keys(folder)
    (folder / "mydecoder.py").write_text("def decode(outputs, settings):\n    return []  # changed\n")
    after = keys(folder)
    assert before["accuracy"] != after["accuracy"]
    assert before["comparison"] == after["comparison"]


def test_moving_the_same_files_keeps_every_key(tmp_path: Path) -> None:
    folder = write_project(tmp_path / "p")
    before = keys(folder)
    moved = tmp_path / "elsewhere" / "project"
    shutil.copytree(folder, moved)
    assert keys(moved) == before
    # the images folder renamed, models.yaml pointing at the new place: the same bytes, the same keys
    (moved / "eval" / "images").rename(moved / "eval" / "pictures")
    write_yaml(moved, images="eval/pictures")
    assert keys(moved) == before


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    which=st.sampled_from(["tiny.onnx", "calib/img_000.png", "eval/images/img_000.png", "names.txt"]),
    at=st.integers(0, 10**6),
)
def test_any_flipped_byte_of_an_input_file_changes_the_accuracy_key(which: str, at: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_project(Path(tmp))
        before = keys(folder)["accuracy"]
        _flip(folder / which, at)
        assert keys(folder)["accuracy"] != before


def test_paths_are_hashed_by_content_wherever_they_appear(tmp_path: Path) -> None:
    a, b = tmp_path / "a.txt", tmp_path / "sub" / "b.txt"
    b.parent.mkdir()
    a.write_text("same")
    b.write_text("same")
    assert stable_hash(a) == stable_hash(b)
    assert stable_hash({"x": [a]}) == stable_hash({"x": [b]})
    b.write_text("other")
    assert stable_hash({"x": [a]}) != stable_hash({"x": [b]})
    # a folder: its manifest (relative names and contents)
    assert canonical(tmp_path / "sub") != canonical(tmp_path)
    (tmp_path / "sub" / "c.txt").write_text("")
    before = stable_hash(tmp_path / "sub")
    (tmp_path / "sub" / "c.txt").write_text("x")
    assert stable_hash(tmp_path / "sub") != before
    with pytest.raises(DataError, match=r"missing\.txt: not found"):
        stable_hash(tmp_path / "missing.txt")


def test_an_object_without_a_content_rendering_is_refused() -> None:
    with pytest.raises(TypeError, match="cannot render"):
        stable_hash(object())


def test_no_stage_key_renders_settings_as_json_text() -> None:
    """``model_dump(mode="json")`` turns a Path into its location: keys take the models themselves (python mode)."""
    import ast

    offenders = []
    for path in sorted((Path(__file__).parents[2] / "qc").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == "stable_hash":
                for inner in ast.walk(node):
                    if isinstance(inner, ast.Call) and getattr(inner.func, "attr", "") == "model_dump":
                        offenders.append(f"{path.name}:{inner.lineno}")
    assert not offenders, f"stable_hash(...) given model_dump() output (paths by location): {offenders}"
