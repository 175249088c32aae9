"""Diagnosis (opt in: ``--qc-diagnose`` or ``-m diagnose``): which layers cause the loss, and a verified fix.

Not a models.yaml gate: ``test_diagnose`` asserts that a model failing its gates gets named origins with evidence;
``test_diagnose_advice`` that the advised mixed-precision variant, quantized and measured in the same run, passes the
advice's goal gates. Whether there is anything to check is known only once the gates' verdicts are (the diagnosis
computes them), so a model with nothing to check is skipped with a reason starting ``not applicable:``, never
passed: the plugin lists those under "qc: not applicable" in the terminal summary.
"""

from __future__ import annotations

import pytest

from qc.config import ModelSpec
from qc.diagnose.stage import Diagnosis
from qc.pytest_plugin.report import NOT_APPLICABLE


def _nothing_failing(model: ModelSpec, diagnosis: Diagnosis) -> None:
    if not diagnosis.failing_gates:
        pytest.skip(
            f"{NOT_APPLICABLE}{model.name} fails none of its gates, so there is no loss to explain "
            f"(origins and advice are informative only: {diagnosis.model}/diagnosis.json)."
        )


@pytest.mark.diagnose
def test_diagnose(qc_model: ModelSpec, diagnosis: Diagnosis) -> None:
    _nothing_failing(qc_model, diagnosis)
    if not diagnosis.origins:
        pytest.fail(
            f"{qc_model.name}: fails {diagnosis.failing_gates} but no origin layer was named "
            f"(see {diagnosis.model}/local.csv and sensitivity.csv).",
            pytrace=False,
        )
    for origin in diagnosis.origins:
        if not origin.reasons:
            pytest.fail(f"{qc_model.name}: origin {origin.tensor} is named without evidence.", pytrace=False)


@pytest.mark.diagnose
def test_diagnose_advice(qc_model: ModelSpec, diagnosis: Diagnosis) -> None:
    _nothing_failing(qc_model, diagnosis)
    advice = diagnosis.advice
    if advice is None:
        notes = " ".join(diagnosis.notes) or "the target kind cannot be re-quantized"
        pytest.skip(f"{NOT_APPLICABLE}{qc_model.name}: no advice is computed for this entry ({notes})")
    if not advice.needed:
        pytest.skip(f"{NOT_APPLICABLE}{advice.message or f'{qc_model.name}: no advice needed'}")
    ver = advice.verification
    if ver is None or not ver.passed:
        failing = "; ".join(v.message for v in ver.failing()) if ver is not None else "no variant could be built"
        pytest.fail(f"{advice.message} Failing goal gates of the advised variant: {failing}", pytrace=False)
