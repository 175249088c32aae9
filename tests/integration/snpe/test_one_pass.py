"""One device pass per image: a cold comparison + accuracy runs ``snpe-net-run`` once per batch (the debug run,
whose dumps of the output tensors are the accuracy's final outputs) and uploads each image's input once.

Through real OpenSSH (tests/sshd.py) and the fake SNPE toolkit's call log; bytes are counted by wrapping the SSH
transport's transfer methods (sizes of the local files sent and received).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import pytest

from qc.cache import StageCache
from qc.config import ModelSpec
from qc.device.transport.ssh import SshTransport
from qc.pipeline import Context, ModelStages
from qc.snpe.runner import SnpeRunner
from tests.integration.snpe.conftest import DeviceFactory, SnpeAssets, tool_calls
from tests.integration.snpe.helpers import OUTPUTS

BATCH = 2


def _size(path: str | os.PathLike[str]) -> int:
    p = Path(path)
    return p.stat().st_size if p.is_file() else sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def _count_transfers(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    counts = {"up_bytes": 0, "down_bytes": 0, "input_files_up": 0}
    put, put_tree, get_tree = SshTransport.put, SshTransport.put_tree, SshTransport.get_tree

    def counted_put(self: SshTransport, local: Any, remote: str, **kw: Any) -> None:
        counts["up_bytes"] += _size(local)
        put(self, local, remote, **kw)

    def counted_put_tree(self: SshTransport, local: Any, remote: str, **kw: Any) -> None:
        counts["up_bytes"] += _size(local)
        counts["input_files_up"] += sum(1 for f in Path(local).rglob("*.raw"))
        put_tree(self, local, remote, **kw)

    def counted_get_tree(self: SshTransport, remote: str, local: Any, **kw: Any) -> None:
        get_tree(self, remote, local, **kw)
        counts["down_bytes"] += _size(local)

    monkeypatch.setattr(SshTransport, "put", counted_put)
    monkeypatch.setattr(SshTransport, "put_tree", counted_put_tree)
    monkeypatch.setattr(SshTransport, "get_tree", counted_get_tree)
    return counts


@pytest.mark.parametrize("first", ["comparison", "accuracy"])
def test_a_cold_comparison_and_accuracy_run_the_device_once_per_image(
    snpe_device: DeviceFactory,
    snpe_assets: SnpeAssets,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    record_property: Any,
    first: str,
) -> None:
    device = snpe_device()
    spec = ModelSpec.model_validate(
        {
            "name": "tiny-snpe",
            "reference": snpe_assets.model,
            "target": {"kind": "snpe", "dlc": snpe_assets.dlc, "devices": [device.name], "batch_size": BATCH},
            "preprocess": {"size": [64, 96]},
            "eval_data": {"coco": {"annotations": snpe_assets.annotations, "images": snpe_assets.eval}},
            "task": {"decoder": "yolov6r2", "outputs": list(OUTPUTS), "class_names": ["person", "car"]},
        }
    )
    ctx = Context(StageCache(tmp_path / "cache"), tmp_path / "r", devices=(device,), device_lock_dir=tmp_path / "lk")
    stages = ModelStages(spec, ctx)
    images = len(stages.eval_images())
    runner = stages.target()
    assert isinstance(runner, SnpeRunner)
    runner.dlc_info()  # snpe-dlc-info and its cache: not part of the image pass
    counts = _count_transfers(monkeypatch)
    before = len(tool_calls(tmp_path))
    if first == "comparison":
        comparison, (result, _, _) = stages.comparison(), stages.accuracy()
    else:
        (result, _, _), comparison = stages.accuracy(), stages.comparison()
    stages.close()
    net_runs = [c for c in tool_calls(tmp_path)[before:] if c["tool"] == "snpe-net-run"]
    for key, value in {**counts, "net_runs": len(net_runs), "images": images}.items():
        record_property(key, value)
    print(f"cold {first} then the other: {len(net_runs)} snpe-net-run call(s) for {images} image(s), {counts}")
    assert len(net_runs) == math.ceil(images / BATCH)  # one call per batch for both stages
    assert all("--debug" in c["argv"] for c in net_runs)
    assert sum(c["inputs"] for c in net_runs) == images  # every image through the device exactly once
    assert counts["input_files_up"] == images
    assert comparison.images == images
    assert result.images == images
    assert {r.output for r in comparison.outputs} >= set(OUTPUTS)
    assert all(r.metrics.cosine_mean > 0.99 for r in comparison.outputs if r.output in OUTPUTS)
    assert result.agreement.ap > 0.3
    assert sorted(h.split("/")[0] for h in ctx.cache.misses) == ["accuracy", "comparison"]
