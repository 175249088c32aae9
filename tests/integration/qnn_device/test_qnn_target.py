"""The ``qnn`` target kind through the pipeline: real OpenSSH (tests/sshd.py), the fake QNN toolkit, ModelStages.

The comparison and the task share ONE pass over the images (one ``qnn-net-run`` per batch), the layer gate fails
naming why a context binary gives no layer outputs, the output gates and the accuracy use the deployed outputs, a
warm cache contacts no device, and an entry without a context binary exports one (the export is replaced by a fake
context here: the real export needs onnxruntime-qnn and its binary only runs on a real HTP).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qc import gates
from qc.cache import StageCache
from qc.config import DeviceSpec, ModelSpec, QnnDeviceTarget, QuantSettings
from qc.device.transport.ssh import SshTransport
from qc.errors import ConfigError
from qc.pipeline import Context, ModelStages
from qc.qnn.device_runner import QnnDeviceRunner
from qc.runners.quantize import quantize_int8
from qc.targets.qnn import NO_LAYERS, Qnn
from tests.fake_qnn.context import build_context
from tests.integration.qnn_device.conftest import DeviceFactory, tool_calls
from tests.integration.qnn_device.yolo import OUTPUTS, QnnYolo, make_qnn_yolo

BATCH = 2


@pytest.fixture(scope="module")
def yolo(tmp_path_factory: pytest.TempPathFactory) -> QnnYolo:
    return make_qnn_yolo(tmp_path_factory.mktemp("qnn-yolo"))


def entry(yolo: QnnYolo, device: DeviceSpec, **target: Any) -> ModelSpec:
    fields: dict[str, Any] = {
        "kind": "qnn",
        "context_binary": yolo.context,
        "source_model": yolo.qdq,
        "devices": [device.name],
        "batch_size": BATCH,
        "speed_inferences": 3,
        **target,
    }
    return ModelSpec.model_validate(
        {
            "name": "tiny-qnn",
            "reference": yolo.model,
            "target": {k: v for k, v in fields.items() if v is not None},
            "preprocess": {"size": [64, 96]},
            "eval_data": {"coco": {"annotations": yolo.annotations, "images": yolo.eval}},
            "calibration": {"folder": yolo.calib},
            "outputs": {OUTPUTS[0]: {"slices": {"boxes": {"axis": 1, "start": 0, "stop": 4}}}},
            "task": {"decoder": "yolov6r2", "outputs": list(OUTPUTS), "class_names": ["person", "car"]},
        }
    )


def stages_for(spec: ModelSpec, device: DeviceSpec, tmp_path: Path, report: str = "r") -> ModelStages:
    ctx = Context(
        StageCache(tmp_path / "cache"), tmp_path / report, devices=(device,), device_lock_dir=tmp_path / "locks"
    )
    return ModelStages(spec, ctx)


def count_input_uploads(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    counts = {"input_files_up": 0}
    put_tree = SshTransport.put_tree

    def counted(self: SshTransport, local: Any, remote: str, **kw: Any) -> None:
        counts["input_files_up"] += sum(1 for f in Path(local).rglob("*.raw"))
        put_tree(self, local, remote, **kw)

    monkeypatch.setattr(SshTransport, "put_tree", counted)
    return counts


@pytest.mark.parametrize("first", ["comparison", "accuracy"])
def test_comparison_and_accuracy_share_one_qnn_net_run_per_batch(
    qnn_device: DeviceFactory,
    yolo: QnnYolo,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    record_property: Any,
    first: str,
) -> None:
    device = qnn_device()
    stages = stages_for(entry(yolo, device), device, tmp_path)
    images = len(stages.eval_images())
    runner = stages.target()
    assert isinstance(runner, QnnDeviceRunner)
    runner.context_info()  # qnn-context-binary-utility: not part of the image pass
    counts = count_input_uploads(monkeypatch)
    before = len(tool_calls(tmp_path))
    if first == "comparison":
        comparison, (result, _, _) = stages.comparison(), stages.accuracy()
    else:
        (result, _, _), comparison = stages.accuracy(), stages.comparison()
    stages.close()
    net_runs = [c for c in tool_calls(tmp_path)[before:] if c["tool"] == "qnn-net-run"]
    record_property("qnn_net_runs", len(net_runs))
    record_property("images", images)
    print(f"cold {first} then the other: {len(net_runs)} qnn-net-run call(s) for {images} image(s), {counts}")
    assert len(net_runs) == math.ceil(images / BATCH)  # one call per batch for both stages
    assert all("--retrieve_context" in c["argv"] and "--debug" not in c["argv"] for c in net_runs)
    assert counts["input_files_up"] == images  # every image through the device exactly once
    assert comparison.images == images
    assert result.images == images
    assert sorted(h.split("/")[0] for h in stages.ctx.cache.misses) == ["accuracy", "comparison"]
    # final outputs and the declared slice compared; no layer rows, every reference tensor unmatched with the reason
    assert {r.output for r in comparison.outputs} == {*OUTPUTS, f"{OUTPUTS[0]}[boxes]"}
    assert all(r.metrics.cosine_mean > 0.98 for r in comparison.outputs)
    assert comparison.layers == []
    assert comparison.unmatched
    assert {u.reason for u in comparison.unmatched} == {NO_LAYERS}
    assert result.agreement.ap > 0.3
    assert any("given in target.context_binary" in n for n in comparison.notes)


def test_the_layer_gate_fails_naming_why_and_the_output_gates_pass(
    qnn_device: DeviceFactory, yolo: QnnYolo, tmp_path: Path
) -> None:
    device = qnn_device()
    spec = entry(yolo, device)
    stages = stages_for(spec, device, tmp_path)
    comparison = stages.comparison()
    stages.close()
    layer = gates.check("layer_cosine", gates.Evidence(spec, comparison=comparison))
    assert not layer.passed
    assert "no layer could be compared" in layer.message
    assert "qnn-net-run cannot use --debug (every layer's output) with --retrieve_context" in layer.message
    assert "leave layer_cosine out of this entry's 'gates'" in layer.message
    for gate in ("output_cosine", "output_sqnr"):
        verdict = gates.check(gate, gates.Evidence(spec, comparison=comparison))
        assert verdict.passed, verdict.message
        assert f"all {len(OUTPUTS) + 1} outputs/slices pass" in verdict.message
    report = tmp_path / "r" / "models" / "tiny-qnn"
    context = json.loads((report / "target_run.json").read_text())
    assert context["origin"] == "given (target.context_binary)"
    assert context["context_binary"] == str(yolo.context)
    tensor_map = (report / "tensor_map.csv").read_text().splitlines()
    assert tensor_map[0].startswith("reference,reference_shape,target,target_shape")
    assert any(line.startswith(f"{OUTPUTS[0]},1x7x8x12,{OUTPUTS[0]},1x8x12x7,") for line in tensor_map)
    assert any(line.startswith("images,1x3x64x96,images,1x64x96x3,") for line in tensor_map)


def test_warm_cache_needs_no_device(
    qnn_device: DeviceFactory, yolo: QnnYolo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    device = qnn_device()
    spec = entry(yolo, device)
    first = stages_for(spec, device, tmp_path, "r1")
    cold = first.comparison()
    first.accuracy()
    first.close()
    assert sorted(p.name for p in (tmp_path / "device").iterdir()) == []  # run folders removed at close
    calls = len(tool_calls(tmp_path))

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("a warm cache must not contact the device")

    monkeypatch.setattr(QnnDeviceRunner, "session", forbidden)
    second = stages_for(spec, device, tmp_path, "r2")
    assert second.comparison().to_json() == cold.to_json()
    second.accuracy()
    assert len(tool_calls(tmp_path)) == calls
    for name in ("tensor_map.csv", "target_run.json"):
        assert (tmp_path / "r2" / "models" / "tiny-qnn" / name).is_file()


def test_key_follows_the_context_bytes_and_io_settings_only(
    qnn_device: DeviceFactory, yolo: QnnYolo, tmp_path: Path
) -> None:
    device = qnn_device()

    def key(context: Path | None = None, **target: Any) -> str:
        spec = entry(yolo, device, context_binary=context or yolo.context, **target)
        return Qnn(stages_for(spec, device, tmp_path)).key()

    base = key()
    assert key(batch_size=5, perf_profile="burst", profiling="basic", speed_inferences=9) == base
    assert key(native_io=False) != base
    assert key(io_layout="nhwc") != base
    copy = tmp_path / "same.bin"
    copy.write_bytes(yolo.context.read_bytes())
    assert key(copy) == base  # the bytes, not the path
    other = build_context(yolo.qdq, tmp_path / "onnx-layout.bin", graph="tiny_yolov6", layout="onnx")
    assert key(other) != base


def test_without_a_context_binary_the_target_exports_one_and_says_so(
    qnn_device: DeviceFactory, yolo: QnnYolo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The export (onnxruntime-qnn's context for htp_arch/soc_model) is replaced by a fake context of the QDQ model
    quantized with the target's settings: what is checked is the wiring (calibration feeds, cache, notes, report)."""
    from qc.qnn import device_runner

    exports: list[dict[str, Any]] = []

    def fake_export(
        spec: QnnDeviceTarget,
        reference: Path,
        calibration: Sequence[Mapping[str, np.ndarray]],
        out_dir: Path,
        entry_name: str,
    ) -> tuple[Path, Path]:
        exports.append({"images": len(calibration), "per_channel": spec.per_channel, "htp_arch": spec.htp_arch})
        qdq = out_dir / "model.qdq.onnx"
        quantize_int8(reference, QuantSettings(per_channel=spec.per_channel), [dict(c) for c in calibration], qdq, "x")
        return build_context(qdq, out_dir / "model_qnn.bin", graph="tiny_yolov6"), qdq

    monkeypatch.setattr(device_runner, "export_for_target", fake_export)
    device = qnn_device()
    spec = entry(yolo, device, context_binary=None, source_model=None, per_channel=False, htp_arch=75)
    stages = stages_for(spec, device, tmp_path)
    comparison = stages.comparison()
    stages.close()
    assert exports == [{"images": 4, "per_channel": False, "htp_arch": 75}]
    note = next(n for n in comparison.notes if n.startswith("target: QNN context binary"))
    assert "exported by qc from the reference" in note
    assert "for HTP v75 / SoC 66, as no target.context_binary was given" in note
    assert all(r.metrics.cosine_mean > 0.98 for r in comparison.outputs)
    context = json.loads((tmp_path / "r" / "models" / "tiny-qnn" / "target_run.json").read_text())
    assert context["origin"] == "exported by qc from the reference"
    assert (context["htp_arch"], context["soc_model"]) == (75, 66)
    assert context["quantization"]["per_channel"] is False
    assert context["source_model"] == context["qdq_model"]  # profiled ops named after the exported QDQ model
    # the export is cached: a second session exports nothing
    again = Qnn(stages_for(spec, device, tmp_path, "r2"))
    assert again.context().sha256 == context["sha256"]
    assert len(exports) == 1
    assert again.onnx_model() == Path(context["qdq_model"])


def test_an_exporting_entry_needs_calibration(qnn_device: DeviceFactory, yolo: QnnYolo) -> None:
    device = qnn_device()
    spec = entry(yolo, device, context_binary=None)
    data = spec.model_dump(mode="python")
    del data["calibration"]
    with pytest.raises(ValueError, match=r"without target\.context_binary exports one from the reference: it needs a"):
        ModelSpec.model_validate(data)
    with pytest.raises(ConfigError, match="needs the 'devices' list"):
        Qnn(ModelStages(spec, Context(StageCache(yolo.folder / "c"), yolo.folder / "r")))
