"""The target registry: one module per target kind, each implementing :class:`qc.targets.base.Target`.

Adding a kind (e.g. ``qnn-htp``): its spec class in the ``target`` tagged union of :mod:`qc.config`, one line in
``TARGETS`` below and one new module ``qc/targets/<kind>.py``. Nothing in the pipeline, the gates, the plugin or the
benchmarks changes: they only call the protocol. Implementations are imported on first use, so a kind's heavy
dependencies (paramiko for a device, a vendor SDK) load only when an entry of that kind runs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from qc.errors import ConfigError

if TYPE_CHECKING:
    from qc.pipeline import ModelStages
    from qc.targets.base import Target

TARGETS: dict[str, str] = {
    "ort-int8": "qc.targets.ort_int8:OrtInt8",
    "onnx": "qc.targets.onnx:Onnx",
    "snpe": "qc.targets.snpe:Snpe",
    "qnn-htp": "qc.targets.qnn_htp:QnnHtp",
    "qnn": "qc.targets.qnn:Qnn",
}
"""Target kind (``target.kind`` in models.yaml) -> ``module:class`` of its implementation."""


def target_class(kind: str) -> type[Target]:
    """The implementation class of a target kind."""
    try:
        where = TARGETS[kind]
    except KeyError:
        raise ConfigError(f"unknown target kind {kind!r}; target kinds are {sorted(TARGETS)}") from None
    module, _, name = where.partition(":")
    cls: type[Target] = getattr(importlib.import_module(module), name)
    return cls


def target_for(stages: ModelStages) -> Target:
    """The target of one models.yaml entry, built over its stages (nothing is quantized or leased yet)."""
    return target_class(stages.spec.target.kind)(stages)
