"""The diagnosis tests with nothing to check are reported as not applicable, never passed (through the plugin)."""

from __future__ import annotations

import re
from pathlib import Path

from tests.e2e.test_plugin_outside import GOOD, run_outside
from tests.models import tiny_project


def test_a_model_passing_its_gates_makes_the_diagnosis_tests_not_applicable(tmp_path: Path) -> None:
    tiny_project(tmp_path, [GOOD])
    run = run_outside(tmp_path, "--qc-diagnose", "-k", "diagnose", "-rs")
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    assert re.search(r"\b2 skipped\b", out), out
    assert " passed" not in out.splitlines()[-1], out  # nothing counted as a pass
    section = out.split("qc: not applicable", 1)
    assert len(section) == 2, out
    for test in ("test_diagnose[tiny-a16]", "test_diagnose_advice[tiny-a16]"):
        assert re.search(rf"{re.escape(test)}: tiny-a16 fails none of its gates", section[1]), out
