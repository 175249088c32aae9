"""Settings of the ``qnn`` device target: a QNN context binary run with ``qnn-net-run`` on a device (not yet part of
models.yaml's target union: wired in by the target registry as ``kind: qnn``).

The context binary is either given (``context_binary``) or exported from the reference with the quantization
settings (SNPE-named, as ``ort-int8``/``qnn-htp``) for ``htp_arch``/``soc_model`` (:func:`qc.qnn.device_runner.
export_for_target`). The defaults are the Luxonis RVC4's Qualcomm QCS8550 (Hexagon v73).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final, Literal

from pydantic import Field, field_validator

from qc.config import QuantSettings
from qc.qnn.settings import RVC4_HTP_ARCH, RVC4_SOC_MODEL, HtpArch

__all__ = ["PERF_PROFILES", "QnnDeviceTarget"]

PERF_PROFILES: Final = (
    "low_balanced",
    "balanced",
    "default",
    "high_performance",
    "sustained_high_performance",
    "burst",
    "low_power_saver",
    "power_saver",
    "high_power_saver",
    "extreme_power_saver",
    "system_settings",
)
"""``qnn-net-run --perf_profile`` values (QNN SDK documentation)."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class QnnDeviceTarget(QuantSettings):
    """A QNN context binary run with ``qnn-net-run --retrieve_context`` on the HTP of a device (over SSH), final
    outputs and per-op time (``qnn-profile-viewer``). Per-layer tensors are not available from a context binary
    (``qnn-net-run --debug`` refuses ``--retrieve_context``): per-layer similarity comes from the ``qnn-htp`` host
    target."""

    kind: Literal["qnn"]
    context_binary: Path | None = Field(
        default=None,
        description="A context binary prepared for the device's HTP; none: export one from the reference with the "
        "quantization settings for htp_arch/soc_model.",
    )
    source_model: Path | None = Field(
        default=None, description="The ONNX model the context was prepared from (maps profiled ops to ONNX nodes)."
    )
    devices: tuple[str, ...] = Field(min_length=1, description="Names from the top-level 'devices' list: a pool.")
    backend: str = Field(default="libQnnHtp.so", description="qnn-net-run --backend (found via LD_LIBRARY_PATH).")
    batch_size: int = Field(default=8, gt=0, description="Images per qnn-net-run call.")
    native_io: bool = Field(default=True, description="--use_native_input_files/--use_native_output_files.")
    io_layout: Literal["auto", "onnx", "nhwc"] = Field(
        default="auto",
        description="Layout of the context's 4-D I/O: auto decides from the dimensions (refusing ambiguous ones).",
    )
    profiling: Literal["basic", "detailed"] = Field(default="detailed", description="--profiling_level of timed runs.")
    perf_profile: str | None = Field(default=None, description="Overrides the device's perf profile.")
    speed_inferences: int = Field(default=50, gt=0, description="Inferences of the speed run (NetRun IPS).")
    htp_arch: HtpArch = Field(default=RVC4_HTP_ARCH, description="HTP architecture an exported context is for.")
    soc_model: int = Field(default=RVC4_SOC_MODEL, ge=1, description="QNN SoC number an exported context is for.")
    keep_on_failure: bool = Field(default=False, description="Keep the device run folder when a stage fails.")

    @field_validator("backend")
    @classmethod
    def _backend(cls, value: str) -> str:
        found = _CONTROL.search(value)
        if found is not None or not value.strip():
            raise ValueError(f"backend {value!r} must be a library name or path without control characters")
        return value

    @field_validator("perf_profile")
    @classmethod
    def _perf(cls, value: str | None) -> str | None:
        if value is not None and value not in PERF_PROFILES:
            raise ValueError(f"perf_profile {value!r} is not one of {', '.join(PERF_PROFILES)}")
        return value
