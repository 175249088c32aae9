"""The plugin on its own: `pytest --qc-models models.yaml` from a folder outside the checkout, as in a user's repo.

No `benchmarks/`, no `fixtures/`, no conftest: the gate tests and fixtures come from the installed plugin. The
subprocess imports qc from this checkout (PYTHONPATH), so the test exercises the code under test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.models import tiny_project

REPO = Path(__file__).resolve().parents[2]
GOOD = {"name": "tiny-a16", "bits": 16, "layer": 0.95, "out": 0.95, "sqnr": 10}
BAD = {
    "name": "tiny-int8",
    "bits": 8,
    "layer": 0.95,
    "out": 0.95,
    "sqnr": 10,
    "expect": "{output_cosine: fail, output_sqnr: fail}",
}


def run_outside(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """pytest in ``folder`` (its own rootdir, no ini file, no conftest), with only the plugin to provide tests."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("PYTEST_ADDOPTS", None)
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "--qc-models",
        "models.yaml",
        "--qc-cache-dir",
        str(folder / "cache"),
        *args,
    ]
    return subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True, timeout=600, check=False)


@pytest.fixture(scope="module")
def user_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("user-repo")
    assert not folder.resolve().is_relative_to(REPO)
    tiny_project(folder, [GOOD, BAD])
    return folder


def test_gates_run_from_a_folder_outside_the_checkout(user_repo: Path) -> None:
    run = run_outside(user_repo, "-n", "2", "--junitxml", "reports/junit.xml", "-rA")
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    assert "8 passed, 2 xfailed" in run.stdout  # per model: 3 similarity gates, fps, lint; int8 slices xfail
    assert "XFAIL qc_gates/test_similarity.py::test_output_cosine[tiny-int8]" in run.stdout
    assert "PASSED qc_gates/test_similarity.py::test_layer_cosine[tiny-a16]" in run.stdout
    assert (user_repo / "reports" / "models" / "tiny-a16" / "layers.csv").is_file()
    assert (user_repo / "reports" / "summary.csv").is_file()
    cases = list(ET.parse(user_repo / "reports" / "junit.xml").getroot().iter("testcase"))
    assert len(cases) == 10
    names = {c.get("name") for c in cases}
    assert "test_output_sqnr[tiny-int8]" in names
    assert "history: run" in run.stdout


def test_select_one_model_by_name_outside_the_checkout(user_repo: Path) -> None:
    run = run_outside(user_repo, "-k", "tiny-a16", "-q")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "5 passed" in run.stdout
    assert "xfailed" not in run.stdout.splitlines()[-1]


def test_without_qc_models_the_plugin_adds_nothing(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"]
    run = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == pytest.ExitCode.NO_TESTS_COLLECTED, run.stdout + run.stderr


def test_expected_failure_does_not_hide_a_harness_error(tmp_path: Path) -> None:
    """``expect: fail`` expects a gate's verdict; a reference that is a text file is an error, not an xfail."""
    tiny_project(tmp_path, [{**GOOD, "name": "broken", "expect": "fail"}])
    (tmp_path / "tiny.onnx").write_text("this is not an ONNX model\n")
    run = run_outside(tmp_path, "-k", "cosine or sqnr", "-rA")
    out = run.stdout + run.stderr
    assert run.returncode == pytest.ExitCode.TESTS_FAILED, out
    summary = run.stdout.strip().splitlines()[-1]
    assert "xfailed" not in summary, out
    assert "3 errors" in summary, out
    assert "tiny.onnx fails onnx.checker" in run.stdout
    assert "Traceback" not in out


RUN_STATE_PROBE = """
import json
from pathlib import Path

import pytest

from qc.pytest_plugin.run import run_state


@pytest.mark.parametrize("n", range(8))
def test_probe(n, request):
    run = run_state(request.config)
    worker = getattr(request.config, "workerinput", {}).get("workerid", "controller")
    Path(f"probe-{n}.json").write_text(json.dumps([worker, run.run_id, run.started, run.refresh_since]))
"""


def test_run_state_reaches_xdist_workers_without_the_environment(tmp_path: Path) -> None:
    (tmp_path / "test_probe.py").write_text(RUN_STATE_PROBE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("QC_RUN")}
    env["PYTHONPATH"] = str(REPO)
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-n", "2", "--qc-refresh"]
    run = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    probes = [json.loads((tmp_path / f"probe-{n}.json").read_text()) for n in range(8)]
    assert {p[0] for p in probes} == {"gw0", "gw1"}
    assert len({(p[1], p[2], p[3]) for p in probes}) == 1  # one run id, start and refresh moment for every worker
    assert probes[0][3] is not None
