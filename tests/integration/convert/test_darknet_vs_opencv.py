"""qc's darknet converter against OpenCV's own darknet importer, on the real YOLOv3-tiny and real photos."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import pytest

from qc.assets import AssetPaths
from qc.convert.darknet import DarknetModel, convert_darknet

F32 = npt.NDArray[np.float32]

DECODED_TOL = 1e-4  # boxes as fractions of the input size, objectness, objectness * class probability
# OpenCV folds batch norm with eps 1e-6, darknet (and qc) with 1e-5: that alone moves the raw heads by about
# 1e-3 (about 1.5e-4 when both use 1e-6). A wrong layer moves them by whole units.
HEADS_TOL = 3e-3


def _assets(demo_assets: AssetPaths) -> tuple[Path, Path, list[Path]]:
    """yolov3-tiny cfg, weights and the evaluation photos from the demo asset cache."""
    photos = sorted(demo_assets.eval_images.glob("*.jpg"))
    if not photos:
        pytest.fail(f"no .jpg photos in {demo_assets.eval_images}.")
    return demo_assets.cfg, demo_assets.weights, photos


def _letterbox(path: Path, size: int) -> F32:
    """darknet preprocessing: keep the aspect ratio, pad with 0.5 gray, RGB in [0, 1], NCHW."""
    bgr = cv2.imread(str(path))
    if bgr is None:
        pytest.fail(f"OpenCV cannot read the photo {path}.")
    h, w = bgr.shape[:2]
    scale = min(size / w, size / h)
    new_w, new_h = round(w * scale), round(h * scale)
    rgb = cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    canvas = np.full((size, size, 3), 0.5, np.float32)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    canvas[top : top + new_h, left : left + new_w] = rgb.astype(np.float32) / 255.0
    return np.ascontiguousarray(canvas.transpose(2, 0, 1)[None])


def _opencv_net(cfg: Path, weights: Path, tmp_path: Path) -> cv2.dnn.Net:
    """OpenCV's importer with thresh=0 and nms_threshold=0, so that no class score is zeroed or suppressed."""
    raw_cfg = tmp_path / "opencv.cfg"
    raw_cfg.write_text(cfg.read_text().replace("[yolo]", "[yolo]\nthresh=0\nnms_threshold=0"))
    return cv2.dnn.readNetFromDarknet(str(raw_cfg), str(weights))


def _opencv_units(decoded: F32, width: int, height: int) -> F32:
    """qc's decoded rows in OpenCV's units: boxes / input size, class probability * objectness."""
    out = decoded.copy()
    out[:, :4] /= np.array([width, height, width, height], np.float32)
    out[:, 5:] *= out[:, 4:5]
    return out


def test_yolov3_tiny_consumes_every_float(demo_assets: AssetPaths) -> None:
    cfg, weights, _ = _assets(demo_assets)
    model = DarknetModel.from_cfg(cfg.read_text())
    assert model.float_count == 8_858_734
    assert (weights.stat().st_size - 20) // 4 == model.float_count  # header 0.2: 3 x int32 + int64 seen


def test_converted_yolov3_tiny_matches_opencv(tmp_path: Path, demo_assets: AssetPaths) -> None:
    cfg, weights, photos = _assets(demo_assets)
    model = DarknetModel.from_cfg(cfg.read_text())
    convert_darknet(cfg, weights, tmp_path / "yolov3-tiny.onnx")
    session = ort.InferenceSession(str(tmp_path / "yolov3-tiny.onnx"), providers=["CPUExecutionProvider"])
    net = _opencv_net(cfg, weights, tmp_path)
    # OpenCV names a [yolo] layer i `yolo_i` and the conv before it `conv_{i-1}`.
    cv_names = [f"conv_{i - 1}" for i in model.heads] + [f"yolo_{i}" for i in model.heads]
    grids = [model.layers[i].shape[1:] for i in model.heads]
    head_names = [f"head_{h}" for h, _ in grids]
    assert head_names == ["head_13", "head_26"]

    worst = dict.fromkeys(["yolo_decoded", *head_names], 0.0)
    for photo in photos:
        blob = _letterbox(photo, model.width)
        *heads, decoded = session.run([*head_names, "yolo_decoded"], {"images": blob})
        net.setInput(blob)
        cv_outputs = net.forward(cv_names)
        cv_heads, cv_yolos = cv_outputs[: len(grids)], cv_outputs[len(grids) :]
        # OpenCV's rows per head are (y, x, anchor)-ordered; qc's are (anchor, y, x).
        cv_decoded = np.concatenate(
            [
                rows.reshape(h, w, len(anchors), -1).transpose(2, 0, 1, 3).reshape(len(rows), -1)
                for rows, (h, w), anchors in zip(cv_yolos, grids, model.anchors, strict=True)
            ]
        )
        assert np.all(cv_decoded[:, 5:] > 0), "OpenCV zeroed class scores: thresh=0 was not applied."
        mine = _opencv_units(decoded[0], model.width, model.height)
        worst["yolo_decoded"] = max(worst["yolo_decoded"], float(np.abs(mine - cv_decoded).max()))
        for name, head, cv_head in zip(head_names, heads, cv_heads, strict=True):
            worst[name] = max(worst[name], float(np.abs(head - cv_head).max()))

    print(f"max abs diff vs OpenCV over {len(photos)} photos: {worst}")
    assert worst["yolo_decoded"] <= DECODED_TOL, worst
    assert all(worst[name] <= HEADS_TOL for name in head_names), worst
