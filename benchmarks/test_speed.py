"""Speed: target throughput and latency (pytest-benchmark), the reference's, per-layer time, and the lint gate.

The tests ship with the qc plugin (``qc/pytest_plugin/suite/test_speed.py``) so that any repository runs them with
``pytest --qc-models models.yaml``; importing them here makes ``pytest benchmarks`` collect them from this folder.
"""

from qc.pytest_plugin.suite.test_speed import test_fps, test_lint

__all__ = ["test_fps", "test_lint"]
