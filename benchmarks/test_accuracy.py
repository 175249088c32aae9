"""Accuracy gates of the entry's task (detection: COCO AP and AP50 drop of the target, and agreement AP).

The tests ship with the qc plugin (``qc/pytest_plugin/suite/test_accuracy.py``) so that any repository runs them with
``pytest --qc-models models.yaml``; importing them here makes ``pytest benchmarks`` collect them from this folder.
"""

from qc.pytest_plugin.suite.test_accuracy import test_agreement_ap, test_map50_drop, test_map_drop

__all__ = ["test_agreement_ap", "test_map50_drop", "test_map_drop"]
