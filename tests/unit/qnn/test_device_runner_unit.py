"""QnnDeviceRunner and QnnDeviceTarget without a device: settings validation, refusals before any tool runs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from qc.config import DeviceSpec
from qc.errors import DeviceError, ModelError
from qc.qnn.device_runner import QnnDeviceRunner
from qc.qnn.device_settings import QnnDeviceTarget
from qc.runners.base import GraphTensors, TensorInfo

FORMATS = Path(__file__).resolve().parents[2] / "fake_qnn" / "formats"
DEVICE = DeviceSpec.model_validate({"name": "here", "local": True})


def reference() -> GraphTensors:
    return GraphTensors(
        inputs={"images": (1, 3, 64, 96)},
        outputs=("7",),
        tensors=(TensorInfo(0, "7", "Conv", "/head/Conv", (1, 7, 8, 12), "float32"),),
    )


def spec(**fields: object) -> QnnDeviceTarget:
    return QnnDeviceTarget.model_validate({"kind": "qnn", "devices": ["here"], **fields})


def test_settings_validation() -> None:
    assert spec().backend == "libQnnHtp.so"
    with pytest.raises(ValidationError, match="perf_profile 'turbo' is not one of"):
        spec(perf_profile="turbo")
    with pytest.raises(ValidationError, match="without control characters"):
        spec(backend="libQnnHtp.so\nrm -rf /")
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        spec(dlc="x.dlc")


def test_refusals(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no context binary: set context_binary"):
        QnnDeviceRunner("m", spec(), [DEVICE], reference=reference, lock_dir=tmp_path)
    with pytest.raises(DeviceError, match=r"device\(s\) \['other'\] are not in"):
        QnnDeviceRunner(
            "m",
            spec(devices=["other"], context_binary=tmp_path / "c.bin"),
            [DEVICE],
            reference=reference,
            lock_dir=tmp_path,
        )
    runner = QnnDeviceRunner(
        "m", spec(context_binary=tmp_path / "c.bin"), [DEVICE], reference=reference, lock_dir=tmp_path
    )
    with pytest.raises(ModelError, match=r"context binary not found: .*c\.bin"):
        runner.context_info()


def _cached_runner(tmp_path: Path, doc: dict[str, object]) -> QnnDeviceRunner:
    context = tmp_path / "c.bin"
    context.write_bytes(b"not a real context")
    cache = tmp_path / "cache"
    digest = hashlib.sha256(context.read_bytes()).hexdigest()
    (cache / "qnn-context-info").mkdir(parents=True)
    (cache / "qnn-context-info" / f"{digest}.json").write_text(json.dumps(doc))
    return QnnDeviceRunner(
        "m", spec(context_binary=context), [DEVICE], reference=reference, lock_dir=tmp_path, cache_dir=cache
    )


def test_multi_graph_contexts_are_refused(tmp_path: Path) -> None:
    doc = json.loads((FORMATS / "qnn-2.1x" / "context.json").read_text())
    second = json.loads(json.dumps(doc["info"]["graphs"][0]))
    second["info"]["graphName"] = "decoder"
    doc["info"]["graphs"].append(second)
    with pytest.raises(ModelError, match=r"holds 2 graphs \(\['model', 'decoder'\]\)"):
        _cached_runner(tmp_path, doc).context_info()


def test_io_plan_from_cached_table(tmp_path: Path) -> None:
    doc = json.loads((FORMATS / "qnn-2.1x" / "context.json").read_text())
    runner = _cached_runner(tmp_path, doc)
    rows = {r["reference"]: r for r in runner.tensor_map_rows()}
    assert rows["images"]["permutation"] == "0 3 1 2"  # the context's input is NHWC
    assert rows["7"]["target"] == "_7"
    graph = runner.graph()
    assert graph.outputs == ("_7", "scores")
    with pytest.raises(ModelError, match="qnn-htp"):
        runner.run_all({})
