"""HTP session helpers that need no HTP: options, platform checks, onnxruntime log parsing into lint findings."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest

from qc.errors import ModelError
from qc.graph.lint import Severity
from qc.qnn import session as htp
from qc.qnn.session import (
    HtpOptions,
    HtpUnavailableError,
    create_htp_session,
    parse_reasons,
    parse_unsupported,
    unsupported_findings,
)
from qc.qnn.settings import QnnHtpTarget

# Lines as onnxruntime 1.32 + onnxruntime-qnn 2.7.0 write them (ANSI colours already stripped), verbose level.
LOG = """\
2026-11-30 05:53:15.944 [V:onnxruntime:qc-htp, qnn_execution_provider.cc:1713 LogNodeSupport] \
Validation FAILED for 1 nodes in OrtNodeUnit (Det) :
\tOperator type: Det Node name: det_b Node index: 1
\tREASON : Operators of type `Det` are not supported by QNN EP.Det node `det_b` will not be assigned to QNN EP.

2026-11-30 05:53:15.944 [V:onnxruntime:qc-htp, qnn_execution_provider.cc:1713 LogNodeSupport] \
Validation PASSED for 1 nodes in OrtNodeUnit (Relu) :
\tOperator type: Relu Node name: relu_a Node index: 0

2026-11-30 05:53:15.945 [E:onnxruntime:qc-htp, qnn_execution_provider.cc:2453 GetCapabilityImpl] \
Unsupported nodes in QNN EP: { name: det:2, type: Det }{ name: det_b, type: Det }
2026-11-30 05:53:15.946 [E:onnxruntime:qc-htp, qnn_execution_provider.cc:2453 GetCapabilityImpl] \
Unsupported nodes in QNN EP: { name: det:2, type: Det }{ name: det_b, type: Det }
2026-11-30 05:53:16.990 [E:onnxruntime:qc-htp, inference_session.cc:3309 operator()] This session contains graph \
nodes that are assigned to the default CPU EP, but fallback to CPU EP has been explicitly disabled by the user.
"""


def test_provider_options_default_to_the_rvc4() -> None:
    options = HtpOptions().provider_options()
    assert options == {
        "backend_type": "htp",
        "htp_arch": "73",
        "soc_model": "66",
        "enable_htp_fp16_precision": "1",
    }
    assert HtpOptions(fp16=False).provider_options()["enable_htp_fp16_precision"] == "0"


def test_provider_options_profiling_and_extra(tmp_path: Path) -> None:
    csv = tmp_path / "p.csv"
    options = HtpOptions(profiling="detailed", profile_path=csv, extra={"htp_performance_mode": "burst"})
    got = options.provider_options()
    assert got["profiling_level"] == "detailed"
    assert got["profiling_file_path"] == str(csv)
    assert got["htp_performance_mode"] == "burst"


def test_options_for_a_target(tmp_path: Path) -> None:
    target = QnnHtpTarget(kind="qnn-htp", htp_arch=75, soc_model=57)
    assert HtpOptions.for_target(target) == HtpOptions(htp_arch=75, soc_model=57)
    profiled = HtpOptions.for_target(target, tmp_path / "p.csv")
    assert profiled.profiling == "detailed"
    assert profiled.profile_path == tmp_path / "p.csv"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"htp_arch": 70}, "htp_arch must be one of"),
        ({"soc_model": 0}, "soc_model must be a QNN SoC number"),
        ({"profiling": "detailed"}, "needs a profile_path"),
    ],
)
def test_bad_options_are_model_errors(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ModelError, match=message):
        HtpOptions(**kwargs)


def test_unsupported_nodes_are_parsed_once_each_in_order() -> None:
    assert parse_unsupported(LOG) == [("det:2", "Det"), ("det_b", "Det")]
    assert parse_unsupported("no such line\n") == []


def test_reasons_come_from_failed_units_only() -> None:
    reasons = parse_reasons(LOG)
    assert set(reasons) == {"det_b"}
    assert reasons["det_b"].startswith("Operators of type `Det` are not supported")


def test_findings_are_htp_unsupported_errors_with_a_reason_or_a_fallback() -> None:
    findings = unsupported_findings(LOG, entry="demo")
    assert [(f.rule, f.severity, f.node, f.op_type) for f in findings] == [
        ("htp-unsupported", Severity.ERROR, "det:2", "Det"),
        ("htp-unsupported", Severity.ERROR, "det_b", "Det"),
    ]
    by_node = {f.node: f for f in findings}
    assert "not supported by QNN EP" in by_node["det_b"].why
    assert "no implementation of Det" in by_node["det:2"].why  # no verbose block for it: the generic reason
    assert by_node["det_b"].what.startswith("demo: Det node 'det_b'")
    assert by_node["det_b"].nodes == ("det_b",)
    assert by_node["det_b"].fix


def test_missing_platform_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("platform.machine", lambda: "aarch64")
    reason = htp.htp_missing()
    assert reason is not None
    assert "x86_64 Linux" in reason
    assert "aarch64" in reason
    with pytest.raises(HtpUnavailableError, match="needs x86_64 Linux"):
        create_htp_session(Path("model.onnx"))


def test_missing_package_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.import_module

    def fake_import(name: str, package: str | None = None) -> Any:
        if name == "onnxruntime_qnn":
            raise ModuleNotFoundError("No module named 'onnxruntime_qnn'")
        return real(name, package)

    monkeypatch.setattr("importlib.import_module", fake_import)
    reason = htp.htp_missing()
    assert reason is not None
    assert "onnxruntime-qnn is not installed" in reason
    assert "onnxruntime-qnn==2.7.0" in reason
    with pytest.raises(HtpUnavailableError, match="onnxruntime-qnn"):
        htp.qnn_ep_devices()


def test_a_missing_model_file_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(htp, "_qnn_module", object)  # past the platform check, on any machine
    with pytest.raises(ModelError, match=r"demo: .*absent\.onnx does not exist"):
        create_htp_session(tmp_path / "absent.onnx", entry="demo")
