"""A ``kind: qnn`` test project: the miniature YOLOv6 of tests/integration/snpe/helpers.py (labelled eval images,
calibration images), its QDQ model and a fake context binary of it (tests/fake_qnn/context.py), with the fake QNN
toolkit installed beside them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from qc.config import QuantSettings
from qc.runners.quantize import quantize_int8
from tests.fake_qnn import install
from tests.fake_qnn.context import build_context
from tests.integration.snpe.helpers import OUTPUTS, feeds, make_assets

__all__ = ["OUTPUTS", "QnnYolo", "make_qnn_yolo"]


@dataclass(frozen=True)
class QnnYolo:
    folder: Path
    model: Path
    qdq: Path
    context: Path
    eval: Path
    annotations: Path
    calib: Path
    bin: Path


def make_qnn_yolo(folder: Path) -> QnnYolo:
    """model.onnx, model.qdq.onnx, model_qnn.bin (a fake context: NHWC, identifier names, 8-bit I/O), eval/ with
    annotations, calib/ and the fake QNN tools in ``folder``."""
    made = make_assets(folder)
    qdq = folder / "model.qdq.onnx"
    quantize_int8(made["model"], QuantSettings(per_channel=False), list(feeds(made["calib"])), qdq, "tiny-yolo")
    context = build_context(qdq, folder / "model_qnn.bin", graph="tiny_yolov6", layout="nhwc", identifiers=True)
    return QnnYolo(
        folder,
        made["model"],
        qdq,
        context,
        made["eval"],
        made["annotations"],
        made["calib"],
        install(folder / "fake-qnn-bin"),
    )
