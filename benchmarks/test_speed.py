"""Speed: target throughput and latency (pytest-benchmark), the reference's, per-layer time, and the lint gate."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import numpy as np
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from qc import gates
from qc.config import ModelSpec
from qc.errors import QcError
from qc.gates import GateResult
from qc.graph.lint import lint
from qc.graph.view import view_from_onnx
from qc.pipeline import ModelStages
from qc.report.speed import write_lint, write_speed
from qc.snpe.graph import view_from_dlc
from qc.snpe.runner import SnpeRunner
from qc.speed import LatencyStats, LayerProfile

Check = Callable[[GateResult], None]


@pytest.mark.qc_gate("fps")
def test_fps(
    qc_model: ModelSpec,
    qc_stages: ModelStages,
    speed_feed: dict[str, np.ndarray],
    benchmark: BenchmarkFixture,
    request: pytest.FixtureRequest,
    check_gate: Check,
) -> None:
    settings = qc_model.speed
    try:
        target = qc_stages.target()
        if isinstance(target, SnpeRunner):
            # On the device: FPS from snpe-throughput-net-run, per-layer time from snpe-diagview.
            stats = target.speed(speed_feed, rounds=settings.rounds, warmup=settings.warmup)
            profile = cast(LayerProfile, request.getfixturevalue("target_layer_times"))
        else:
            benchmark.group = qc_model.name
            timer = cast(Any, benchmark)  # pytest-benchmark's pedantic() is untyped
            timer.pedantic(target.run, args=(speed_feed,), rounds=settings.rounds, warmup_rounds=settings.warmup)
            if benchmark.stats is not None:
                stats = LatencyStats.from_seconds(benchmark.stats.stats.data, "onnxruntime CPU via pytest-benchmark")
            else:  # --benchmark-disable: time it ourselves
                stats = target.speed(speed_feed, rounds=settings.rounds, warmup=settings.warmup)
            profile = target.layer_times(speed_feed, runs=settings.profile_runs)
        reference = qc_stages.reference.speed(speed_feed, rounds=settings.rounds, warmup=settings.warmup)
    except QcError as exc:
        pytest.fail(str(exc), pytrace=False)
    overhead = profile.run_ms / stats.latency_ms_mean - 1.0 if profile.run_ms else None
    write_speed(
        qc_stages.ctx.report_dir / qc_model.name,
        stats,
        reference,
        profile.rows,
        profiling_overhead=overhead,
        io=profile.io,
    )
    check_gate(gates.fps(qc_model.name, stats, reference, qc_model.thresholds))


@pytest.mark.qc_gate("lint")
def test_lint(
    qc_model: ModelSpec,
    qc_stages: ModelStages,
    request: pytest.FixtureRequest,
    check_gate: Check,
) -> None:
    import onnx

    # Time shares as measured where the model runs: snpe-diagview on the device for an SNPE target (DLC layer
    # names are the ONNX node names), else the FP32 reference's onnxruntime profile.
    fixture = "target_layer_times" if qc_model.target.kind == "snpe" else "reference_layer_times"
    times = cast(LayerProfile, request.getfixturevalue(fixture))
    profile = {row.layer: row.share for row in times.rows}
    try:
        target = qc_stages.target()
        # an SNPE target is linted as it runs: the DLC's own graph from snpe-dlc-info; else the ONNX reference
        view = view_from_dlc(target.dlc_info()) if isinstance(target, SnpeRunner) else None
    except QcError as exc:
        pytest.fail(str(exc), pytrace=False)
    findings = lint(view or view_from_onnx(onnx.load(str(qc_model.reference))), profile=profile)
    write_lint(qc_stages.ctx.report_dir / qc_model.name, findings)
    check_gate(gates.lint(qc_model.name, findings, qc_model.lint))
