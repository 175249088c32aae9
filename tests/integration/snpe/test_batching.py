"""Batching targets (SNPE runs a tool call per batch): compare_stream and collect chunk the images by the target's
batch size, read the feeds lazily, and give exactly the results of image-by-image runs."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from qc.compare.layerwise import compare_stream
from qc.compare.matching import match_qdq
from qc.config import TaskSpec
from qc.eval.accuracy import collect
from qc.runners.base import TensorDict, batch_size_of, chunks
from qc.runners.ort import OrtRunner
from tests.integration.snpe.helpers import OUTPUTS, feeds, tiny_yolov6
from tests.models import write_images


class Batched(OrtRunner):
    """An OrtRunner that records the batches it is given (a stand-in for a device runner)."""

    def __init__(self, path: Path, batch_size: int, pulled: list[int]) -> None:
        super().__init__("batched", path)
        self.batch_size = batch_size
        self.calls: list[tuple[str, int, int]] = []
        self.pulled = pulled

    def run_batch(self, feeds: Sequence[Mapping[str, np.ndarray]]) -> list[TensorDict]:
        self.calls.append(("run", len(feeds), self.pulled[0]))
        return [self.run(f) for f in feeds]

    def run_all_batch(self, feeds: Sequence[Mapping[str, np.ndarray]]) -> list[TensorDict]:
        self.calls.append(("run_all", len(feeds), self.pulled[0]))
        return [self.run_all(f) for f in feeds]


def counted(items: list[dict[str, np.ndarray]], pulled: list[int]) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    for i, item in enumerate(items):
        pulled[0] += 1
        yield i + 1, item


def test_compare_stream_chunks_by_batch_size_lazily_with_identical_results(tmp_path: Path) -> None:
    model = tiny_yolov6(tmp_path / "m.onnx")
    write_images(tmp_path / "imgs", 5, seed=1, size=(64, 96))
    items = list(feeds(tmp_path / "imgs"))
    reference = OrtRunner("ref", model)
    plain = OrtRunner("target", model)
    pulled = [0]
    batched = Batched(model, 2, pulled)
    matches = match_qdq(reference.graph(), plain.graph())
    one = compare_stream("m", reference, plain, matches, ((i + 1, f) for i, f in enumerate(items)), {})
    two = compare_stream("m", reference, batched, matches, counted(items, pulled), {})
    assert json.dumps(two.to_json()) == json.dumps(one.to_json())
    assert [(kind, n) for kind, n, _ in batched.calls] == [("run_all", 2), ("run", 2)] * 2 + [
        ("run_all", 1),
        ("run", 1),
    ]
    # the feeds are pulled one chunk at a time: never more than a batch ahead of the runner
    assert [p for kind, _, p in batched.calls if kind == "run_all"] == [2, 4, 5]
    assert batch_size_of(plain) == 1
    assert batch_size_of(batched) == 2


def test_collect_chunks_by_batch_size_with_identical_detections(tmp_path: Path) -> None:
    model = tiny_yolov6(tmp_path / "m.onnx")
    write_images(tmp_path / "imgs", 3, seed=2, size=(64, 96))
    items = list(feeds(tmp_path / "imgs"))
    task = TaskSpec(decoder="yolov6r2", outputs=OUTPUTS, class_names=("person", "car"))
    reference = OrtRunner("ref", model)
    batched = Batched(model, 2, [0])

    class Inverse:
        orig_w, orig_h = 96, 64

        def to_original(self, boxes: np.ndarray) -> np.ndarray:
            return boxes

    def stream() -> Iterator[tuple[int, dict[str, np.ndarray], Inverse]]:
        return ((i + 1, f, Inverse()) for i, f in enumerate(items))

    ref_a, tgt_a, _ = collect(task, reference, OrtRunner("t", model), stream(), (64, 96), 2)
    _ref_b, tgt_b, sizes = collect(task, reference, batched, stream(), (64, 96), 2)
    assert [n for _, n, _ in batched.calls] == [2, 1]
    for image_id, dets in tgt_a.by_image.items():
        np.testing.assert_array_equal(dets.boxes, tgt_b.by_image[image_id].boxes)
        np.testing.assert_array_equal(dets.scores, ref_a.by_image[image_id].scores)
    assert sizes == {1: (96, 64), 2: (96, 64), 3: (96, 64)}


def test_chunks() -> None:
    assert list(chunks(range(5), 2)) == [[0, 1], [2, 3], [4]]
    assert list(chunks([], 3)) == []
    assert list(chunks("ab", 0)) == [["a"], ["b"]]
