"""Accuracy gates of the entry's task (detection: COCO AP and AP50 drop of the target, and agreement AP).

One test per gate the task registry contributes (``needs="accuracy"`` in :data:`qc.gates.GATE_SPECS`), named
``test_<gate>``: a new task kind's gates get their tests here without a new test function.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from qc import gates
from qc.config import ModelSpec
from qc.gates import Evidence, GateResult

Check = Callable[[GateResult], None]


def with_headlines(result: GateResult, spec: ModelSpec, outcome: Any) -> GateResult:
    """The gate's result with the task's headline metrics it does not record itself (summary.csv columns, JUnit
    properties and the history carry every headline, whichever of the task's gates run)."""
    from qc.tasks import task_of

    task = task_of(spec)
    values = task.metrics(outcome)
    extra = {h.name: values[h.name] for h in task.headlines if h.name in values and h.name not in result.metrics}
    return dataclasses.replace(result, metrics={**result.metrics, **extra}) if extra else result


def _accuracy_test(gate: str) -> Callable[[ModelSpec, Any, Check], None]:
    def test(qc_model: ModelSpec, accuracy: Any, check_gate: Check) -> None:
        check_gate(with_headlines(gates.check(gate, Evidence(qc_model, accuracy=accuracy)), qc_model, accuracy))

    test.__name__ = test.__qualname__ = f"test_{gate}"
    test.__doc__ = gates.gate_info(gate).doc
    marked: Callable[[ModelSpec, Any, Check], None] = pytest.mark.qc_gate(gate)(test)
    return marked


__all__: list[str] = []
for _gate in gates.gates_needing("accuracy"):
    globals()[f"test_{_gate}"] = _accuracy_test(_gate)
    __all__.append(f"test_{_gate}")
