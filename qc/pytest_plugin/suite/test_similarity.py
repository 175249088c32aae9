"""Similarity gates: per-layer cosine, per-output and per-slice cosine and SQNR, against models.yaml thresholds."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from qc import gates
from qc.compare.layerwise import Comparison
from qc.config import ModelSpec
from qc.gates import Evidence, GateResult

Check = Callable[[GateResult], None]


@pytest.mark.qc_gate("layer_cosine")
def test_layer_cosine(qc_model: ModelSpec, comparison: Comparison, check_gate: Check) -> None:
    check_gate(gates.check("layer_cosine", Evidence(qc_model, comparison=comparison)))


@pytest.mark.qc_gate("output_cosine")
def test_output_cosine(qc_model: ModelSpec, comparison: Comparison, check_gate: Check) -> None:
    check_gate(gates.check("output_cosine", Evidence(qc_model, comparison=comparison)))


@pytest.mark.qc_gate("output_sqnr")
def test_output_sqnr(qc_model: ModelSpec, comparison: Comparison, check_gate: Check) -> None:
    check_gate(gates.check("output_sqnr", Evidence(qc_model, comparison=comparison)))
