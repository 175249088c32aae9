"""A miniature Luxonis-style YOLOv6 (``yolov6r2`` heads) with ONNX-exporter tensor names, and its test project."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tests.models import write_images

HEIGHT, WIDTH = 64, 96
CLASSES = ("person", "car")
OUTPUTS = ("output1_yolov6r2", "output2_yolov6r2", "output3_yolov6r2")


def tiny_yolov6(path: Path, *, seed: int = 0) -> Path:
    """Input ``images`` (1,3,64,96); a stride-2 Conv+Relu backbone (8, 16, 16, 32, 32 channels); three heads
    (strides 8, 16, 32) of ``4 + 1 + 2`` channels: Relu'd distances times 2, ReduceMax confidence, Sigmoid
    classes, concatenated into ``output{1,2,3}_yolov6r2`` (1,7,H,W). Names follow torch.onnx (``/a/b/Conv``,
    ``/a/b/Conv_output_0``), so the DLC's debug outputs need nested folders. A dangling Reshape to (8,8,6) is a
    tensor whose axis order no shape or op can decide (two equal dims): it must end up unmatched."""
    rng = np.random.default_rng(seed)
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []

    def conv(prefix: str, x: str, cin: int, cout: int, stride: int, k: int = 3, act: str | None = "Relu") -> str:
        w = (rng.standard_normal((cout, cin, k, k)) * (1.2 / np.sqrt(cin * k * k))).astype(np.float32)
        b = (rng.standard_normal(cout) * 0.1).astype(np.float32)
        wname, bname = f"{prefix.strip('/').replace('/', '.')}.weight", f"{prefix.strip('/').replace('/', '.')}.bias"
        inits.extend([numpy_helper.from_array(w, wname), numpy_helper.from_array(b, bname)])
        out = f"{prefix}/Conv_output_0"
        pad = k // 2
        nodes.append(
            helper.make_node(
                "Conv", [x, wname, bname], [out], name=f"{prefix}/Conv", pads=[pad] * 4, strides=[stride, stride]
            )
        )
        if act is None:
            return out
        act_out = f"{prefix}/{act}_output_0"
        nodes.append(helper.make_node(act, [out], [act_out], name=f"{prefix}/{act}"))
        return act_out

    x = conv("/backbone/stem", "images", 3, 8, 2)
    x = conv("/backbone/stage1", x, 8, 16, 2)
    p3 = conv("/backbone/stage2", x, 16, 16, 2)
    p4 = conv("/backbone/stage3", p3, 16, 32, 2)
    p5 = conv("/backbone/stage4", p4, 32, 32, 2)
    inits.append(numpy_helper.from_array(np.array(2.0, np.float32), "/detect/Constant_output_0"))
    for i, (feat, cin) in enumerate(((p3, 16), (p4, 32), (p5, 32))):
        reg = conv(f"/detect/reg_preds.{i}", feat, cin, 4, 1, k=1)
        dist = f"/detect/Mul_{i}_output_0"
        nodes.append(helper.make_node("Mul", [reg, "/detect/Constant_output_0"], [dist], name=f"/detect/Mul_{i}"))
        cls = conv(f"/detect/cls_preds.{i}", feat, cin, len(CLASSES), 1, k=1, act="Sigmoid")
        conf = f"/detect/ReduceMax_{i}_output_0"
        nodes.append(helper.make_node("ReduceMax", [cls], [conf], name=f"/detect/ReduceMax_{i}", axes=[1], keepdims=1))
        nodes.append(helper.make_node("Concat", [dist, conf, cls], [OUTPUTS[i]], name=f"/detect/Concat_{i}", axis=1))
    inits.append(numpy_helper.from_array(np.array([8, 8, 6], np.int64), "/detect/Reshape_dbg_shape"))
    nodes.append(
        helper.make_node(
            "Reshape",
            ["/detect/Mul_0_output_0", "/detect/Reshape_dbg_shape"],
            ["/detect/Reshape_dbg_output_0"],
            name="/detect/Reshape_dbg",
        )
    )
    grids = [(HEIGHT // s, WIDTH // s) for s in (8, 16, 32)]
    graph = helper.make_graph(
        nodes,
        "tiny-yolov6r2",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, HEIGHT, WIDTH])],
        [
            helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 4 + 1 + len(CLASSES), h, w])
            for name, (h, w) in zip(OUTPUTS, grids, strict=True)
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


# Boxes written by hand (x, y, w, h in pixels of the 96x64 images; COCO ids 1 person, 3 car), not detections of
# any model: the tiny model is random, so its AP on them is near 0 on both sides and proves nothing; the accuracy
# figures are checked on the demo detector and its real labels (demo_dlc, test_snpe_target.py).
HAND_BOXES: dict[int, list[tuple[int, tuple[float, float, float, float]]]] = {
    1: [(1, (10.0, 8.0, 20.0, 40.0)), (3, (50.0, 30.0, 36.0, 22.0))],
    2: [(3, (4.0, 20.0, 40.0, 30.0))],
    3: [(1, (60.0, 4.0, 18.0, 50.0)), (1, (30.0, 10.0, 16.0, 44.0)), (3, (2.0, 40.0, 30.0, 20.0))],
}


def hand_annotations(images: Path, out: Path) -> Path:
    """A COCO file for the PNG images of ``images`` (sorted; ids 1, 2, ...) with the boxes of ``HAND_BOXES``."""
    from PIL import Image

    data: dict[str, list[dict[str, object]]] = {
        "images": [],
        "annotations": [],
        "categories": [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}],
    }
    for k, path in enumerate(sorted(images.glob("*.png")), 1):
        w, h = Image.open(path).size
        data["images"].append({"id": k, "file_name": path.name, "width": w, "height": h})
        for category, (x, y, bw, bh) in HAND_BOXES[k]:
            data["annotations"].append(
                {
                    "id": len(data["annotations"]) + 1,
                    "image_id": k,
                    "category_id": category,
                    "bbox": [x, y, bw, bh],
                    "area": bw * bh,
                    "iscrowd": 0,
                }
            )
    out.write_text(json.dumps(data))
    return out


def feeds(folder: Path) -> Iterator[dict[str, np.ndarray]]:
    """Images of ``folder`` preprocessed like the test models.yaml does (letterbox to 64x96, 0..1, NCHW)."""
    from PIL import Image

    from qc.config import Preprocess
    from qc.data.preprocess import preprocess

    for path in sorted(folder.glob("*.png")):
        rgb = np.asarray(Image.open(path).convert("RGB"))
        tensor, _ = preprocess(rgb, Preprocess(size=(HEIGHT, WIDTH)), (HEIGHT, WIDTH))
        yield {"images": tensor}


def make_assets(folder: Path, *, eval_images: int = 3) -> dict[str, Path]:
    """model.onnx, model.dlc (fake, calibrated), eval/ (+ annotations.json), calib/ in ``folder``."""
    from tests.fake_snpe.dlc import build_dlc

    model = tiny_yolov6(folder / "model.onnx")
    write_images(folder / "eval", eval_images, seed=3, size=(HEIGHT, WIDTH))
    write_images(folder / "calib", 4, seed=3, size=(HEIGHT, WIDTH))
    ann = hand_annotations(folder / "eval", folder / "eval" / "annotations.json")
    dlc = build_dlc(model, list(feeds(folder / "calib")), folder / "model.dlc", graph="tiny-yolov6r2")
    return {"model": model, "dlc": dlc, "eval": folder / "eval", "annotations": ann, "calib": folder / "calib"}


# The demo detector (qc assets): YOLOv3-tiny whose graph ends in box decoding (``decode/*`` -> ``yolo_decoded``).
DEMO_MODEL = "yolov3-tiny-coco.onnx"
DEMO_PREPROCESS = {"size": [416, 416], "mode": "letterbox", "pad_value": 127.5, "scale": 1 / 255}


def demo_feeds(folder: Path) -> Iterator[dict[str, np.ndarray]]:
    """Every image of ``folder`` preprocessed like models.yaml's demo entries (letterbox 416, pad 127.5, 0..1)."""
    from PIL import Image

    from qc.config import Preprocess
    from qc.data.preprocess import preprocess

    settings = Preprocess.model_validate(DEMO_PREPROCESS)
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg")):
        rgb = np.asarray(Image.open(path).convert("RGB"))
        tensor, _ = preprocess(rgb, settings, (416, 416))
        yield {"images": tensor}


def demo_dlc(root: Path, out: Path) -> Path:
    """A fake DLC of the demo detector calibrated on ``root/calibration``; the box decoding (every tensor of the
    ``decode/`` nodes and ``yolo_decoded``) stays in float, as a DLC converted with the decoding kept out of
    quantization would: one 8-bit scale for 0..416 pixels and 0..1 scores would zero the scores."""
    from tests.fake_snpe.dlc import build_dlc

    model = root / DEMO_MODEL
    graph = onnx.load(str(model)).graph
    floats = [o for n in graph.node if n.name.startswith("decode/") for o in n.output]
    return build_dlc(model, list(demo_feeds(root / "calibration")), out, float_tensors=floats, graph="yolov3-tiny")
