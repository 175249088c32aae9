"""The real HTP backend (onnxruntime-qnn's simulator): tests fail under CI=true when it is missing, never skip."""

from __future__ import annotations

import os

import pytest

from qc.qnn.session import htp_missing


@pytest.fixture(scope="session")
def htp_backend() -> None:
    missing = htp_missing()
    if missing is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"the HTP backend is required in CI: {missing}", pytrace=False)
    pytest.skip(f"the HTP backend is unavailable: {missing}")
