"""Accuracy gates of the entry's task (detection: COCO AP and AP50 drop of the target, and agreement AP).

The tests ship with the qc plugin (``qc/pytest_plugin/suite/test_accuracy.py``: one ``test_<gate>`` per gate the
task registry contributes) so that any repository runs them with ``pytest --qc-models models.yaml``; importing them
here makes ``pytest benchmarks`` collect them from this folder.
"""

from qc.pytest_plugin.suite.test_accuracy import *  # noqa: F403
