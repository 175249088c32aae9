"""One small error hierarchy. Messages are complete sentences naming file, field or tensor."""

from __future__ import annotations


class QcError(Exception):
    """Base of every error qc raises on purpose."""


class ConfigError(QcError):
    """models.yaml (or another settings file) is invalid."""


class DataError(QcError):
    """An image, dataset, asset or tensor file is missing, corrupt or of the wrong shape."""


class ModelError(QcError):
    """An ONNX model is invalid or does not fit its models.yaml entry."""


class ParseError(QcError):
    """A tool's output could not be parsed; the message names the tool and the offending line."""


class DeviceError(QcError):
    """A device or its transport failed (unreachable, timeout, auth, remote command error)."""


class MetricError(QcError):
    """A metric is undefined (all-zero tensor, NaN, Inf): a gate must fail, never pass."""
