"""Accuracy gates of the entry's task (detection: COCO AP and AP50 drop of the target, and agreement AP)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from qc import gates
from qc.config import ModelSpec
from qc.gates import Evidence, GateResult

Check = Callable[[GateResult], None]


@pytest.mark.qc_gate("map_drop")
def test_map_drop(qc_model: ModelSpec, accuracy: Any, check_gate: Check) -> None:
    check_gate(gates.check("map_drop", Evidence(qc_model, accuracy=accuracy)))


@pytest.mark.qc_gate("map50_drop")
def test_map50_drop(qc_model: ModelSpec, accuracy: Any, check_gate: Check) -> None:
    check_gate(gates.check("map50_drop", Evidence(qc_model, accuracy=accuracy)))


@pytest.mark.qc_gate("agreement_ap")
def test_agreement_ap(qc_model: ModelSpec, accuracy: Any, check_gate: Check) -> None:
    check_gate(gates.check("agreement_ap", Evidence(qc_model, accuracy=accuracy)))
