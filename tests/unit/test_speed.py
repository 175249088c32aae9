"""Latency statistics, the onnxruntime profile parser, op-type shares, and the fps and lint gates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qc import gates
from qc.config import LintSettings, Thresholds
from qc.errors import ParseError
from qc.graph.lint import Finding, Severity
from qc.speed import LatencyStats, op_type_shares, parse_ort_profile, with_shares


def _trace(path: Path) -> Path:
    events = [
        {"cat": "Session", "name": "model_run", "ts": 0, "dur": 1000},
        {"cat": "Node", "name": "conv_kernel_time", "ts": 10, "dur": 900, "args": {"op_name": "Conv"}},
        {"cat": "Session", "name": "model_run", "ts": 2000, "dur": 400},
        {"cat": "Node", "name": "conv_kernel_time", "ts": 2010, "dur": 300, "args": {"op_name": "Conv"}},
        {"cat": "Node", "name": "add_kernel_time", "ts": 2310, "dur": 100, "args": {"op_name": "Add"}},
        {"cat": "Session", "name": "model_run", "ts": 3000, "dur": 600},
        {"cat": "Node", "name": "conv_kernel_time", "ts": 3010, "dur": 500, "args": {"op_name": "Conv"}},
        {"cat": "Node", "name": "add_kernel_time", "ts": 3510, "dur": 100, "args": {"op_name": "Add"}},
    ]
    path.write_text(json.dumps(events))
    return path


def test_profile_parser_skips_the_warmup_run_and_averages(tmp_path: Path) -> None:
    profile = parse_ort_profile(_trace(tmp_path / "t.json"), skip_runs=1)
    rows = {r.layer: r for r in profile.rows}
    assert rows["conv"].time == pytest.approx(400.0)
    assert rows["add"].time == pytest.approx(100.0)
    assert rows["conv"].share == pytest.approx(0.8)
    assert profile.run_ms == pytest.approx(0.5)
    shares = op_type_shares(profile.rows)
    assert shares[0][0] == "Conv"
    assert shares[0][2] == pytest.approx(0.8)


def test_profile_parser_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ParseError, match=r"bad\.json"):
        parse_ort_profile(bad)
    one = tmp_path / "one.json"
    one.write_text(json.dumps([{"cat": "Session", "name": "model_run", "ts": 0, "dur": 5}]))
    with pytest.raises(ParseError, match="1 model_run event"):
        parse_ort_profile(one)


def test_latency_stats_and_shares() -> None:
    s = LatencyStats.from_seconds([0.01] * 9 + [0.02], "t")
    assert s.fps == pytest.approx(1000 / 11)
    assert s.latency_ms_p50 == pytest.approx(10)
    assert s.latency_ms_p99 > s.latency_ms_p50
    rows = with_shares([("a", "Conv", 3.0), ("b", "Add", 1.0)], "us")
    assert [r.share for r in rows] == [0.75, 0.25]


def test_fps_gate() -> None:
    target = LatencyStats.from_seconds([0.1] * 5, "t")
    reference = LatencyStats.from_seconds([0.05] * 5, "r")
    assert gates.fps("m", target, reference, Thresholds()).passed
    low = gates.fps("m", target, reference, Thresholds(min_fps=20))
    assert not low.passed
    assert "FPS 10.00 < min_fps 20.00" in low.message
    ratio = gates.fps("m", target, reference, Thresholds(min_fps_ratio=1.0))
    assert not ratio.passed
    assert "FPS ratio 0.500" in ratio.message
    assert not gates.fps("m", target, None, Thresholds(min_fps_ratio=1.0)).passed


def _finding(rule: str, severity: Severity) -> Finding:
    return Finding(rule, severity, "n1", "Div", "Div by a constant.", "Division is slow.", "Multiply instead.", 0.2)


def test_lint_gate_respects_severity_and_allowed_rules() -> None:
    findings = [_finding("div", Severity.ERROR), _finding("channels-multiple-32", Severity.INFO)]
    failed = gates.lint("m", findings, LintSettings(max_severity="warning"))
    assert not failed.passed
    assert "div at n1 (Div)" in failed.message
    assert "Fix: Multiply instead." in failed.message
    assert "Time share 20.0%" in failed.message
    assert gates.lint("m", findings, LintSettings(max_severity="warning", allow=("div",))).passed
    assert gates.lint("m", findings, LintSettings(max_severity="error")).passed
