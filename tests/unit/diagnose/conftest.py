"""A tiny QDQ model (onnx.helper + onnxruntime quantize_static) and plain onnxruntime helpers for the tests."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from qc.config import QuantSettings
from qc.runners.quantize import quantize_int8
from tests.models import tiny_detector


@dataclass(frozen=True)
class TinyQdq:
    reference: Path
    target: Path

    def feed(self, seed: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        return {"images": rng.uniform(0.0, 1.0, (1, 3, 32, 32)).astype(np.float32)}


def run_model(model: Any, feeds: Mapping[str, np.ndarray], outputs: list[str] | None = None) -> dict[str, np.ndarray]:
    """Run an in-memory model with every graph optimization off (no fused kernels), exposing ``outputs``."""
    import onnxruntime as ort

    from qc.runners.ort import describe, expose_all

    if outputs is not None:
        _, infos = describe(model)
        model = expose_all(model, infos, outputs)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, dict(feeds)), strict=True))


def float_tensors(model: Any) -> list[str]:
    from qc.runners.ort import describe

    graph, _ = describe(model)
    return [t.name for t in graph.tensors if t.dtype in ("float32", "float16")]


@pytest.fixture(scope="session")
def tiny_qdq(tmp_path_factory: pytest.TempPathFactory) -> TinyQdq:
    """tests.models.tiny_detector (Conv, Relu, Conv, Slice, Mul x100 boxes, Sigmoid scores, Concat) at int8."""
    folder = tmp_path_factory.mktemp("tiny-qdq")
    reference = tiny_detector(folder / "tiny.onnx")
    rng = np.random.default_rng(0)
    calibration = [{"images": rng.uniform(0.0, 1.0, (1, 3, 32, 32)).astype(np.float32)} for _ in range(4)]
    target = folder / "tiny.int8.onnx"
    quantize_int8(reference, QuantSettings(), calibration, target, "tiny")
    onnx.checker.check_model(str(target))
    return TinyQdq(reference, target)
