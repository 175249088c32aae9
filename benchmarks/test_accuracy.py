"""Accuracy gates: COCO AP and AP50 drop of the target against the reference, and agreement AP."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from qc import gates
from qc.config import ModelSpec
from qc.eval.accuracy import AccuracyResult
from qc.gates import GateResult

Check = Callable[[GateResult], None]


@pytest.mark.qc_gate("map_drop")
def test_map_drop(qc_model: ModelSpec, accuracy: AccuracyResult, check_gate: Check) -> None:
    check_gate(gates.map_drop(qc_model.name, accuracy, qc_model.thresholds, key="ap"))


@pytest.mark.qc_gate("map50_drop")
def test_map50_drop(qc_model: ModelSpec, accuracy: AccuracyResult, check_gate: Check) -> None:
    check_gate(gates.map_drop(qc_model.name, accuracy, qc_model.thresholds, key="ap50"))


@pytest.mark.qc_gate("agreement_ap")
def test_agreement_ap(qc_model: ModelSpec, accuracy: AccuracyResult, check_gate: Check) -> None:
    check_gate(gates.agreement_ap(qc_model.name, accuracy, qc_model.thresholds))
