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


def coco_annotations(model: Path, images: Path, out: Path, *, per_image: int = 3) -> Path:
    """A COCO file whose boxes are the reference model's own most confident detections on ``images``: the
    reference scores a high AP, so the mAP gates measure a real drop of the target (a random model's AP on
    arbitrary boxes would be 0 on both sides)."""
    from PIL import Image

    from qc.eval.decoders import DecodeSettings, decode_yolov6r2
    from qc.runners.ort import OrtRunner

    runner = OrtRunner("annotator", model)
    settings = DecodeSettings.deploy(input_hw=(HEIGHT, WIDTH), num_classes=len(CLASSES), output_names=OUTPUTS)
    category = {0: 1, 1: 3}  # person, car
    data: dict[str, list[dict[str, object]]] = {
        "images": [],
        "annotations": [],
        "categories": [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}],
    }
    paths = sorted(images.glob("*.png"))
    for k, (path, feed) in enumerate(zip(paths, feeds(images), strict=True), 1):
        w, h = Image.open(path).size
        data["images"].append({"id": k, "file_name": path.name, "width": w, "height": h})
        found = decode_yolov6r2(runner.run(feed), settings)[0]
        order = np.argsort(-found.scores)[:per_image]
        for j in order:
            x1, y1, x2, y2 = (float(v) for v in found.boxes[j])
            data["annotations"].append(
                {
                    "id": len(data["annotations"]) + 1,
                    "image_id": k,
                    "category_id": category[int(found.classes[j])],
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
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
    ann = coco_annotations(model, folder / "eval", folder / "eval" / "annotations.json")
    dlc = build_dlc(model, list(feeds(folder / "calib")), folder / "model.dlc", graph="tiny-yolov6r2")
    return {"model": model, "dlc": dlc, "eval": folder / "eval", "annotations": ann, "calib": folder / "calib"}
