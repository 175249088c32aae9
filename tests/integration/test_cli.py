"""The `qc` command line on real files: lint and fix a model with a slow pattern, validate, compare."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from qc.assets import AssetPaths
from qc.cli import main
from tests.models import tiny_project
from tests.unit.graph.models import div_model


def test_lint_then_fix_removes_the_finding_with_equal_outputs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "div.onnx"
    onnx.save(div_model(), str(src))
    assert main(["lint", str(src), "--fail-on", "error"]) == 1
    out = capsys.readouterr().out
    assert "[error] div" in out
    assert "fix:" in out
    fixed = tmp_path / "fixed.onnx"
    assert main(["fix", str(src), "-o", str(fixed), "--rule", "div"]) == 0
    assert "applied div" in capsys.readouterr().out
    assert main(["lint", str(fixed), "--fail-on", "error"]) == 0
    feeds = {}
    for i in ort.InferenceSession(str(src)).get_inputs():
        shape = [d if isinstance(d, int) else 1 for d in i.shape]
        feeds[i.name] = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    a = ort.InferenceSession(str(src)).run(None, feeds)
    b = ort.InferenceSession(str(fixed)).run(None, feeds)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)


def test_validate_and_compare(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    tiny_project(tmp_path, [{"name": "tiny", "bits": 16, "layer": 0.9, "out": 0.9, "sqnr": 5}])
    monkeypatch.setenv("QC_CACHE_DIR", str(tmp_path / "cache"))
    assert main(["validate", str(tmp_path / "models.yaml")]) == 0
    assert "tiny: target ort-int8" in capsys.readouterr().out
    code = main(["compare", "tiny", "--models", str(tmp_path / "models.yaml"), "--report-dir", str(tmp_path / "r")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "PASS layer_cosine" in out
    assert (tmp_path / "r" / "models" / "tiny" / "layers.csv").is_file()


def test_bad_models_file_is_a_clean_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "models.yaml").write_text("models: []\n")
    assert main(["validate", str(tmp_path / "models.yaml")]) == 2
    assert "models.yaml:1:9: models: List should have at least 1 item" in capsys.readouterr().err


def test_history_prints_trends(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from qc.report.history import History, MetricRow, RunInfo

    h = History(tmp_path / "history.sqlite")
    for i, ap in enumerate((0.30, 0.31, 0.25)):
        h.append(
            RunInfo(f"r{i}", f"2026-01-0{i + 1}T00:00:00+00:00", None), [MetricRow("m", "ort-int8", "target_ap", ap)]
        )
    assert main(["history", "--report-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "3 run(s): r0" in out
    assert "target_ap" in out
    assert "0.3  0.31  0.25" in out
    assert "WORSE" in out
    assert main(["history", "--report-dir", str(tmp_path / "none")]) == 0
    assert "no runs recorded" in capsys.readouterr().out


# ----------------------------------------------------------------------------- qc eval, qc assets --offline
REPO = Path(__file__).resolve().parents[2]
CLOSED = "http://127.0.0.1:9"  # the discard port: nothing listens, so any request through the proxy fails


def test_eval_reproduces_the_readme_accuracy_of_the_demo_variants(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, demo_assets: AssetPaths
) -> None:
    """`qc eval` on the repository's models.yaml: the figures of README/docs/results.md ("Accuracy" table)."""
    monkeypatch.setenv("QC_ASSETS", str(demo_assets.root))
    monkeypatch.setenv("QC_CACHE_DIR", str(tmp_path / "cache"))
    models, reports = str(REPO / "models.yaml"), tmp_path / "reports"
    code = main(["eval", "yolov3-tiny-a16", "--models", models, "--report-dir", str(reports)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "yolov3-tiny-a16: 4 images" in out
    assert re.search(r"^reference\s+0\.228[34]\s+0\.494[45]\s", out, re.M), out  # AP 0.2284, AP50 0.4945
    assert re.search(r"^target\s+0\.22[78]\d\s", out, re.M), out  # 0.2280: a drop of 0.0004
    assert re.search(r"^agreement AP 0\.99\d\d", out, re.M), out  # 0.9912
    assert [line.split(":")[0] for line in out.splitlines() if line.startswith(("PASS", "FAIL"))] == [
        "PASS map_drop",
        "PASS map50_drop",
        "PASS agreement_ap",
    ]
    summary = json.loads((reports / "models" / "yolov3-tiny-a16" / "accuracy.json").read_text())
    assert summary["images"] == 4
    assert abs(summary["drop.ap"]) < 0.005

    code = main(["eval", "yolov3-tiny-int8", "--models", models, "--report-dir", str(reports)])
    out = capsys.readouterr().out
    assert code == 1, out  # "undefined: no detections": the mAP gates fail, the exit code says so
    assert "FAIL map_drop" in out
    assert "no usable detections on 4 images" in out


def offline_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy") and not k.startswith("PIP_")}
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        env[var] = CLOSED
    env.update(PIP_INDEX_URL=f"{CLOSED}/simple", PIP_RETRIES="0", PIP_TIMEOUT="1", PIP_CONFIG_FILE=os.devnull)
    env["PYTHONPATH"] = str(REPO)
    return env


def snapshot(root: Path) -> dict[Path, str]:
    """Every file of a folder with the sha256 of its content (manifest.json is rewritten, identically, on each run)."""
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}


def test_assets_offline_verifies_the_real_cache_and_fetches_nothing(tmp_path: Path, demo_assets: AssetPaths) -> None:
    """On the real asset cache, `qc assets --offline` verifies every file by sha256, writes nothing and touches no
    network (every proxy and the package index point at a closed port: a download would fail the command)."""
    root = demo_assets.root
    before = snapshot(root)
    cmd = [sys.executable, "-m", "qc.cli", "assets", "--offline", "--dir", str(root)]
    run = subprocess.run(cmd, env=offline_env(tmp_path), capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.splitlines()[0] == "all assets verified from the cache (sha256); nothing fetched"
    assert f"model: {root / 'yolov3-tiny-coco.onnx'}" in run.stdout
    assert snapshot(root) == before  # no file added, removed or changed

    empty = tmp_path / "empty"
    cmd = [sys.executable, "-m", "qc.cli", "assets", "--offline", "--dir", str(empty)]
    run = subprocess.run(cmd, env=offline_env(tmp_path), capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 2, run.stdout + run.stderr  # offline: refuses to download, never tries
    assert "missing from the asset cache and network use is off; run `qc assets`." in run.stderr
    assert not (empty / "downloads").exists() or not any((empty / "downloads").iterdir())


def test_a_closed_pipe_ends_the_cli_quietly() -> None:
    """``qc gates | head -1``: the reader closes the pipe before qc has written everything; qc stops with 141
    (128 + SIGPIPE, like POSIX tools) and no traceback."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from qc.cli import main; sys.exit(main(['gates']))"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    proc.stdout.close()  # nobody reads: the first write fails with EPIPE
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141
    assert "Traceback" not in err, err
    assert "BrokenPipeError" not in err, err
