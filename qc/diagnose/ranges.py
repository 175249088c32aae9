"""Range evidence for every quantized activation: its quantizer against what the reference really produces.

For each activation QuantizeLinear of the target: scale and zero point (per channel where used) from the QDQ
model's initializers, bitwidth and integer range from the zero point's type; then, streamed over the evaluation
images, the reference tensor's observed range, the share of values outside the representable range (clipped),
and the error of quantizing the reference itself relative to the step, RMSE(DQ(Q(x)) - x) / scale: 0.29 is
ideal rounding noise (uniform error), well above means clipping. Per channel (two axes) and per declared output
slice it also finds values that never reach one quantization step, which quantize to zero: the signature of one
scale shared by tensors of very different ranges (boxes in pixels next to 0..1 scores).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from qc.compare.layerwise import slice_array
from qc.config import Slice
from qc.diagnose.local import channel_axes
from qc.diagnose.qdq import Quantizer

IDEAL_RMSE_STEPS = 1.0 / math.sqrt(12.0)
CLIPPING_SHARE = 1e-3
CLIPPING_RMSE_STEPS = 0.5
WIDE_LEVEL_SHARE = 1.0 / 8.0
WIDE_LEVELS = 32.0
BELOW_STEP_SHARE = 0.10


@dataclass(frozen=True)
class SliceRange:
    name: str
    observed_min: float
    observed_max: float
    peak_steps: float
    """max |x| over the slice, in quantization steps: below 0.5 every value quantizes to zero."""
    zeroed_share: float
    """Share of the slice's nonzero reference values that quantize to exactly zero."""


@dataclass(frozen=True)
class RangeEvidence:
    tensor: str
    target_tensor: str
    bits: int
    dtype: str
    qmin: int
    qmax: int
    scale: list[float]
    zero_point: list[int]
    axis: int | None
    representable_min: float
    representable_max: float
    observed_min: float
    observed_max: float
    values: int
    clipped_share: float
    rmse_steps: float
    levels_used: float
    level_share: float
    zeroed_share: float
    channel_axis: int | None = None
    channels: int = 0
    channels_below_step: int = 0
    below_step_first: tuple[int, ...] = ()
    slices: tuple[SliceRange, ...] = ()
    flags: tuple[str, ...] = ()
    findings: tuple[str, ...] = ()

    @property
    def step(self) -> float:
        return max(self.scale)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RangeEvidence:
        return cls(
            **{
                **data,
                "below_step_first": tuple(data["below_step_first"]),
                "slices": tuple(SliceRange(**s) for s in data["slices"]),
                "flags": tuple(data["flags"]),
                "findings": tuple(data["findings"]),
            }
        )


@dataclass
class _SliceAcc:
    lo: float = math.inf
    hi: float = -math.inf
    peak: float = 0.0
    zeroed: int = 0
    nonzero: int = 0


@dataclass
class RangeAccumulator:
    """Running range statistics of one quantized tensor: constant memory whatever the number of images."""

    quantizer: Quantizer
    slices: Mapping[str, Slice] = field(default_factory=dict)
    values: int = 0
    clipped: int = 0
    err_sq: float = 0.0
    zeroed: int = 0
    nonzero: int = 0
    lo: float = math.inf
    hi: float = -math.inf
    peaks: dict[int, np.ndarray] = field(default_factory=dict)
    parts: dict[str, _SliceAcc] = field(default_factory=dict)

    def add(self, x: np.ndarray) -> None:
        q = self.quantizer
        x = np.asarray(x, dtype=np.float32)
        if x.size == 0:
            return
        finite = np.isfinite(x)
        if not finite.all():
            x = np.where(finite, x, 0.0).astype(np.float32)
        low, high = q.bounds(x.ndim)
        s = q._broadcast(q.scale.astype(np.float32), x.ndim)
        half = 0.5 * s
        self.values += x.size
        self.clipped += int(np.count_nonzero((x < low - half) | (x > high + half)))
        fq = q.fake_quant(x)
        err = (fq - x) / s
        self.err_sq += float(np.dot(err.reshape(-1).astype(np.float64), err.reshape(-1).astype(np.float64)))
        live = x != 0
        lost = live & (fq == 0)
        self.nonzero += int(np.count_nonzero(live))
        self.zeroed += int(np.count_nonzero(lost))
        self.lo = min(self.lo, float(x.min()))
        self.hi = max(self.hi, float(x.max()))
        mag = np.abs(x)
        for axis in channel_axes(x.ndim):
            peak = np.moveaxis(mag, axis, 0).reshape(x.shape[axis], -1).max(axis=1)
            have = self.peaks.get(axis)
            self.peaks[axis] = peak if have is None or have.shape != peak.shape else np.maximum(have, peak)
        for name, spec in self.slices.items():
            xs, fs = slice_array(x, spec, q.reference or q.tensor), slice_array(fq, spec, q.reference or q.tensor)
            acc = self.parts.setdefault(name, _SliceAcc())
            acc.lo = min(acc.lo, float(xs.min()))
            acc.hi = max(acc.hi, float(xs.max()))
            acc.peak = max(acc.peak, float(np.abs(xs).max()))
            nz = xs != 0
            acc.nonzero += int(np.count_nonzero(nz))
            acc.zeroed += int(np.count_nonzero(nz & (fs == 0)))

    def evidence(self, tensor: str) -> RangeEvidence:
        q = self.quantizer
        step = q.step
        scale = q.scale.astype(np.float64).reshape(-1)
        zp = q.zero_point.astype(np.float64).reshape(-1)
        rep_lo, rep_hi = float(np.min((q.qmin - zp) * scale)), float(np.max((q.qmax - zp) * scale))
        levels = q.qmax - q.qmin
        n = max(self.values, 1)
        span = (self.hi - self.lo) / step if self.values and step > 0 else math.nan
        channel_axis: int | None = None
        channels = below = 0
        first: tuple[int, ...] = ()
        for axis, peak in sorted(self.peaks.items()):
            live = peak > 0
            small = np.flatnonzero(live & (peak < step))
            if channel_axis is None or small.size > below:
                channel_axis, channels, below = axis, int(np.count_nonzero(live)), int(small.size)
                first = tuple(int(i) for i in small[:8])
        slices = tuple(
            SliceRange(
                name=name,
                observed_min=acc.lo,
                observed_max=acc.hi,
                peak_steps=acc.peak / step if step > 0 else math.nan,
                zeroed_share=acc.zeroed / acc.nonzero if acc.nonzero else 0.0,
            )
            for name, acc in self.parts.items()
        )
        ev = RangeEvidence(
            tensor=tensor,
            target_tensor=q.tensor,
            bits=q.bits,
            dtype=q.dtype,
            qmin=q.qmin,
            qmax=q.qmax,
            scale=[float(v) for v in q.scale.reshape(-1)],
            zero_point=[int(v) for v in q.zero_point.reshape(-1)],
            axis=q.axis,
            representable_min=rep_lo,
            representable_max=rep_hi,
            observed_min=self.lo,
            observed_max=self.hi,
            values=self.values,
            clipped_share=self.clipped / n,
            rmse_steps=math.sqrt(self.err_sq / n),
            levels_used=span,
            level_share=span / levels if levels else math.nan,
            zeroed_share=self.zeroed / self.nonzero if self.nonzero else 0.0,
            channel_axis=channel_axis,
            channels=channels,
            channels_below_step=below,
            below_step_first=first,
            slices=slices,
        )
        flags, findings = judge(ev)
        return dataclasses.replace(ev, flags=tuple(flags), findings=tuple(findings))


def judge(ev: RangeEvidence) -> tuple[list[str], list[str]]:
    """Flags (short names) and findings (sentences naming tensor, values and thresholds) of one tensor."""
    flags: list[str] = []
    findings: list[str] = []
    step = ev.step
    where = f"{ev.tensor} ({ev.bits}-bit {ev.dtype}, step {step:.4g})"
    if ev.clipped_share > CLIPPING_SHARE or ev.rmse_steps > CLIPPING_RMSE_STEPS:
        flags.append("clipping")
        findings.append(
            f"{where}: {ev.clipped_share:.2%} of values fall outside the representable range "
            f"[{ev.representable_min:.4g}, {ev.representable_max:.4g}] (observed [{ev.observed_min:.4g}, "
            f"{ev.observed_max:.4g}]); error {ev.rmse_steps:.2f} steps RMS against {IDEAL_RMSE_STEPS:.2f} for "
            f"rounding alone (flagged above {CLIPPING_SHARE:.1%} clipped or {CLIPPING_RMSE_STEPS} steps)."
        )
    if (
        not math.isnan(ev.level_share)
        and ev.level_share < WIDE_LEVEL_SHARE
        and ev.levels_used < WIDE_LEVELS
        and ev.values > 0
    ):
        flags.append("range too wide")
        findings.append(
            f"{where}: the observed range [{ev.observed_min:.4g}, {ev.observed_max:.4g}] spans only "
            f"{ev.levels_used:.1f} of {ev.qmax - ev.qmin} levels ({ev.level_share:.1%}; flagged below "
            f"{WIDE_LEVEL_SHARE:.1%} and {WIDE_LEVELS:.0f} levels): the calibrated range is too wide for these values."
        )
    if ev.channels and ev.channels_below_step and ev.channels_below_step >= BELOW_STEP_SHARE * ev.channels:
        flags.append("values below one step")
        sample = ", ".join(str(i) for i in ev.below_step_first)
        findings.append(
            f"{where}: {ev.channels_below_step} of {ev.channels} channels on axis {ev.channel_axis} (e.g. {sample}) "
            f"never reach one quantization step ({step:.4g}); they quantize to the zero point "
            f"({ev.zeroed_share:.1%} of all nonzero values become 0)."
        )
    for sl in ev.slices:
        if sl.peak_steps < 1.0:
            if "values below one step" not in flags:
                flags.append("values below one step")
            findings.append(
                f"{ev.tensor}[{sl.name}]: values in [{sl.observed_min:.4g}, {sl.observed_max:.4g}] reach only "
                f"{sl.peak_steps:.2f} of one quantization step ({step:.4g}) of the tensor's shared scale; "
                f"{sl.zeroed_share:.1%} of them quantize to 0."
            )
    return flags, findings


class RangeObserver:
    """Feeds every reference run to the accumulators of the quantized tensors; also tracks every tensor's range."""

    def __init__(self, quantizers: Mapping[str, Quantizer], slices: Mapping[str, Mapping[str, Slice]]) -> None:
        self.acc = {ref: RangeAccumulator(q, dict(slices.get(ref, {}))) for ref, q in quantizers.items()}
        self.observed: dict[str, tuple[float, float, float]] = {}
        """Every reference float tensor: (min, max, max |x|)."""

    def __call__(self, reference: Mapping[str, np.ndarray]) -> None:
        for name, value in reference.items():
            if value.dtype.kind != "f" or value.size == 0:
                continue
            lo, hi = float(np.nanmin(value)), float(np.nanmax(value))
            old = self.observed.get(name)
            if old is not None:
                lo, hi = min(lo, old[0]), max(hi, old[1])
            self.observed[name] = (lo, hi, max(abs(lo), abs(hi)))
            acc = self.acc.get(name)
            if acc is not None:
                acc.add(value)

    def evidence(self) -> dict[str, RangeEvidence]:
        return {name: acc.evidence(name) for name, acc in self.acc.items() if acc.values}
