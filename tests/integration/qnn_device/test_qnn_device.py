"""The ``qnn`` device target end to end: real OpenSSH (tests/sshd.py), the fake QNN toolkit (tests/fake_qnn) in two
versions' formats, qc's QnnDeviceRunner. A missing sshd fails these tests (tests/sshd.py never skips)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from qc.errors import DeviceError, ParseError
from qc.qnn.device_runner import LayerOutputsUnavailableError, qnn_session
from qc.runners.ort import OrtRunner
from tests.integration.qnn_device.conftest import (
    FAKE_VERSIONS,
    OUTPUTS,
    DeviceFactory,
    QnnAssets,
    RunnerFactory,
    feeds,
    tool_calls,
)

NASTY = "dev root 'q\"uote; touch INJECTED $(touch INJECTED2) `touch INJECTED3`"
LAYOUTS = [("nhwc", True), ("onnx", False)]


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def qdq_outputs(assets: QnnAssets, batch: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    session = ort.InferenceSession(str(assets.qdq), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return [dict(zip(names, session.run(None, f), strict=True)) for f in batch]


def run_folders(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


@pytest.mark.parametrize("fake_version", FAKE_VERSIONS, indirect=True)
@pytest.mark.parametrize(("layout", "identifiers"), LAYOUTS)
def test_outputs_match_onnxruntime(
    qnn_device: DeviceFactory,
    qnn_runner: RunnerFactory,
    qnn_assets: QnnAssets,
    reference: OrtRunner,
    tmp_path: Path,
    fake_version: str,
    layout: str,
    identifiers: bool,
) -> None:
    device = qnn_device()
    runner = qnn_runner(device, layout=layout, identifiers=identifiers, batch_size=2)
    batch = feeds(3)
    got = runner.run_batch(batch)
    assert len(got) == 3
    want_qdq = qdq_outputs(qnn_assets, batch)
    graph = runner.context_graph()
    scales = {t.name: t.scale for t in graph.outputs}
    for image, (out, qdq, feed) in enumerate(zip(got, want_qdq, batch, strict=True)):
        ref = reference.run(feed)
        assert set(out) == set(OUTPUTS)
        for name in OUTPUTS:
            assert out[name].shape == ref[name].shape == (1, 4, 16, 24)
            ctx_name = next(p.tensor.name for p in runner._io()[1] if p.key == name)
            step = scales[ctx_name]
            assert step is not None
            # the device's arithmetic is the QDQ model's: equal up to one quantization step of the output
            assert np.max(np.abs(out[name] - qdq[name])) <= step + 1e-6, (image, name)
            assert cosine(out[name], ref[name]) > 0.99, (image, name)
    rows = {r["reference"]: r for r in runner.tensor_map_rows()}
    assert rows["7"]["target"] == ("_7" if identifiers else "7")
    assert rows["images"]["permutation"] == ("0 3 1 2" if layout == "nhwc" else "0 1 2 3")
    calls = tool_calls(tmp_path)
    net_runs = [c for c in calls if c["tool"] == "qnn-net-run"]
    assert len(net_runs) == 2  # batch_size 2: two calls for three inputs
    contexts = {c["argv"][c["argv"].index("--retrieve_context") + 1] for c in net_runs}
    assert len(contexts) == 1  # uploaded once, reused by every call
    assert all("--use_native_input_files" in c["argv"] and "--debug" not in c["argv"] for c in net_runs)
    assert sum(c["tool"] == "qnn-context-binary-utility" for c in calls) == 1
    root = Path(device.remote_root)
    (folder,) = run_folders(root)
    assert run_folders(root / folder) == ["context.bin"]  # batch folders removed as their results came back
    runner.close()
    assert run_folders(root) == []


@pytest.mark.parametrize("fake_version", ["qnn-2.1x"], indirect=True)
def test_float_io_context(
    qnn_device: DeviceFactory, qnn_runner: RunnerFactory, qnn_assets: QnnAssets, tmp_path: Path
) -> None:
    """A context whose graph I/O is float32 (as onnxruntime's QNN EP exports, the quantization inside the graph):
    native files are float32 and nothing is dequantized."""
    runner = qnn_runner(qnn_device(), layout="onnx", identifiers=False, quantized_io=False)
    assert {t.dtype for t in runner.context_graph().outputs} == {"QNN_DATATYPE_FLOAT_32"}
    batch = feeds(2)
    for out, qdq in zip(runner.run_batch(batch), qdq_outputs(qnn_assets, batch), strict=True):
        for name in OUTPUTS:
            assert np.allclose(out[name], qdq[name], atol=1e-5)


@pytest.mark.parametrize("fake_version", ["qairt-2.4x"], indirect=True)
def test_float_files_without_native_io(
    qnn_device: DeviceFactory, qnn_runner: RunnerFactory, qnn_assets: QnnAssets, tmp_path: Path
) -> None:
    runner = qnn_runner(qnn_device(), native_io=False)
    batch = feeds(1)
    with qnn_session(runner):  # a stage holds one lease for all its calls
        assert runner._session is not None
        out = runner.run(batch[0])
        runner.run(batch[0])
    assert runner._session is None
    qdq = qdq_outputs(qnn_assets, batch)[0]
    for name in OUTPUTS:
        assert np.allclose(out[name], qdq[name], atol=1e-5)
    calls = [c for c in tool_calls(tmp_path) if c["tool"] == "qnn-net-run"]
    assert len(calls) == 2
    assert all("--use_native_output_files" not in c["argv"] for c in calls)


@pytest.mark.parametrize("fake_version", FAKE_VERSIONS, indirect=True)
@pytest.mark.parametrize("fault", ["", "no_csv", "identifier_ops"])
def test_layer_times(
    qnn_device: DeviceFactory,
    qnn_runner: RunnerFactory,
    qnn_assets: QnnAssets,
    tmp_path: Path,
    fake_version: str,
    fault: str,
) -> None:
    env = {"FAKE_QNN_OP_NAMES": "identifier"} if fault == "identifier_ops" else {"FAKE_QNN_FAULT": fault}
    device = qnn_device(env=env)
    runner = qnn_runner(device)
    profile = runner.layer_times(feeds(1)[0], runs=3)
    layers = {r.layer: r for r in profile.rows}
    qdq = onnx.load(str(qnn_assets.qdq))
    ops = {n.name for n in qdq.graph.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear")}
    assert ops >= {"/stem/Conv", "/head/Conv", "/head/Sigmoid"}  # the quantizer folded the Relu into the Conv
    assert set(layers) == ops | {"Transpose"}
    assert layers["/stem/Conv"].op_type == "Conv"
    assert layers["Transpose"].op_type == "Transpose (HTP-inserted)"
    assert all(r.unit == "cycles" for r in profile.rows)
    assert sum(r.share for r in profile.rows) == pytest.approx(1.0)
    assert [r.layer for r in profile.io] == ["Input OpId_2", "Output OpId_3"]
    assert all(r.op_type.endswith("transfer") for r in profile.io)
    net_run = next(c for c in tool_calls(tmp_path) if c["tool"] == "qnn-net-run")
    assert net_run["argv"][net_run["argv"].index("--profiling_level") + 1] == "detailed"
    assert runner.last_profile is not None
    assert runner.last_profile.profile.runs == (3 if fake_version == "qnn-2.1x" else 1)


@pytest.mark.parametrize("fake_version", FAKE_VERSIONS, indirect=True)
def test_speed(qnn_device: DeviceFactory, qnn_runner: RunnerFactory, fake_version: str) -> None:
    runner = qnn_runner(qnn_device())
    stats = runner.speed(feeds(1)[0])
    assert stats.fps > 0
    assert stats.rounds == 5
    assert stats.latency_ms_mean > 0
    assert np.isnan(stats.latency_ms_p50)
    assert runner.last_profile is not None
    if fake_version == "qnn-2.1x":  # that layout prints no NetRun IPS line nor NetRun time: the executions' mean
        execute = runner.last_profile.profile.totals["QNN (execute) time"]
        assert stats.fps == pytest.approx(1e6 / execute[0])
        assert "fps = 1 / mean 'QNN (execute) time' of 5 execution(s)" in stats.source
        assert "file I/O excluded" in stats.source
    else:
        assert stats.fps == runner.last_profile.ips
        assert "NetRun IPS" in stats.source


def test_speed_without_any_time_is_a_parse_error(
    qnn_device: DeviceFactory, qnn_runner: RunnerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A report with no NetRun IPS, no NetRun time and no execute time: an error naming what is missing."""
    from qc.qnn.viewer import ViewerReport

    runner = qnn_runner(qnn_device())
    profiled = runner._profiled

    def stripped(*args: Any, **kwargs: Any) -> Any:
        profile, report = profiled(*args, **kwargs)
        bare = ViewerReport(report.graph, replace(report.profile, totals={}), None, report.layout)
        return profile, bare

    monkeypatch.setattr(runner, "_profiled", stripped)
    with pytest.raises(ParseError, match=r"no 'NetRun IPS' line, no averaged 'NetRun' time and no 'QNN \(execute\)"):
        runner.speed(feeds(1)[0])


def test_layer_outputs_are_refused_with_the_reason(qnn_device: DeviceFactory, qnn_runner: RunnerFactory) -> None:
    runner = qnn_runner(qnn_device())
    with pytest.raises(LayerOutputsUnavailableError, match=r"--retrieve_context.*qnn-htp"):
        runner.run_all(feeds(1)[0])


def test_remote_root_with_spaces_and_quotes(
    qnn_device: DeviceFactory, qnn_runner: RunnerFactory, qnn_assets: QnnAssets, tmp_path: Path
) -> None:
    root = tmp_path / NASTY
    device = qnn_device(remote_root=str(root))
    runner = qnn_runner(device)
    out = runner.run(feeds(1)[0])
    assert set(out) == set(OUTPUTS)
    runner.layer_times(feeds(1)[0], runs=1)
    runner.close()
    assert run_folders(root) == []
    injected = [p for p in tmp_path.rglob("INJECTED*")] + [p for p in Path.home().glob("INJECTED*")]
    assert injected == []


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("missing_output", r"wrote no file for output '_7' \(model output '7'\)"),
        ("short_output", r"_7_native.raw from qnn-net-run .* has 768 bytes.*needs 1536"),
        ("oom", "exit status 137"),
    ],
)
def test_device_faults(
    qnn_device: DeviceFactory, qnn_runner: RunnerFactory, tmp_path: Path, fault: str, message: str
) -> None:
    device = qnn_device(env={"FAKE_QNN_FAULT": fault})
    runner = qnn_runner(device)
    with pytest.raises(DeviceError, match=message):
        runner.run(feeds(1)[0])
    runner.close()
    assert run_folders(Path(device.remote_root)) == []


def test_wrong_backend_is_reported(qnn_device: DeviceFactory, qnn_runner: RunnerFactory) -> None:
    runner = qnn_runner(qnn_device(), backend="libQnnCpu.so")
    with pytest.raises(DeviceError, match=r"qnn-net-run on .* failed with exit status 1: ERROR: .*libQnnCpu.so"):
        runner.run(feeds(1)[0])


def test_failed_run_folder_is_kept_on_request(qnn_device: DeviceFactory, qnn_runner: RunnerFactory) -> None:
    device = qnn_device(env={"FAKE_QNN_FAULT": "missing_output"})
    runner = qnn_runner(device, keep_on_failure=True)
    with pytest.raises(DeviceError, match="wrote no file"):
        runner.run(feeds(1)[0])
    runner.close()
    (folder,) = run_folders(Path(device.remote_root))
    assert "context.bin" in run_folders(Path(device.remote_root) / folder)
    assert runner.run_dirs[0].kept
