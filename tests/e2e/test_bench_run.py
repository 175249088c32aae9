"""End to end: `pytest benchmarks` in a subprocess on a real (tiny) model, as a user or CI runs it."""

from __future__ import annotations

import csv
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from qc.report.tables import LAYER_COLUMNS, OUTPUT_COLUMNS
from tests.e2e.bench import bench
from tests.models import tiny_project

GOOD = {"name": "tiny-a16", "bits": 16, "layer": 0.95, "out": 0.95, "sqnr": 10}
# The whole-output and per-layer cosines stay high while the score channels collapse: only the slices catch it.
BAD = {
    "name": "tiny-int8",
    "bits": 8,
    "layer": 0.95,
    "out": 0.95,
    "sqnr": 10,
    "expect": "{output_cosine: fail, output_sqnr: fail}",
}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bench")
    tiny_project(folder, [GOOD, BAD])
    return folder


@pytest.fixture(scope="module")
def first_run(project: Path) -> subprocess.CompletedProcess[str]:
    return bench(project, "-n", "2")


def test_run_is_green_and_known_bad_variant_is_a_strict_xfail(first_run: subprocess.CompletedProcess[str]) -> None:
    out = first_run.stdout
    assert first_run.returncode == 0, out + first_run.stderr
    assert "8 passed, 2 xfailed" in out  # per model: 3 similarity gates, fps, lint
    assert "qc gates" in out  # terminal summary table


def test_reports_follow_the_contract(project: Path, first_run: subprocess.CompletedProcess[str]) -> None:
    reports = project / "reports"
    with (reports / "models" / "tiny-a16" / "layers.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == LAYER_COLUMNS
    assert rows[0]["tensor"] == "images"
    assert rows[0]["op_type"] == "Input"
    with (reports / "models" / "tiny-int8" / "outputs.csv").open() as f:
        outputs = {r["output"]: r for r in csv.DictReader(f)}
    assert tuple(next(iter(outputs.values()))) == OUTPUT_COLUMNS
    assert set(outputs) == {"pred", "pred[boxes]", "pred[scores]"}
    assert "all zeros" in outputs["pred[scores]"]["undefined"]
    with (reports / "summary.csv").open() as f:
        summary = {r["model"]: r for r in csv.DictReader(f)}
    assert summary["tiny-a16"]["layer_cosine"] == "passed"
    assert summary["tiny-int8"]["output_cosine"] == "xfailed"
    assert float(summary["tiny-a16"]["worst_layer_cosine"]) > 0.95
    cases = ET.parse(reports / "junit.xml").getroot().iter("testcase")
    props = {c.get("name"): {p.get("name"): p.get("value") for p in c.iter("property")} for c in cases}
    assert props["test_layer_cosine[tiny-a16]"]["qc_model"] == "tiny-a16"
    assert props["test_layer_cosine[tiny-a16]"]["qc_model_page"] == "models/tiny-a16/index.html"
    assert (reports / "index.html").is_file()
    assert (reports / "models" / "tiny-a16" / "index.html").is_file()
    assert (reports / "plotly.min.js").is_file()
    assert (reports / "history.sqlite").is_file()
    assert "worst_layer" in props["test_layer_cosine[tiny-a16]"]


def test_select_one_model_by_name_and_warm_cache(project: Path, first_run: subprocess.CompletedProcess[str]) -> None:
    run = bench(project, "-k", "tiny-a16", "-v")
    assert run.returncode == 0, run.stdout
    assert "5 passed, 17 deselected" in run.stdout  # incl. the opt-in diagnose tests (2 per model)
    assert "tiny-int8" not in run.stdout.split("qc gates")[0].split("deselected")[-1]


def test_wrong_expectation_fails_the_run(project: Path, tmp_path: Path) -> None:
    tiny_project(tmp_path, [{**GOOD, "expect": "fail"}])
    run = bench(tmp_path)
    assert run.returncode == 1
    assert "XPASS(strict)" in run.stdout


def test_failed_gate_names_tensor_value_and_threshold(tmp_path: Path) -> None:
    tiny_project(tmp_path, [{**BAD, "expect": "pass"}])
    run = bench(tmp_path, "-k", "output_cosine")
    assert run.returncode == 1
    assert "pred[scores]: metric undefined: the target tensor is all zeros" in run.stdout


def test_broken_models_yaml_reports_all_errors_at_once(tmp_path: Path) -> None:
    (tmp_path / "models.yaml").write_text(
        "models:\n  - name: a\n    reference: nope.onnx\n    target: {kind: ort-int8, activation_bitwidth: 3}\n"
        "    eval_data: {folder: .}\n    calibration: {folder: .}\n    colour: red\n"
    )
    run = bench(tmp_path)
    assert run.returncode == 4, run.stdout + run.stderr
    out = run.stdout + run.stderr
    assert "Traceback" not in out
    assert "_hookexec" not in out
    assert "models.yaml:4:51: models[0].target.activation_bitwidth: Input should be 8 or 16, found 3" in out
    assert "models.yaml:7:5: models[0].colour: unknown field" in out


def test_history_and_a_deliberately_worse_run_failing_its_baseline(tmp_path: Path) -> None:
    tiny_project(tmp_path, [{**GOOD, "name": "tiny"}])
    first = bench(tmp_path, "-k", "cosine or sqnr")
    assert first.returncode == 0, first.stdout
    assert "history: run" in first.stdout
    same = bench(tmp_path, "-k", "cosine or sqnr or baseline", "--qc-baseline", "last")
    assert same.returncode == 0, same.stdout
    # the same model name, now with 8-bit activations: its worst layer cosine drops by about 5e-5, more than the
    # tolerance this entry sets
    yaml = tmp_path / "models.yaml"
    text = yaml.read_text().replace("activation_bitwidth: 16", "activation_bitwidth: 8")
    yaml.write_text(text.replace("output_sqnr_db: 10}", "output_sqnr_db: 10, baseline: {worst_layer_cosine: 0.00001}}"))
    worse = bench(tmp_path, "-k", "baseline", "--qc-baseline", "last")
    assert worse.returncode == 1, worse.stdout
    assert "regressed against run" in worse.stdout
    assert "worst_layer_cosine" in worse.stdout


def test_pytest_html_rows_link_to_model_pages(project: Path, first_run: subprocess.CompletedProcess[str]) -> None:
    html = project / "reports" / "pytest.html"
    run = bench(project, "-k", "tiny-a16 and layer_cosine", "--html", str(html), "--self-contained-html")
    assert run.returncode == 0, run.stdout
    text = html.read_text()
    assert "model page" in text
    assert "models/tiny-a16/index.html" in text
    assert "image/png" in text  # the static per-layer PNG, not inline JavaScript
