"""The demo detector (YOLOv3-tiny, 416x416) quantized for and run on the real HTP simulator: one image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qc.assets import AssetPaths
from qc.config import ImageData, Preprocess, QuantSettings
from qc.data.images import iter_images, load_image_set
from qc.data.preprocess import preprocess
from qc.qnn.expose import expose_activations, max_abs_change
from qc.qnn.profile import onnx_node_types, read_htp_profile
from qc.qnn.quantize import quantize_htp
from qc.qnn.session import HtpOptions, create_htp_session, run_session

pytestmark = pytest.mark.usefixtures("htp_backend")
SPEC = Preprocess(size=(416, 416), mode="letterbox", pad_value=127.5, channel_order="RGB", scale=1 / 255)


def _feeds(folder: Path, limit: int) -> list[dict[str, np.ndarray]]:
    images = load_image_set(ImageData(folder=folder), limit=limit)
    return [{"images": preprocess(rgb, SPEC, (416, 416))[0]} for _, rgb in iter_images(images)]


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    x, y = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y)))


def test_whole_int8_detector_runs_on_htp_and_profiles_its_layers(demo_assets: AssetPaths, tmp_path: Path) -> None:
    import onnxruntime as ort

    qdq = tmp_path / "yolov3-tiny-htp.onnx"
    assert quantize_htp(demo_assets.model, QuantSettings(), _feeds(demo_assets.calibration, 2), qdq, "demo") == 2
    csv = tmp_path / "profile.csv"
    session = create_htp_session(qdq, HtpOptions(profiling="detailed", profile_path=csv), entry="demo")
    (feeds,) = _feeds(demo_assets.eval_images, 1)
    htp = run_session(session, feeds)
    del session
    cpu_session = ort.InferenceSession(str(qdq), providers=["CPUExecutionProvider"])
    cpu = dict(zip([o.name for o in cpu_session.get_outputs()], cpu_session.run(None, feeds), strict=True))
    for head in ("head_13", "head_26"):  # the raw heads: HTP and onnxruntime's int8 kernels nearly agree
        assert htp[head].shape == cpu[head].shape
        assert _cosine(htp[head], cpu[head]) > 0.99
        assert not np.array_equal(htp[head], cpu[head])  # yet HTP arithmetic is not the host's
    # per-layer tensors: exposing the activations (not the Conv outputs HTP fuses away) leaves the heads and the
    # decoded output bit-identical (measured; exposing those too changed them by up to 561)
    exposed = tmp_path / "exposed.onnx"
    names = expose_activations(qdq, exposed)
    both = run_session(create_htp_session(exposed, entry="demo-exposed"), feeds)
    assert set(names) <= set(both)
    assert max_abs_change(htp, {k: both[k] for k in htp}) == 0.0
    profile = read_htp_profile(csv, onnx_node_types(qdq))
    rows = profile.layer_rows()
    mapped = sum(r.time for r in rows if "HTP-inserted" not in r.op_type)
    assert mapped / sum(r.time for r in rows) > 0.9  # most cycles land on the model's own nodes
    assert {r.op_type for r in profile.top_ops(5)} & {"LeakyRelu", "Conv"}  # Conv+LeakyRelu fused, on leaky_*
