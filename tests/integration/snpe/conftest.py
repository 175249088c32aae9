"""Fixtures for the SNPE target tests: the miniature YOLOv6 with its fake DLC, the fake toolkit, devices on the
throwaway sshd of tests/sshd.py (root, key auth), and runners built on them."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qc.config import DeviceSpec, SnpeTarget
from qc.runners.ort import OrtRunner
from qc.snpe.runner import SnpeRunner
from tests.fake_snpe import install
from tests.integration.snpe.helpers import feeds, make_assets
from tests.sshd import SshdServer


@dataclass(frozen=True)
class SnpeAssets:
    folder: Path
    model: Path
    dlc: Path
    eval: Path
    annotations: Path
    bin: Path

    def feeds(self) -> list[dict[str, np.ndarray]]:
        return list(feeds(self.eval))


@pytest.fixture(scope="session")
def snpe_assets(tmp_path_factory: pytest.TempPathFactory) -> SnpeAssets:
    folder = tmp_path_factory.mktemp("snpe-assets")
    made = make_assets(folder)
    return SnpeAssets(
        folder, made["model"], made["dlc"], made["eval"], made["annotations"], install(folder / "fake-snpe-bin")
    )


@pytest.fixture(scope="session")
def reference(snpe_assets: SnpeAssets) -> OrtRunner:
    return OrtRunner("reference", snpe_assets.model)


DeviceFactory = Callable[..., DeviceSpec]
FAKE_VERSIONS = ("snpe-2.9", "qairt-2.37")
"""SDK versions whose output formats the fake toolkit prints (tests/fake_snpe/formats/<version>/templates)."""


@pytest.fixture
def fake_version(request: pytest.FixtureRequest) -> str:
    """The SDK version the fake toolkit imitates (parametrize indirectly to choose; default the newest)."""
    return str(getattr(request, "param", FAKE_VERSIONS[-1]))


@pytest.fixture
def snpe_device(sshd_server: SshdServer, snpe_assets: SnpeAssets, tmp_path: Path, fake_version: str) -> DeviceFactory:
    """A DeviceSpec on the test sshd with the fake toolkit on the session's PATH, printing the formats of
    ``fake_version``; keywords override fields."""

    def make(**overrides: Any) -> DeviceSpec:
        fields: dict[str, Any] = {
            "name": f"fake-rvc4-{secrets.token_hex(3)}",
            "host": sshd_server.host,
            "port": sshd_server.port,
            "user": sshd_server.user,
            "auth": {"key_file": sshd_server.client_key},
            "known_hosts": sshd_server.known_hosts,
            "remote_root": str(tmp_path / "device"),
            "setup": f"export PATH={snpe_assets.bin}:$PATH",
            "env": {"FAKE_SNPE_LOG": str(tmp_path / "calls.jsonl"), "FAKE_SNPE_VERSION": fake_version},
            "connect_timeout_s": 10.0,
        }
        fields.update(overrides)
        return DeviceSpec.model_validate(fields)

    return make


RunnerFactory = Callable[..., SnpeRunner]


@pytest.fixture
def snpe_runner(snpe_assets: SnpeAssets, reference: OrtRunner, tmp_path: Path) -> Iterator[RunnerFactory]:
    """A SnpeRunner for one device; keywords override SnpeTarget fields. Closed (run folders removed) at the end."""
    made: list[SnpeRunner] = []

    def make(device: DeviceSpec, **target: Any) -> SnpeRunner:
        spec = SnpeTarget.model_validate(
            {"kind": "snpe", "dlc": snpe_assets.dlc, "devices": [device.name], "throughput_duration_s": 1, **target}
        )
        runner = SnpeRunner("tiny (target)", spec, [device], reference=reference.graph, lock_dir=tmp_path / "locks")
        made.append(runner)
        return runner

    yield make
    for runner in made:
        runner.close()


def tool_calls(tmp_path: Path) -> list[dict[str, Any]]:
    """The fake toolkit's call log of a test (``FAKE_SNPE_LOG``)."""
    path = tmp_path / "calls.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
