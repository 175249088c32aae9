"""The documented pytest options, each through the real entry point: `pytest benchmarks ...` in a subprocess.

README: "Every stage is cached ...; a warm re-run does no quantization and no inference", `--qc-refresh`,
`--qc-images N`, `--qc-baseline last|RUN_ID` (and a run with no baseline to compare with).
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from qc.cache import StageCache
from tests.e2e.bench import bench
from tests.models import tiny_project

TINY = {"name": "tiny", "bits": 16, "layer": 0.9, "out": 0.9, "sqnr": 10}
SIMILARITY = "cosine or sqnr"  # the three similarity gates: the stages are the quantized model and the comparison
SENTINEL = 12345.0  # written into a cached comparison: a value no real run of the tiny model produces


def green(run: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-2000:]
    return run


def cache_files(folder: Path) -> dict[str, int]:
    """Every stage-cache file (lock files aside) with its modification time in ns."""
    root = folder / "cache"
    return {
        str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file() and ".lock" not in p.name
    }


def cached_comparisons(folder: Path) -> list[Path]:
    """The cache entries holding a comparison (per-layer metrics): JSON files with ``layers`` and ``outputs``."""
    found = []
    for path in (folder / "cache").rglob("*.json"):
        data = json.loads(path.read_text())
        if isinstance(data, dict) and "layers" in data and "outputs" in data:
            found.append(path)
    return found


def first_layer(folder: Path, model: str = "tiny") -> dict[str, str]:
    with (folder / "reports" / "models" / model / "layers.csv").open() as f:
        return next(csv.DictReader(f))


def summary(folder: Path) -> dict[str, dict[str, str]]:
    with (folder / "reports" / "summary.csv").open() as f:
        return {row["model"]: row for row in csv.DictReader(f)}


def run_id(run: subprocess.CompletedProcess[str]) -> str:
    found = re.search(r"history: run (\S+) \(", run.stdout)
    assert found, f"the run printed no history line:\n{run.stdout[-3000:]}"
    return found.group(1)


def test_warm_rerun_reads_the_cache_and_refresh_rebuilds_it(tmp_path: Path) -> None:
    tiny_project(tmp_path, [TINY])
    green(bench(tmp_path, "-k", SIMILARITY))
    cold = cache_files(tmp_path)
    (entry,) = cached_comparisons(tmp_path)
    assert any(name.endswith(".onnx") for name in cold), f"no quantized model in the stage cache: {sorted(cold)}"
    # mark the cached comparison: only a run that reads it (instead of recomputing) reports the sentinel
    data: dict[str, Any] = json.loads(entry.read_text())
    data["layers"][0]["metrics"]["max_abs"] = SENTINEL
    # committed through the cache (result, then its manifest), as a stage writes it: a bare edit would be caught by
    # the entry's integrity check and rebuilt (tested in tests/integration/pipeline/test_cache_integrity.py)
    StageCache(entry.parents[2]).commit(entry.parent.parent.name, entry.parent.name, data)
    marked = cache_files(tmp_path)

    green(bench(tmp_path, "-k", SIMILARITY))
    assert float(first_layer(tmp_path)["max_abs"]) == SENTINEL  # the comparison came from the cache
    assert cache_files(tmp_path) == marked  # nothing quantized or compared again: no cache file (re)written

    green(bench(tmp_path, "-k", SIMILARITY, "--qc-refresh"))
    assert float(first_layer(tmp_path)["max_abs"]) != SENTINEL  # recomputed
    rebuilt = cache_files(tmp_path)
    stale = [name for name, mtime in marked.items() if rebuilt.get(name, mtime) <= mtime]
    assert stale == [], f"--qc-refresh left these cache files untouched: {stale}"


def test_images_option_limits_the_evaluation_images(tmp_path: Path) -> None:
    tiny_project(tmp_path, [TINY], eval_images=5)
    green(bench(tmp_path, "-k", SIMILARITY, "--qc-images", "2"))
    assert float(summary(tmp_path)["tiny"]["images"]) == 2
    cases = ET.parse(tmp_path / "reports" / "junit.xml").getroot().iter("testcase")
    images = {float(p.get("value", "nan")) for c in cases for p in c.iter("property") if p.get("name") == "images"}
    assert images == {2.0}
    green(bench(tmp_path, "-k", SIMILARITY))
    assert float(summary(tmp_path)["tiny"]["images"]) == 5  # without the option: every image of the folder


@pytest.mark.parametrize("count", ["0", "-1", "-3"])
def test_images_option_below_one_is_refused(tmp_path: Path, count: str) -> None:
    tiny_project(tmp_path, [TINY], eval_images=5)
    run = bench(tmp_path, "-k", SIMILARITY, "--qc-images", count)
    assert run.returncode == 4, run.stdout[-3000:] + run.stderr[-2000:]  # a usage error: nothing ran
    assert "--qc-images: must be at least 1" in run.stderr


def test_baseline_by_run_id_and_unknown_run_id(tmp_path: Path) -> None:
    tiny_project(tmp_path, [TINY])
    first = run_id(green(bench(tmp_path, "-k", SIMILARITY)))
    second = run_id(green(bench(tmp_path, "-k", SIMILARITY)))
    assert first != second
    green(bench(tmp_path, "-k", "baseline", "--qc-baseline", first, "--qc-no-history"))
    row = summary(tmp_path)["tiny"]
    assert row["baseline"] == "passed"
    assert row["baseline_run"] == first  # the run asked for, not the latest one
    unknown = bench(tmp_path, "-k", "baseline", "--qc-baseline", "20000101T000000Z-000000", "--qc-no-history")
    assert unknown.returncode == 1, unknown.stdout
    assert "--qc-baseline '20000101T000000Z-000000': no such run in" in unknown.stdout
    assert first in unknown.stdout  # the message lists the runs there are


def test_no_baseline_found_fails_the_gate(tmp_path: Path) -> None:
    tiny_project(tmp_path, [TINY])
    run = bench(tmp_path, "-k", "baseline", "--qc-baseline", "last")
    assert run.returncode == 1, run.stdout
    assert "tiny: the history has no baseline run ('last') holding this model." in run.stdout
    assert summary(tmp_path)["tiny"]["baseline"] == "failed"
