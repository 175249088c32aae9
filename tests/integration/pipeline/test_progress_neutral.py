"""Progress never changes a result or a cache key: the same stages with a display and without one."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

from qc import progress
from qc.cache import StageCache
from qc.config import load_models
from qc.pipeline import Context, ModelStages
from qc.report.tables import write_comparison
from qc.runners.ort import OrtRunner
from tests.models import tiny_project


def _run(folder: Path, tag: str) -> tuple[dict[str, str], dict[str, bytes], list[str]]:
    spec = load_models(folder / "models.yaml")[0]
    stages = ModelStages(spec, Context(StageCache(folder / f"cache-{tag}"), folder / f"reports-{tag}"))
    keys = {"target": stages.target_key(), "comparison": stages.comparison_key()}
    result = stages.comparison()
    files = write_comparison(result, folder / f"reports-{tag}" / spec.name, spec.thresholds)
    runner = stages.target()
    feed = stages.first_feed()
    profile = runner.layer_times(feed, runs=2)
    assert isinstance(runner, OrtRunner)
    assert len(runner.time_runs(feed, rounds=3, warmup=1)) == 3
    out = {f.name: f.read_bytes() for f in files}
    out["model.int8.onnx"] = hashlib.sha256(runner.model_path().read_bytes()).digest()
    keys["comparison-after"] = stages.comparison_key()
    return keys, out, sorted(r.layer for r in profile.rows)


def test_results_and_cache_keys_are_the_same_with_progress_on_and_off(tmp_path: Path) -> None:
    tiny_project(tmp_path, [{"name": "tiny", "bits": 8}])
    seen: list[progress.Event] = []
    log = io.StringIO()
    with progress.sink(seen.append), progress.sink(progress.LineSink(log, tty=False, interval_s=0.0)):
        on = _run(tmp_path, "on")
    off = _run(tmp_path, "off")
    stages = {(e.stage, e.total) for e in seen}
    assert {("quantize", 3), ("calibrate", 4), ("compare", 3), ("profile", 3), ("speed", 4)} <= stages  # it did report
    assert "tiny  compare  3/3" in log.getvalue()
    assert on[0] == off[0]  # cache keys
    assert set(on[1]) == {"layers.csv", "outputs.csv", "unmatched.csv", "model.int8.onnx"}
    for name in on[1]:
        assert on[1][name] == off[1][name], name  # byte for byte (these tables have no timing column)
    assert on[2] == off[2]  # the profiled layers (their times differ from run to run)
