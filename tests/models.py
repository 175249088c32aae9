"""Small real ONNX models built with onnx.helper for integration tests (no weights downloaded)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def tiny_detector(path: Path, *, size: int = 32, seed: int = 0, gain_name: str = "box_gain") -> Path:
    """Conv -> Relu -> Conv -> output ``pred`` (1, 6, size/2, size/2): 4 'box' channels of large range and 2
    'score' channels squashed by a Sigmoid into 0..1, concatenated: a miniature of a detector's mixed output.

    ``gain_name="box_scale"`` reproduces an onnxruntime quantizer name clash (its scale of tensor ``box``).
    """
    rng = np.random.default_rng(seed)
    w1 = rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.5
    b1 = rng.standard_normal(8).astype(np.float32) * 0.1
    w2 = rng.standard_normal((6, 8, 3, 3)).astype(np.float32) * 0.3
    b2 = rng.standard_normal(6).astype(np.float32) * 0.1
    scale = np.array(100.0, np.float32)
    nodes = [
        helper.make_node("Conv", ["images", "w1", "b1"], ["conv1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv1"], ["relu1"], name="relu1"),
        helper.make_node("Conv", ["relu1", "w2", "b2"], ["head"], name="conv2", pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Slice", ["head", "s0", "s4", "ax"], ["raw_box"], name="slice_box"),
        helper.make_node("Slice", ["head", "s4", "s6", "ax"], ["raw_score"], name="slice_score"),
        helper.make_node("Mul", ["raw_box", gain_name], ["box"], name="box_gain_mul"),
        helper.make_node("Sigmoid", ["raw_score"], ["score"], name="score_sigmoid"),
        helper.make_node("Concat", ["box", "score"], ["pred"], name="concat", axis=1),
    ]
    inits = [
        numpy_helper.from_array(w1, "w1"),
        numpy_helper.from_array(b1, "b1"),
        numpy_helper.from_array(w2, "w2"),
        numpy_helper.from_array(b2, "b2"),
        numpy_helper.from_array(scale, gain_name),
        numpy_helper.from_array(np.array([0], np.int64), "s0"),
        numpy_helper.from_array(np.array([4], np.int64), "s4"),
        numpy_helper.from_array(np.array([6], np.int64), "s6"),
        numpy_helper.from_array(np.array([1], np.int64), "ax"),
    ]
    half = size // 2
    graph = helper.make_graph(
        nodes,
        "tiny_detector",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("pred", TensorProto.FLOAT, [1, 6, half, half])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def write_images(folder: Path, count: int, *, seed: int = 0, size: tuple[int, int] = (40, 48)) -> Path:
    """Smooth random RGB PNG images (gradients plus noise) so that quantization has real structure to keep."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(count):
        base = np.stack([(xx * (3 + c + i)) % 256 for c in range(3)], -1).astype(np.float32)
        img = np.clip(base * 0.7 + rng.normal(0, 20, (h, w, 3)) + 30 * np.sin(yy / (3 + i))[..., None], 0, 255)
        Image.fromarray(img.astype(np.uint8)).save(folder / f"img_{i:03d}.png")
    return folder


def models_yaml(folder: Path, entries: str) -> Path:
    path = folder / "models.yaml"
    path.write_text("models:\n" + entries)
    return path


TINY_ENTRY = """\
  - name: {name}
    reference: tiny.onnx
    target: {{kind: ort-int8, activation_bitwidth: {bits}}}
    preprocess: {{size: [32, 32], mode: letterbox}}
    eval_data: {{folder: eval}}
    calibration: {{folder: calib}}
    outputs:
      pred: {{slices: {{boxes: {{axis: 1, start: 0, stop: 4}}, scores: {{axis: 1, start: 4}}}}}}
    thresholds: {{layer_cosine: {layer}, output_cosine: {out}, output_sqnr_db: {sqnr}}}
    expect: {expect}
"""


def tiny_project(folder: Path, entries: list[dict[str, object]], *, eval_images: int = 3) -> Path:
    """A folder with tiny.onnx, eval/ and calib/ images and a models.yaml made of TINY_ENTRY rows."""
    tiny_detector(folder / "tiny.onnx")
    write_images(folder / "eval", eval_images, seed=1)
    write_images(folder / "calib", 4, seed=1)  # covers the eval images: no clipping from a narrow calibration
    defaults: dict[str, object] = {"bits": 8, "layer": 0.5, "out": 0.5, "sqnr": 0.0, "expect": "pass"}
    return models_yaml(folder, "".join(TINY_ENTRY.format(**{**defaults, **e}) for e in entries))


def tiny_top_down(path: Path, *, size: int = 32, seed: int = 0) -> Path:
    """A miniature top-down pose model: ``images`` (1, 3, size, size) -> ``landmarks`` (1, 17 x 3: x, y in input
    pixels, score) and ``presence`` (1, 1, a probability). Conv -> Relu -> GlobalAveragePool -> two Gemm heads; the
    landmark biases spread the 17 points over the crop and the weights move them a few pixels with the content."""
    rng = np.random.default_rng(seed)
    w1 = rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.5
    grid = np.stack([rng.uniform(0.2, 0.8, 17) * size, rng.uniform(0.1, 0.9, 17) * size, np.ones(17)], axis=1)
    wl = (rng.standard_normal((4, 51)) * np.tile([4.0, 4.0, 0.0], 17)).astype(np.float32)
    bl = (grid.reshape(-1) - wl.sum(axis=0) * 0.5).astype(np.float32)
    wp = rng.standard_normal((4, 1)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["images", "w1"], ["conv"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["relu"], name="relu"),
        helper.make_node("GlobalAveragePool", ["relu"], ["pool"], name="pool"),
        helper.make_node("Flatten", ["pool"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "wl", "bl"], ["landmarks"], name="landmark_head"),
        helper.make_node("Gemm", ["flat", "wp"], ["presence_logit"], name="presence_head"),
        helper.make_node("Sigmoid", ["presence_logit"], ["presence"], name="presence_sigmoid"),
    ]
    inits = [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (wl, "wl"), (bl, "bl"), (wp, "wp"))]
    graph = helper.make_graph(
        nodes,
        "tiny_top_down",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, size, size])],
        [
            helper.make_tensor_value_info("landmarks", TensorProto.FLOAT, [1, 51]),
            helper.make_tensor_value_info("presence", TensorProto.FLOAT, [1, 1]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


KEYPOINTS_TASK = (
    "{kind: keypoints, decoder: top-down-regression, outputs: [landmarks], person_score_output: presence, "
    "landmarks: {num_keypoints: 17, values_per_point: 3}, crop: {box_scale: 1.25}}"
)


def keypoints_project(folder: Path, entries: str) -> Path:
    """tiny_top_down.onnx, 3 labelled photos (eval/ + eval.json: 4 person boxes with 17 keypoints each and one car
    box), 4 calibration photos without boxes (calib/), and models.yaml with ``entries`` (``KEYPOINTS_TASK`` is the
    task section to use)."""
    import json

    tiny_top_down(folder / "pose.onnx")
    write_images(folder / "eval", 3, seed=2, size=(60, 80))
    write_images(folder / "calib", 4, seed=3, size=(60, 80))
    rng = np.random.default_rng(5)
    boxes = [(0, [5.0, 4.0, 20.0, 40.0]), (0, [40.0, 10.0, 25.0, 45.0]), (1, [20.0, 5.0, 30.0, 50.0]),
             (2, [10.0, 10.0, 18.0, 36.0])]  # fmt: skip
    annotations: list[dict[str, object]] = []
    for k, (image, (x, y, w, h)) in enumerate(boxes):
        points = np.stack([x + rng.uniform(0, 1, 17) * w, y + rng.uniform(0, 1, 17) * h, np.full(17, 2.0)], axis=1)
        annotations.append(
            {"id": k + 1, "image_id": image, "category_id": 1, "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0,
             "keypoints": points.reshape(-1).round(2).tolist(), "num_keypoints": 17}
        )  # fmt: skip
    annotations.append({"id": 9, "image_id": 1, "category_id": 3, "bbox": [0, 0, 10, 10], "area": 100, "iscrowd": 0})
    coco = {
        "images": [{"id": i, "file_name": f"img_{i:03d}.png", "width": 80, "height": 60} for i in range(3)],
        "annotations": annotations,
        "categories": [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}],
    }
    (folder / "eval.json").write_text(json.dumps(coco))
    return models_yaml(folder, entries)


def tiny_yolov8_seg(path: Path, head: np.ndarray, protos: np.ndarray, *, size: int = 64) -> Path:
    """A YOLOv8-seg shaped model whose outputs are the given ``head`` (1, 4 + classes + M, anchors) and ``protos``
    (1, M, h, w) plus 0 x the input's mean (so they depend on the input in form only): known masks end to end."""
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["mean"], name="mean", keepdims=0),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"], name="times_zero"),
        helper.make_node("Add", ["head_const", "nothing"], ["head"], name="head_out"),
        helper.make_node("Add", ["protos_const", "nothing"], ["protos"], name="protos_out"),
    ]
    inits = [
        numpy_helper.from_array(np.zeros((), np.float32), "zero"),
        numpy_helper.from_array(head.astype(np.float32), "head_const"),
        numpy_helper.from_array(protos.astype(np.float32), "protos_const"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_yolov8_seg",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, size, size])],
        [
            helper.make_tensor_value_info("head", TensorProto.FLOAT, list(head.shape)),
            helper.make_tensor_value_info("protos", TensorProto.FLOAT, list(protos.shape)),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
