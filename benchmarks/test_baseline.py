"""Regression against an earlier run (--qc-baseline last or a run id): headline metrics, worst-layer cosine, FPS.

The tests ship with the qc plugin (``qc/pytest_plugin/suite/test_baseline.py``) so that any repository runs them with
``pytest --qc-models models.yaml``; importing them here makes ``pytest benchmarks`` collect them from this folder.
"""

from qc.pytest_plugin.suite.test_baseline import test_baseline

__all__ = ["test_baseline"]
