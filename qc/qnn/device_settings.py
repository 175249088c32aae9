"""Settings of the ``qnn`` device target: the spec class lives in :mod:`qc.config` (the ``target`` tagged union of
models.yaml, ``kind: qnn``), as ``qnn-htp``'s does; this module names it for :mod:`qc.qnn`.

The context binary is either given (``context_binary``) or exported from the reference with the quantization
settings (SNPE-named, as ``ort-int8``/``qnn-htp``) for ``htp_arch``/``soc_model`` (:func:`qc.qnn.device_runner.
export_for_target`). The defaults are the Luxonis RVC4's Qualcomm QCS8550 (Hexagon v73).
"""

from __future__ import annotations

from qc.config import QNN_PERF_PROFILES, QnnDeviceTarget

PERF_PROFILES = QNN_PERF_PROFILES
"""``qnn-net-run --perf_profile`` values (QNN SDK documentation)."""

__all__ = ["PERF_PROFILES", "QnnDeviceTarget"]
