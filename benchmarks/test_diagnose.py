"""Diagnosis (opt in: ``--qc-diagnose`` or ``-m diagnose``): which layers cause the loss, and a verified fix.

The tests ship with the qc plugin (``qc/pytest_plugin/suite/test_diagnose.py``) so that any repository runs them with
``pytest --qc-models models.yaml``; importing them here makes ``pytest benchmarks`` collect them from this folder.
"""

from qc.pytest_plugin.suite.test_diagnose import test_diagnose, test_diagnose_advice

__all__ = ["test_diagnose", "test_diagnose_advice"]
