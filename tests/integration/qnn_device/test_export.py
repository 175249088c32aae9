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
