"""A ``qnn`` target without a context binary: export one from the reference with the HTP settings (real
onnxruntime-qnn; fails under CI=true when it is missing, never skips there)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from qc.qnn.context import context_session
from qc.qnn.device_runner import export_for_target
from qc.qnn.device_settings import QnnDeviceTarget
from qc.qnn.session import htp_missing
from tests.integration.qnn_device.conftest import QnnAssets, feeds


@pytest.fixture(scope="module")
def htp_backend() -> None:
    missing = htp_missing()
    if missing is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"the HTP backend is required in CI: {missing}", pytrace=False)
    pytest.skip(f"the HTP backend is unavailable: {missing}")


def test_export_for_target(htp_backend: None, qnn_assets: QnnAssets, tmp_path: Path) -> None:
    spec = QnnDeviceTarget.model_validate({"kind": "qnn", "devices": ["d"], "per_channel": False})
    binary, qdq = export_for_target(spec, qnn_assets.model, feeds(6, seed=7), tmp_path / "export", "tiny")
    assert binary.is_file()
    assert binary.stat().st_size > 0
    assert qdq.is_file()
    # the exported context runs back on the host HTP simulator with the QDQ model's outputs
    session = context_session(binary.with_suffix(".onnx"))
    feed = feeds(1)[0]
    out = dict(zip([o.name for o in session.get_outputs()], session.run(None, feed), strict=True))
    assert set(out) == {"7", "/head/Sigmoid_output_0"}
    assert np.all(np.isfinite(out["7"]))


def test_a_qnn_entry_without_a_context_binary_exports_one_once(
    htp_backend: None, qnn_assets: QnnAssets, tmp_path: Path
) -> None:
    """The target's own export path (real onnxruntime-qnn): calibration images through the entry's preprocessing,
    the binary cached under the stage cache, the same bytes (and key) from a second target, target_run.json's
    summary naming the export. No device is contacted: the binary only runs on a real HTP."""
    from qc.cache import StageCache
    from qc.config import DeviceSpec, ModelSpec
    from qc.pipeline import Context, ModelStages
    from qc.targets.qnn import Qnn
    from tests.integration.qnn_device.conftest import H, W
    from tests.models import write_images

    images = write_images(tmp_path / "calib", 4, seed=5, size=(H, W))
    device = DeviceSpec.model_validate({"name": "d", "host": "192.0.2.1", "user": "u", "auth": {"agent": True}})
    spec = ModelSpec.model_validate(
        {
            "name": "tiny-export",
            "reference": qnn_assets.model,
            "target": {"kind": "qnn", "devices": ["d"], "per_channel": False},
            "eval_data": {"folder": images},
            "calibration": {"folder": images},
        }
    )

    def target() -> Qnn:
        return Qnn(ModelStages(spec, Context(StageCache(tmp_path / "cache"), tmp_path / "r", devices=(device,))))

    first = target()
    source = first.context()
    assert source.exported
    assert source.binary.is_file()
    assert source.binary.stat().st_size > 0
    assert source.qdq_model is not None
    assert source.qdq_model.is_file()
    assert source.source_model == source.qdq_model
    assert str(tmp_path / "cache") in str(source.binary)
    summary = first.context_summary()
    assert summary["origin"] == "exported by qc from the reference"
    assert (summary["htp_arch"], summary["soc_model"]) == (73, 66)
    assert "exported by qc from the reference" in first.comparison_note()
    assert [m.split("/")[0] for m in first.stages.ctx.cache.misses] == ["qnn-context"]
    second = target()
    assert second.context().binary == source.binary
    assert list(second.stages.ctx.cache.misses) == []  # from the cache, not exported again
    assert second.key() == first.key()
    # qc export writes the same deployable context (prepared again from the cached QDQ model) for the device
    exported = second.export_context_binary(tmp_path / "out" / "tiny.bin")
    assert exported.binaries == (tmp_path / "out" / "tiny.bin",)
    assert exported.binaries[0].stat().st_size > 0
    assert exported.model.is_file()
    assert exported.sdk_version
