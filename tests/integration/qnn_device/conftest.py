"""Fixtures for the ``qnn`` device target: a tiny QDQ model, fake context binaries, the fake QNN toolkit on the
throwaway sshd of tests/sshd.py, and runners built on them."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from qc.config import DeviceSpec, QuantSettings
from qc.qnn.device_runner import QnnDeviceRunner
from qc.qnn.device_settings import QnnDeviceTarget
from qc.runners.ort import OrtRunner
from qc.runners.quantize import quantize_int8
from tests.fake_qnn import install
from tests.fake_qnn.context import build_context
from tests.sshd import SshdServer

FAKE_VERSIONS = ("qnn-2.1x", "qairt-2.4x")
H, W = 32, 48
OUTPUTS = ("7", "/head/Sigmoid_output_0")


def tiny_model(path: Path, seed: int = 0) -> Path:
    """``images`` (1,3,32,48) -> Conv3x3 s2 + Relu (8) -> Conv1x1 (4) -> output ``7`` (torch.onnx's numeric name),
    and Sigmoid of it -> ``/head/Sigmoid_output_0``: names the QNN tools must turn into identifiers."""
    rng = np.random.default_rng(seed)
    w1 = (rng.standard_normal((8, 3, 3, 3)) * 0.4).astype(np.float32)
    b1 = (rng.standard_normal(8) * 0.1).astype(np.float32)
    w2 = (rng.standard_normal((4, 8, 1, 1)) * 0.5).astype(np.float32)
    b2 = (rng.standard_normal(4) * 0.1).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["images", "w1", "b1"], ["c1"], name="/stem/Conv", pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c1"], ["r1"], name="/stem/Relu"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["7"], name="/head/Conv"),
        helper.make_node("Sigmoid", ["7"], ["/head/Sigmoid_output_0"], name="/head/Sigmoid"),
    ]
    inits = [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"))]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, H, W])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4, H // 2, W // 2]) for n in OUTPUTS],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def feeds(n: int, seed: int = 1) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"images": rng.random((1, 3, H, W), dtype=np.float32)} for _ in range(n)]


@dataclass(frozen=True)
class QnnAssets:
    folder: Path
    model: Path
    qdq: Path
    bin: Path

    def context(self, layout: str, identifiers: bool, quantized_io: bool = True) -> Path:
        out = self.folder / f"ctx-{layout}-{int(identifiers)}-{int(quantized_io)}.bin"
        if not out.is_file():
            build_context(
                self.qdq, out, graph="tiny_model", layout=layout, identifiers=identifiers, quantized_io=quantized_io
            )
        return out


@pytest.fixture(scope="session")
def qnn_assets(tmp_path_factory: pytest.TempPathFactory) -> QnnAssets:
    folder = tmp_path_factory.mktemp("qnn-device-assets")
    model = tiny_model(folder / "model.onnx")
    qdq = folder / "model.qdq.onnx"
    quantize_int8(model, QuantSettings(per_channel=False), feeds(8, seed=7), qdq, "tiny")
    return QnnAssets(folder, model, qdq, install(folder / "fake-qnn-bin"))


@pytest.fixture(scope="session")
def reference(qnn_assets: QnnAssets) -> OrtRunner:
    return OrtRunner("reference", qnn_assets.model)


@pytest.fixture
def fake_version(request: pytest.FixtureRequest) -> str:
    return str(getattr(request, "param", FAKE_VERSIONS[-1]))


DeviceFactory = Callable[..., DeviceSpec]


@pytest.fixture
def qnn_device(sshd_server: SshdServer, qnn_assets: QnnAssets, tmp_path: Path, fake_version: str) -> DeviceFactory:
    """A DeviceSpec on the test sshd with the fake QNN toolkit on the PATH, printing ``fake_version``'s formats."""

    def make(**overrides: Any) -> DeviceSpec:
        env = {"FAKE_QNN_LOG": str(tmp_path / "calls.jsonl"), "FAKE_QNN_VERSION": fake_version}
        env.update(overrides.pop("env", {}))
        fields: dict[str, Any] = {
            "name": f"fake-rvc4-{secrets.token_hex(3)}",
            "host": sshd_server.host,
            "port": sshd_server.port,
            "user": sshd_server.user,
            "auth": {"key_file": sshd_server.client_key},
            "known_hosts": sshd_server.known_hosts,
            "remote_root": str(tmp_path / "device"),
            "setup": f"export PATH={qnn_assets.bin}:$PATH",
            "env": env,
            "connect_timeout_s": 10.0,
        }
        fields.update(overrides)
        return DeviceSpec.model_validate(fields)

    return make


RunnerFactory = Callable[..., QnnDeviceRunner]


@pytest.fixture
def qnn_runner(qnn_assets: QnnAssets, reference: OrtRunner, tmp_path: Path) -> Iterator[RunnerFactory]:
    made: list[QnnDeviceRunner] = []

    def make(
        device: DeviceSpec, *, layout: str = "nhwc", identifiers: bool = True, quantized_io: bool = True, **target: Any
    ) -> QnnDeviceRunner:
        spec = QnnDeviceTarget.model_validate(
            {
                "kind": "qnn",
                "context_binary": qnn_assets.context(layout, identifiers, quantized_io),
                "source_model": qnn_assets.qdq,
                "devices": [device.name],
                "speed_inferences": 5,
                **target,
            }
        )
        runner = QnnDeviceRunner("tiny (qnn)", spec, [device], reference=reference.graph, lock_dir=tmp_path / "locks")
        made.append(runner)
        return runner

    yield make
    for runner in made:
        runner.close()


def tool_calls(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
