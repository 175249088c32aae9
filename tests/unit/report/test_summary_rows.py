"""summary.csv rows: one column per gate outcome; a metric named like a gate never overwrites that outcome."""

from __future__ import annotations

from typing import Literal

import pytest

from qc.pytest_plugin.report import Summary


def _report(gate: str, outcome: Literal["passed", "failed"], **props: object) -> pytest.TestReport:
    properties = [("qc_model", "m"), ("qc_gate", gate), ("qc_target", "ort-int8"), *props.items()]
    return pytest.TestReport(
        f"benchmarks/test_accuracy.py::test_{gate}[m]", ("x", 0, "x"), {}, outcome, None, "call",
        user_properties=properties,
    )  # fmt: skip


def test_a_metric_named_like_a_gate_does_not_overwrite_its_outcome() -> None:
    summary = Summary()
    summary.add(_report("top1_agreement", "passed", **{"agreement.top1": 0.97, "top1_agreement": 0.97}))
    summary.add(_report("top1_drop", "failed", **{"drop.top1": 0.1}))
    row = summary.rows["m"]
    assert row["top1_agreement"] == "passed"
    assert row["top1_agreement.value"] == 0.97
    assert row["agreement.top1"] == 0.97
    assert row["top1_drop"] == "failed"
    assert row["target"] == "ort-int8"
