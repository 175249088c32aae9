"""The whole diagnosis on the tiny detector (no task: output SQNR drives sensitivity, output gates the advice)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

from qc.cache import StageCache
from qc.config import load_models
from qc.diagnose.report import write_diagnosis, write_pattern_items, write_patterns_from_reports
from qc.diagnose.stage import diagnose
from qc.pipeline import Context, ModelStages
from tests.models import tiny_project

REPO = Path(__file__).resolve().parents[3]


def test_tiny_detector_origin_sensitivity_and_verified_advice(tmp_path: Path) -> None:
    path = tiny_project(tmp_path, [{"name": "tiny", "out": 0.9, "sqnr": 10.0}])
    (spec,) = load_models(path)
    spec = spec.model_copy(update={"diagnose": spec.diagnose.model_copy(update={"top_k": 3, "max_float_layers": 3})})
    stages = ModelStages(spec, Context(StageCache(tmp_path / "cache"), tmp_path / "reports"))
    d = diagnose(stages)
    assert d.failing_gates == ["output_cosine", "output_sqnr"]
    origins = {o.tensor: o for o in d.origins}
    assert origins["pred"].severity == "collapse"
    assert origins["pred"].pattern == "Concat of mixed ranges"  # x100 boxes next to 0..1 scores
    assert any("pred[scores] fed reference inputs: local cosine undefined" in r for r in origins["pred"].reasons)
    sens = d.sensitivity
    assert sens is not None
    assert sens.metric == "output_sqnr"
    assert sens.rows[0].node == "concat"
    advice = d.advice
    assert advice is not None
    assert advice.goal == ["output_cosine", "output_sqnr"]
    assert advice.layers == ["concat"]
    assert advice.verification is not None
    assert advice.verification.passed, advice.message
    folder = tmp_path / "reports" / "models" / "tiny"
    write_diagnosis(d, folder)
    write_pattern_items(d, folder)
    patterns = write_patterns_from_reports(tmp_path / "reports").read_text().splitlines()
    assert patterns[1].startswith("Concat,Concat of mixed ranges,1,1,")
    advised = load_models_from(folder / "advised.models.yaml", tmp_path)
    assert advised == ("concat",)
    overrides = json.loads((folder / "snpe_overrides.json").read_text())
    assert overrides["activation_encodings"] == {"pred": [{"bitwidth": 16, "dtype": "float"}]}
    outcomes = bench_front_door(path, folder / "advised.models.yaml", advice.goal)
    assert outcomes == {
        "tiny": {"output_cosine": "xfailed", "output_sqnr": "xfailed"},
        "tiny-advised": {"output_cosine": "passed", "output_sqnr": "passed"},
    }


def bench_front_door(models: Path, advised: Path, goal: list[str]) -> dict[str, dict[str, str]]:
    """Not trusting ``advice.verification``: the advised models.yaml entry, as written for the user, goes through
    the normal stages and gates of a `pytest benchmarks` run (its own fresh cache), next to the original entry,
    whose failure of the same gates is declared as a strict xfail (so the run also proves the original fails).
    Returns the gate outcomes of summary.csv per model."""
    original = models.read_text().replace("expect: pass", "expect: {" + ", ".join(f"{g}: fail" for g in goal) + "}")
    entries = [
        line for line in advised.read_text().splitlines() if line.strip() and not line.startswith(("#", "models:"))
    ]
    front = models.with_name("front.yaml")
    front.write_text(original + "\n".join(entries) + "\n")
    reports = models.parent / "front-reports"
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        str(REPO / "benchmarks"),
        "-p",
        "no:cacheprovider",
        "--qc-models",
        str(front),
        "--qc-report-dir",
        str(reports),
        "--qc-cache-dir",
        str(models.parent / "front-cache"),
        "--qc-no-history",
        "-k",
        " or ".join(goal),
    ]
    run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, (
        f"the advised entry through `pytest benchmarks`:\n{run.stdout[-5000:]}{run.stderr[-2000:]}"
    )
    with (reports / "summary.csv").open() as f:
        return {row["model"]: {g: row[g] for g in goal} for row in csv.DictReader(f)}


def load_models_from(file: Path, project: Path) -> tuple[str, ...]:
    """The advised entry, loaded from the project folder (its paths are absolute)."""
    target = project / "advised.yaml"
    target.write_text(file.read_text())
    (advised,) = load_models(target)
    assert advised.name == "tiny-advised"
    return tuple(getattr(advised.target, "float_nodes", ()))
