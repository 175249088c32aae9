"""Session-scoped fixtures: one set of stage results per models.yaml entry, computed once and cached on disk.

Registered by the plugin. qc's errors raised here become short failures through the plugin's report hook.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from qc.cache import StageCache
from qc.config import DeviceSpec, ModelSpec, default_cache_dir
from qc.pipeline import Context, ModelStages
from qc.pytest_plugin.run import run_state
from qc.report.paths import model_dir, model_page

if TYPE_CHECKING:
    from qc.compare.layerwise import Comparison
    from qc.diagnose.stage import Diagnosis
    from qc.gates import GateResult
    from qc.speed import LayerProfile

RecordProperty = Callable[[str, object], None]


@pytest.fixture(scope="session")
def qc_devices(request: pytest.FixtureRequest) -> tuple[DeviceSpec, ...]:
    """The top-level ``devices`` list of models.yaml (device targets lease theirs from it)."""
    from qc.pytest_plugin import load_devices

    return load_devices(request.config)


@pytest.fixture(scope="session")
def qc_context(request: pytest.FixtureRequest, qc_devices: tuple[DeviceSpec, ...]) -> Context:
    config = request.config
    cache_dir = config.getoption("--qc-cache-dir")
    root = Path(cache_dir) if cache_dir else default_cache_dir() / "stages"
    run = run_state(config)
    return Context(
        cache=StageCache(root, refresh_since=run.refresh_since),
        report_dir=Path(config.getoption("--qc-report-dir")),
        image_limit=config.getoption("--qc-images"),
        devices=qc_devices,
        run_id=run.run_id,
    )


@pytest.fixture(scope="session")
def qc_model(request: pytest.FixtureRequest) -> ModelSpec:
    """One models.yaml entry (parametrized by the qc plugin; the id is the model name)."""
    spec = getattr(request, "param", None)
    if not isinstance(spec, ModelSpec):
        raise pytest.UsageError("the qc_model fixture is parametrized from models.yaml by the qc plugin")
    return spec


@pytest.fixture(scope="session")
def qc_stages(qc_model: ModelSpec, qc_context: Context) -> Iterator[ModelStages]:
    stages = ModelStages(qc_model, qc_context)
    yield stages
    stages.close()


@pytest.fixture(scope="session")
def comparison(qc_stages: ModelStages) -> Comparison:
    """Per-layer and per-output metrics of the model; writes layers.csv / outputs.csv (with thresholds) for it."""
    from qc.report.tables import write_comparison

    result = qc_stages.comparison()
    write_comparison(result, model_dir(qc_stages.ctx.report_dir, qc_stages.spec.name), qc_stages.spec.thresholds)
    return result


@pytest.fixture(scope="session")
def accuracy(qc_stages: ModelStages) -> Any:
    """The task's outcome on both sides (detection: COCO AP of both, agreement AP); writes its artifacts."""
    outcome = qc_stages.accuracy()
    qc_stages.task().write_report(
        outcome, qc_stages.eval_images(), model_dir(qc_stages.ctx.report_dir, qc_stages.spec.name)
    )
    return outcome


@pytest.fixture(scope="session")
def speed_feed(qc_stages: ModelStages) -> dict[str, np.ndarray]:
    """The first evaluation image, preprocessed: the input of every timed and profiled run."""
    return qc_stages.first_feed()


@pytest.fixture(scope="session")
def reference_layer_times(qc_stages: ModelStages, speed_feed: dict[str, np.ndarray]) -> LayerProfile:
    """Per-node time of the FP32 reference, fusions off so names are node names: the lint findings' time shares."""
    return qc_stages.reference.layer_times(speed_feed, runs=qc_stages.spec.speed.profile_runs, optimized=False)


@pytest.fixture(scope="session")
def target_layer_times(qc_stages: ModelStages, speed_feed: dict[str, np.ndarray]) -> LayerProfile:
    """Per-layer time of the target as its own profiler reports it (SNPE: snpe-diagview on the device)."""
    return qc_stages.target().layer_times(speed_feed, runs=qc_stages.spec.speed.profile_runs)


@pytest.fixture(scope="session")
def diagnosis(qc_stages: ModelStages) -> Diagnosis:
    """Diagnose the entry (cached on disk); writes diagnosis.json, local/ranges/sensitivity CSVs and patterns.csv."""
    from filelock import FileLock

    from qc.diagnose.report import write_diagnosis, write_pattern_items, write_patterns_from_reports
    from qc.diagnose.stage import diagnose

    result = diagnose(qc_stages)
    report_dir = Path(qc_stages.ctx.report_dir)
    folder = model_dir(report_dir, result.model)
    write_diagnosis(result, folder)
    report_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(report_dir / "patterns.csv.lock")):  # xdist workers rebuild it from every model's rows
        write_pattern_items(result, folder)
        write_patterns_from_reports(report_dir)
    return result


@pytest.fixture
def check_gate(qc_model: ModelSpec, record_property: RecordProperty) -> Callable[[GateResult], None]:
    """Record a gate's metrics (JUnit properties, summary.csv) and fail with its message when it fails.

    The failure is a :class:`qc.pytest_plugin.GateFailure`: the one kind of failure ``expect: fail`` expects.
    """
    from qc.pytest_plugin import GateFailure

    def check(result: GateResult) -> None:
        record_property("qc_model", qc_model.name)
        record_property("qc_gate", result.gate)
        record_property("qc_target", qc_model.target.kind)
        record_property("qc_model_page", model_page(qc_model.name))  # relative to the report folder
        for key, value in result.metrics.items():
            record_property(key, value)
        if not result.passed:
            raise GateFailure(result.message)

    return check
