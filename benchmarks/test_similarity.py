"""Similarity gates: per-layer cosine, per-output and per-slice cosine and SQNR, against models.yaml thresholds.

The tests ship with the qc plugin (``qc/pytest_plugin/suite/test_similarity.py``) so that any repository runs them with
``pytest --qc-models models.yaml``; importing them here makes ``pytest benchmarks`` collect them from this folder.
"""

from qc.pytest_plugin.suite.test_similarity import test_layer_cosine, test_output_cosine, test_output_sqnr

__all__ = ["test_layer_cosine", "test_output_cosine", "test_output_sqnr"]
