"""Diagnosis (opt in: ``--qc-diagnose`` or ``-m diagnose``): which layers cause the loss, and a verified fix.

Not a models.yaml gate: it asserts that a model failing its gates gets named origins with evidence, and that the
advised mixed-precision variant, quantized and measured in the same run, passes the advice's goal gates.
"""

from __future__ import annotations

import pytest

from qc.config import ModelSpec
from qc.diagnose.stage import Diagnosis


@pytest.mark.diagnose
def test_diagnose(qc_model: ModelSpec, diagnosis: Diagnosis) -> None:
    if not diagnosis.failing_gates:
        return  # nothing is broken: origins and advice are informative only
    if not diagnosis.origins:
        pytest.fail(
            f"{qc_model.name}: fails {diagnosis.failing_gates} but no origin layer was named "
            f"(see {diagnosis.model}/local.csv and sensitivity.csv).",
            pytrace=False,
        )
    for origin in diagnosis.origins:
        if not origin.reasons:
            pytest.fail(f"{qc_model.name}: origin {origin.tensor} is named without evidence.", pytrace=False)
    advice = diagnosis.advice
    if advice is None or not advice.needed:
        return
    ver = advice.verification
    if ver is None or not ver.passed:
        failing = "; ".join(v.message for v in ver.failing()) if ver is not None else "no variant could be built"
        pytest.fail(f"{advice.message} Failing goal gates of the advised variant: {failing}", pytrace=False)
