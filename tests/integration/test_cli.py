"""The `qc` command line on real files: lint and fix a model with a slow pattern, validate, compare."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

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
