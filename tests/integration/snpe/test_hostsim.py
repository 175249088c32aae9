"""Host simulation of the fake DLC vs the fake device over sshd: the error split into quantization and runtime error.

The fake device quantizes every encoded activation with the DLC's own encodings (float arithmetic, float weights),
so the host simulation built from ``snpe-dlc-info`` with ``quantize_weights=False`` must reproduce it: the runtime
error (device vs host simulation) vanishes while the quantization error (host simulation vs FP32) stays. With
``FAKE_SNPE_FAULT=perturb=<tensor>`` the device scales one tensor by 0.8 (a runtime bug): that tensor is the first
whose runtime error dominates.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from qc import jsonio
from qc.runners.ort import OrtRunner
from qc.snpe.hostsim import ErrorSplit, HostSimRunner, build_host_simulation, split_error
from tests.integration.snpe.conftest import DeviceFactory, RunnerFactory, SnpeAssets, tool_calls
from tests.integration.snpe.helpers import OUTPUTS, feeds
from tests.sshd import SshdServer

FAULTY = "/backbone/stage2/Conv_output_0"


def _split(
    snpe_assets: SnpeAssets, reference: OrtRunner, runner_factory: RunnerFactory, device: object, tmp: Path
) -> ErrorSplit:
    runner = runner_factory(device, batch_size=2)
    built = build_host_simulation(
        snpe_assets.model,
        runner.dlc_info(),
        runner.tensor_map(),
        feeds(snpe_assets.folder / "calib"),
        tmp / "hostsim.onnx",
        "tiny",
        quantize_weights=False,
    )
    assert built.verified == len(built.exact) > 30  # every activation of the tiny model, read back and equal
    sim = HostSimRunner("host simulation", built.model)
    with runner.session():
        return split_error("tiny", reference, sim, runner, runner.tensor_map(), enumerate(snpe_assets.feeds()))


def test_runtime_error_vanishes_where_the_device_does_what_the_dlc_says(
    snpe_assets: SnpeAssets,
    reference: OrtRunner,
    snpe_runner: RunnerFactory,
    snpe_device: DeviceFactory,
    tmp_path: Path,
) -> None:
    split = _split(snpe_assets, reference, snpe_runner, snpe_device(), tmp_path)
    assert split.images == 3
    compared = [r for r in split.rows if math.isfinite(r.quant.sqnr_db_mean)]
    assert len(compared) >= 30
    assert set(OUTPUTS) <= {r.tensor for r in compared}
    for r in compared:
        # measured: quantization SQNR 24.5..55 dB; runtime SQNR inf (bit-identical) on every tensor
        assert r.quant.sqnr_db_mean < 60, r.tensor
        assert r.runtime.sqnr_db_min > r.quant.sqnr_db_mean + 10, (r.tensor, r.runtime, r.quant)
    assert split.runtime_dominated() == []
    # one net-run (--debug) per batch of 2: each image ran once on the device
    runs = [c for c in tool_calls(tmp_path) if c["tool"] == "snpe-net-run"]
    assert [c["inputs"] for c in runs] == [2, 1]
    assert all("--debug" in c["argv"] for c in runs)


def test_an_injected_runtime_fault_dominates_that_tensor(
    snpe_assets: SnpeAssets,
    reference: OrtRunner,
    snpe_runner: RunnerFactory,
    snpe_device: DeviceFactory,
    tmp_path: Path,
) -> None:
    device = snpe_device(env={"FAKE_SNPE_FAULT": f"perturb={FAULTY}"})
    split = _split(snpe_assets, reference, snpe_runner, device, tmp_path)
    rows = {r.tensor: r for r in split.rows}
    faulty = rows[FAULTY]
    # x0.8 is an error of 0.2|x|: runtime SQNR 20*log10(5) = 14 dB, against about 32 dB of quantization error
    assert faulty.runtime.sqnr_db_mean == pytest.approx(13.98, abs=0.3)
    assert faulty.runtime.sqnr_db_mean < faulty.quant.sqnr_db_mean - 10
    summary = split.summary()
    assert summary["first_runtime_dominated"] == FAULTY
    upstream = [r for r in split.rows if r.index < faulty.index]
    assert upstream
    assert all(r.runtime.sqnr_db_min > 80 for r in upstream)  # inf, the input ~150 dB (float rounding)
    jsonio.dumps(summary)  # allow_nan=False inside: no bare NaN/Infinity


def test_stage_is_cached_and_writes_the_report(
    snpe_device: DeviceFactory, snpe_assets: SnpeAssets, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qc.cache import StageCache
    from qc.config import ModelSpec
    from qc.pipeline import Context, ModelStages
    from qc.snpe.hostsim import host_simulation_stage
    from qc.snpe.runner import SnpeRunner

    device = snpe_device()
    spec = ModelSpec.model_validate(
        {
            "name": "tiny-snpe",
            "reference": snpe_assets.model,
            "target": {"kind": "snpe", "dlc": snpe_assets.dlc, "devices": [device.name], "batch_size": 3},
            "preprocess": {"size": [64, 96]},
            "eval_data": {"folder": snpe_assets.eval},
            "calibration": {"folder": snpe_assets.folder / "calib"},
        }
    )

    def stages(report: str) -> ModelStages:
        ctx = Context(
            StageCache(tmp_path / "cache"), tmp_path / report, devices=(device,), device_lock_dir=tmp_path / "locks"
        )
        return ModelStages(spec, ctx)

    first = stages("r1")
    cold = host_simulation_stage(first, quantize_weights=False)
    first.close()
    assert cold.split.runtime_dominated() == []
    assert cold.split.images == 3
    report = tmp_path / "r1" / "models" / "tiny-snpe"
    header = (report / "error_split.csv").read_text().splitlines()[0]
    assert header == "index,tensor,op_type,cosine_quant,sqnr_db_quant,cosine_runtime,sqnr_db_runtime"
    assert json.loads((report / "hostsim.json").read_text())["verified"] == cold.hostsim.verified

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("a warm cache must not contact the device")

    monkeypatch.setattr(SnpeRunner, "session", forbidden)
    monkeypatch.setattr(SnpeRunner, "dlc_info", forbidden)
    warm = host_simulation_stage(stages("r2"), quantize_weights=False)
    assert warm.split.to_json() == cold.split.to_json()
    assert (tmp_path / "r2" / "models" / "tiny-snpe" / "error_split.json").read_text() == (
        report / "error_split.json"
    ).read_text()


def test_cli_reports_the_injected_fault(
    sshd_server: SshdServer,
    snpe_assets: SnpeAssets,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``qc hostsim`` (registered by qc.snpe.cli.add_parser) on the models.yaml of the end-to-end test, with the
    device perturbing one tensor: exit status 1 and that tensor named first."""
    import argparse

    from qc.snpe.cli import add_parser
    from tests.integration.snpe.test_snpe_target import MODELS_YAML

    text = MODELS_YAML.format(
        port=sshd_server.port,
        user=sshd_server.user,
        key=sshd_server.client_key,
        known_hosts=sshd_server.known_hosts,
        remote=json.dumps(str(tmp_path / "device")),
        bin=snpe_assets.bin,
        log=tmp_path / "calls.jsonl",
        assets=snpe_assets.folder,
        version="snpe-2.9",
    ).replace("env: {FAKE_SNPE_LOG:", f"env: {{FAKE_SNPE_FAULT: 'perturb={FAULTY}', FAKE_SNPE_LOG:")
    (tmp_path / "models.yaml").write_text(text)
    monkeypatch.setenv("QC_CACHE_DIR", str(tmp_path / "qc-cache"))
    parser = argparse.ArgumentParser(prog="qc")
    add_parser(parser.add_subparsers(dest="command", required=True))
    models, report = str(tmp_path / "models.yaml"), str(tmp_path / "r")
    args = parser.parse_args(
        ["hostsim", "tiny-yolov6-snpe", "--models", models, "--report-dir", report, "--float-weights"]
    )
    assert args.func(args) == 1
    out = capsys.readouterr().out
    first = next(line for line in out.splitlines() if line.startswith("runtime error dominates"))
    assert FAULTY in first
    assert (tmp_path / "r" / "models" / "tiny-yolov6-snpe" / "error_split.csv").is_file()
