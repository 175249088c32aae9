"""Settings of the ``qnn-htp`` target (not yet part of models.yaml's target union: wired in by the target registry).

The quantization settings are the SNPE-named ones of ``ort-int8`` (:class:`qc.config.QuantSettings`); the rest
selects the HTP the graph is prepared for. The defaults are the Luxonis RVC4's Qualcomm QCS8550 (Hexagon v73).
"""

from __future__ import annotations

from typing import Final, Literal

from pydantic import Field

from qc.config import QuantSettings

# QNN's SoC table (Qnn_SocModel_t in QNN's QnnTypes.h): QNN_SOC_MODEL_QCS8550 = 66, the IoT sibling of
# SM8550 (= 43); both are Hexagon v73 parts with 8 MB of VTCM. The RVC4 is a QCS8550.
RVC4_SOC_MODEL: Final = 66
RVC4_HTP_ARCH: Final = 73
HTP_ARCHS = (68, 69, 73, 75, 79, 81)

HtpArch = Literal[68, 69, 73, 75, 79, 81]
Precision = Literal["quantized", "fp16"]
ProfilingLevel = Literal["off", "basic", "detailed"]


class QnnHtpTarget(QuantSettings):
    """The reference quantized on the host (QDQ, SNPE-named settings) and run on Qualcomm's HTP backend
    (the simulator that ships with ``onnxruntime-qnn``), CPU fallback disabled."""

    kind: Literal["qnn-htp"]
    precision: Precision = Field(
        default="quantized",
        description="quantized: the QDQ model from the quantization settings; fp16: the FP32 reference in HTP fp16.",
    )
    htp_arch: HtpArch = Field(default=RVC4_HTP_ARCH, description="Hexagon HTP architecture (RVC4: v73).")
    soc_model: int = Field(
        default=RVC4_SOC_MODEL, ge=1, description="QNN SoC model number (QNN's SoC table; RVC4's QCS8550: 66)."
    )
    profiling: ProfilingLevel = Field(default="detailed", description="QNN profiling level of the timed run.")
