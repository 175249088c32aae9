"""Settings of the ``qnn-htp`` target: the spec class lives in :mod:`qc.config` (the ``target`` tagged union of
models.yaml); this module names the HTP architectures and defaults for :mod:`qc.qnn`.

The quantization settings are the SNPE-named ones of ``ort-int8`` (:class:`qc.config.QuantSettings`); the rest
selects the HTP the graph is prepared for. The defaults are the Luxonis RVC4's Qualcomm QCS8550 (Hexagon v73).
"""

from __future__ import annotations

from typing import Literal

from qc.config import RVC4_HTP_ARCH, RVC4_SOC_MODEL, QnnHtpTarget

HTP_ARCHS = (68, 69, 73, 75, 79, 81)

HtpArch = Literal[68, 69, 73, 75, 79, 81]
Precision = Literal["quantized", "fp16"]
ProfilingLevel = Literal["off", "basic", "detailed"]

__all__ = [
    "HTP_ARCHS",
    "RVC4_HTP_ARCH",
    "RVC4_SOC_MODEL",
    "HtpArch",
    "Precision",
    "ProfilingLevel",
    "QnnHtpTarget",
]
