"""Progress in a log (not a terminal): `pytest benchmarks` with and without `-n 2`, with `-q`, and the CLI."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.models import tiny_project

REPO = Path(__file__).resolve().parents[2]
ENTRIES = [{"name": "tiny-a16", "bits": 16}, {"name": "tiny-int8", "bits": 8}]


def _env(tmp: Path) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(tmp)}
    env.pop("COLUMNS", None)
    return env


def bench(folder: Path, cache: str, *args: str) -> subprocess.CompletedProcess[str]:
    tmp = folder / f"tmp-{cache}"
    tmp.mkdir()
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        str(REPO / "benchmarks"),
        "-p",
        "no:cacheprovider",
        "--qc-models",
        str(folder / "models.yaml"),
        "--qc-report-dir",
        str(folder / f"reports-{cache}"),
        "--qc-cache-dir",
        str(folder / cache),  # a cache of its own: every stage runs, and reports
        "--qc-no-history",
        "-k",
        "similarity",
        *args,
    ]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, check=False, env=_env(tmp))


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("progress")
    tiny_project(folder, ENTRIES, eval_images=3)
    return folder


def _stage_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if re.match(r"^tiny-(a16|int8)(\s\(\w+\))?  [a-z -]+  \d+", line)]


def _check_plain_progress(run: subprocess.CompletedProcess[str], folder: Path, tmp: str) -> None:
    out = run.stdout
    assert run.returncode in (0, 1), out + run.stderr  # tiny-int8's scores collapse: its output gates fail
    assert "\r" not in out  # a log gets whole lines, never carriage-return redraws
    lines = _stage_lines(out)
    for model in ("tiny-a16", "tiny-int8"):
        assert f"{model}  quantize  0/3" in lines, out
        assert f"{model}  calibrate  0/4" in lines, out
        assert any(x.startswith(f"{model}  calibrate  4/4") and "done in" in x for x in lines), out
        assert f"{model}  compare  0/3" in lines, out
        assert any(x.startswith(f"{model}  compare  3/3") and "done in" in x for x in lines), out
    assert not list((folder / tmp).glob("qc-progress-*"))  # the workers' channel folder is gone


def test_plain_lines_in_a_log(project: Path) -> None:
    _check_plain_progress(bench(project, "cache-plain"), project, "tmp-cache-plain")


def test_plain_lines_from_xdist_workers(project: Path) -> None:
    _check_plain_progress(bench(project, "cache-xdist", "-n", "2"), project, "tmp-cache-xdist")


def test_quiet_run_shows_no_progress(project: Path) -> None:
    run = bench(project, "cache-quiet", "-q", "-n", "2")
    assert run.returncode in (0, 1), run.stdout + run.stderr
    assert "passed" in run.stdout  # the run happened
    assert _stage_lines(run.stdout + run.stderr) == []
    assert not list((project / "tmp-cache-quiet").glob("qc-progress-*"))


def test_cli_prints_plain_lines_on_stderr_and_none_when_quiet(project: Path) -> None:
    def qc(cache: str, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**_env(project), "QC_CACHE_DIR": str(project / cache)}
        cmd = [sys.executable, "-m", "qc.cli", *args, "compare", "tiny-a16", "--models", str(project / "models.yaml")]
        cmd += ["--report-dir", str(project / f"cli-{cache}")]
        return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, check=False, env=env)

    run = qc("cli-cache")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "\r" not in run.stderr
    lines = _stage_lines(run.stderr)
    assert "tiny-a16  compare  0/3" in lines
    assert any(x.startswith("tiny-a16  compare  3/3") and "done in" in x for x in lines), run.stderr
    assert _stage_lines(run.stdout) == []  # results on stdout, progress on stderr
    quiet = qc("cli-cache-quiet", "--quiet")
    assert quiet.returncode == 0, quiet.stdout + quiet.stderr
    assert _stage_lines(quiet.stderr) == []
    results = [[x for x in r.stdout.splitlines() if not x.startswith("written: ")] for r in (run, quiet)]
    assert results[0] == results[1]  # the same results, with or without progress
