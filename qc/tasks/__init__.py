"""The task registry: what the accuracy gates evaluate (detection today; segmentation, classification, keypoints next).

A task kind is one module implementing :class:`qc.tasks.base.Task` plus one line in ``TASKS`` (and its spec class in
the ``task`` tagged union of :mod:`qc.config`, and its gates, with ``task=<kind>``, in the gate registry
:data:`qc.gates.GATE_SPECS`). This module imports nothing heavy: :mod:`qc.config` reads it while validating.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from qc.errors import ConfigError

if TYPE_CHECKING:
    from qc.config import ModelSpec
    from qc.tasks.base import Task

TASKS: dict[str, str] = {
    "detection": "qc.tasks.detection:DetectionTask",
    # issue 14 tasks
    "segmentation": "qc.tasks.segmentation:Segmentation",
    "classification": "qc.tasks.classification:Classification",
    # issue 15 tasks
    "keypoints": "qc.tasks.keypoints:KeypointsTask",
    "instance-segmentation": "qc.tasks.instance_segmentation:InstanceSegmentationTask",
}
"""Task kind -> ``module:class`` of its implementation (imported on first use)."""


def task_class(kind: str) -> type[Task]:
    """The implementation class of a task kind."""
    try:
        where = TASKS[kind]
    except KeyError:
        raise ConfigError(f"unknown task kind {kind!r}; task kinds are {sorted(TASKS)}") from None
    module, _, name = where.partition(":")
    cls: type[Task] = getattr(importlib.import_module(module), name)
    return cls


def task_of(spec: ModelSpec) -> Task:
    """The task of a models.yaml entry; an entry without a ``task`` section has none (a ConfigError naming it)."""
    if spec.task is None:
        raise ConfigError(f"{spec.name}: the accuracy gates need a 'task' section (e.g. decoder, class_names).")
    return task_class(spec.task.kind)(spec)
