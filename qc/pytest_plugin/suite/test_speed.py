"""Speed: target throughput and latency (pytest-benchmark), the reference's, per-layer time, and the lint gate.

Where the timing and the linted graph come from is the target kind's business (``speed_source``, ``lint_view``,
``lint_profile`` of :class:`qc.targets.base.Target`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import numpy as np
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from qc import gates
from qc.config import ModelSpec
from qc.gates import Evidence, GateResult, SpeedEvidence
from qc.pipeline import ModelStages
from qc.report.paths import model_dir
from qc.speed import LatencyStats, LayerProfile
from qc.targets.base import gated_figure, lint_findings, speed_figures

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
    from qc.report.speed import write_speed

    settings = qc_model.speed
    target = qc_stages.target_impl()
    runner = target.runner()
    stats: LatencyStats | None = None
    if target.speed_source == "host":
        benchmark.group = qc_model.name
        timer = cast(Any, benchmark)  # pytest-benchmark's pedantic() is untyped
        timer.pedantic(runner.run, args=(speed_feed,), rounds=settings.rounds, warmup_rounds=settings.warmup)
        if benchmark.stats is not None:
            what = getattr(runner, "timing_source", None) or "onnxruntime CPU"  # what the wall time measures
            stats = LatencyStats.from_seconds(benchmark.stats.stats.data, f"{what} via pytest-benchmark")
    if stats is None:  # timed where the model runs (a device tool), or --benchmark-disable: the runner times it
        stats = runner.speed(speed_feed, rounds=settings.rounds, warmup=settings.warmup)
    profile = cast(LayerProfile, request.getfixturevalue("target_layer_times"))
    reference = qc_stages.reference.speed(speed_feed, rounds=settings.rounds, warmup=settings.warmup)
    overhead = profile.run_ms / stats.latency_ms_mean - 1.0 if profile.run_ms else None
    figures = speed_figures(target, stats)  # by source: the timed figure and the target's estimates
    write_speed(
        model_dir(qc_stages.ctx.report_dir, qc_model.name),
        stats,
        reference,
        profile.rows,
        profiling_overhead=overhead,
        io=profile.io,
        figures=figures,
        gated_source=qc_model.speed.fps_source,
    )
    gated = gated_figure(qc_model, target, figures)  # min_fps gates only the source the user chose
    check_gate(gates.check("fps", Evidence(qc_model, speed=SpeedEvidence(gated, reference))))


@pytest.mark.qc_gate("lint")
def test_lint(
    qc_model: ModelSpec,
    qc_stages: ModelStages,
    request: pytest.FixtureRequest,
    check_gate: Check,
) -> None:
    from qc.graph.lint import lint
    from qc.report.speed import write_lint

    target = qc_stages.target_impl()
    own = lint_findings(target)  # e.g. nodes the runtime refuses: the target then has no profile to share time
    profile = None
    if not own:  # time shares as measured where the linted graph runs: the target's profiler, or the reference's
        times = cast(LayerProfile, request.getfixturevalue(f"{target.lint_profile}_layer_times"))
        profile = {row.layer: row.share for row in times.rows}
    findings = [*own, *lint(target.lint_view(), profile=profile)]
    write_lint(model_dir(qc_stages.ctx.report_dir, qc_model.name), findings)
    check_gate(gates.check("lint", Evidence(qc_model, lint=findings)))
