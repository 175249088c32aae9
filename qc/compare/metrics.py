"""Per-tensor similarity metrics: one fused pass over each pair (each element read once), running sums across images.

For a reference tensor ``x`` and a target tensor ``y`` of one image:
cosine = <x,y> / (|x| |y|), SQNR = 20 log10(|x| / |x-y|) dB, MSE = mean((x-y)^2), max abs = max|x-y|.

Identity rule: two identical tensors (every element equal, all finite) are a perfect match whatever their values,
all zeros included: cosine 1, SQNR +inf, MSE 0, max abs 0. Undefined cases (exactly one side all zeros, NaN or Inf
on either side) carry a reason instead of a number: gates fail on them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class PairStats:
    """Metrics of one tensor pair for one image; ``undefined`` names why the metrics cannot be trusted."""

    cosine: float
    sqnr_db: float
    mse: float
    max_abs: float
    undefined: str | None = None


def _identical() -> PairStats:
    return PairStats(1.0, math.inf, 0.0, 0.0)


def _reason(x: np.ndarray, y: np.ndarray, xx: float, yy: float) -> str | None:
    if not np.isfinite(x).all():
        return "NaN or Inf in the reference tensor"
    if not np.isfinite(y).all():
        return "NaN or Inf in the target tensor"
    if xx == 0.0:
        return "the reference tensor is all zeros"
    if yy == 0.0:
        return "the target tensor is all zeros"
    return None


def _finish(
    n: int, xx: float, yy: float, dd: float, mx: float, reason: str | None, xy: float | None = None
) -> PairStats:
    """Metrics from |x|^2, |y|^2, |x-y|^2 and max|x-y|; <x,y> = (|x|^2 + |y|^2 - |x-y|^2) / 2 unless given (no
    cancellation while the norms are alike: the numerator is then about 2|x||y|cos; see :data:`NORM_SPREAD`)."""
    if reason is not None:
        return PairStats(math.nan, math.nan, dd / n if math.isfinite(dd) else math.nan, mx, reason)
    if mx == 0.0:
        return _identical()
    twice_xy = 2.0 * xy if xy is not None else xx + yy - dd
    cosine = max(-1.0, min(1.0, twice_xy / (2.0 * math.sqrt(xx) * math.sqrt(yy))))
    sqnr = math.inf if dd == 0.0 else 10.0 * math.log10(xx / dd)
    return PairStats(cosine, sqnr, dd / n, mx)


NORM_SPREAD = 2.0
"""(|x|^2 + |y|^2) / (2|x||y|) above which <x,y> is computed directly, in float64: beyond it (norms more than about
3.7x apart) the derived <x,y> loses more than a digit to the float32 block sums. Identical-norm tensors give 1."""


def pair_stats(x: np.ndarray, y: np.ndarray) -> PairStats:
    """All four metrics in one fused pass (:mod:`qc.compare._kernel`): float32 sums per block, float64 across blocks."""
    if x.shape != y.shape:
        raise ValueError(f"shape mismatch: reference {x.shape} vs target {y.shape}")
    xf = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    yf = np.ascontiguousarray(y, dtype=np.float32).reshape(-1)
    n = xf.size
    if n == 0:
        return PairStats(math.nan, math.nan, math.nan, math.nan, "the tensor is empty")
    from qc.compare._kernel import fused_sums  # numba: imported (and its cached machine code loaded) on first use

    xx, yy, dd, mx = fused_sums(xf, yf)
    if all(math.isfinite(s) for s in (xx, yy, dd, mx)) and (mx == 0.0 or (xx != 0.0 and yy != 0.0 and dd != 0.0)):
        xy = None
        if mx != 0.0 and (xx + yy) / (2.0 * math.sqrt(xx) * math.sqrt(yy)) > NORM_SPREAD:
            # norms far apart: the float32 sums' rounding, scaled by |x|^2 + |y|^2, would swamp <x,y>
            xy = float(np.dot(xf.astype(np.float64), yf.astype(np.float64)))
        return _finish(n, xx, yy, dd, mx, None, xy)
    # Rare cases: NaN/Inf, one side all zeros, float32 overflow of huge values or underflow of tiny ones.
    return pair_stats_naive(x, y)


def pair_stats_naive(x: np.ndarray, y: np.ndarray) -> PairStats:
    """The straightforward float64 version: several full passes and temporaries. Reference for tests."""
    if x.shape != y.shape:
        raise ValueError(f"shape mismatch: reference {x.shape} vs target {y.shape}")
    a = np.asarray(x, dtype=np.float64).reshape(-1)
    b = np.asarray(y, dtype=np.float64).reshape(-1)
    if a.size == 0:
        return PairStats(math.nan, math.nan, math.nan, math.nan, "the tensor is empty")
    with np.errstate(all="ignore"):
        d = a - b
        xx, yy, dd = float(a @ a), float(b @ b), float(d @ d)
        mx = float(np.max(np.abs(d)))
    finite = bool(np.isfinite(a).all() and np.isfinite(b).all())
    if finite and not np.any(d):  # identical, all zeros included (subtraction of finite floats is exact at 0)
        return _identical()
    return _finish(a.size, xx, yy, dd, mx, _reason(a, b, xx, yy))


@dataclass
class MetricAccumulator:
    """Running per-tensor aggregate over images: memory is constant whatever the number of images."""

    images: int = 0
    defined: int = 0
    cosine_sum: float = 0.0
    cosine_min: float = math.inf
    sqnr_sum: float = 0.0
    sqnr_min: float = math.inf
    mse_sum: float = 0.0
    max_abs: float = 0.0
    undefined_images: int = 0
    undefined_reason: str | None = None
    worst_image: int | None = None
    _worst_cos: float = field(default=math.inf, repr=False)

    def add(self, stats: PairStats, image_id: int | None = None) -> None:
        self.images += 1
        if stats.undefined is not None:
            self.undefined_images += 1
            if self.undefined_reason is None:
                self.undefined_reason = (
                    f"{stats.undefined} (image {image_id})" if image_id is not None else stats.undefined
                )
            return
        self.defined += 1
        self.cosine_sum += stats.cosine
        self.sqnr_sum += stats.sqnr_db
        self.mse_sum += stats.mse
        self.sqnr_min = min(self.sqnr_min, stats.sqnr_db)
        self.max_abs = max(self.max_abs, stats.max_abs)
        if stats.cosine < self.cosine_min:
            self.cosine_min = stats.cosine
            self.worst_image = image_id

    def summary(self) -> MetricSummary:
        if self.images == 0:
            return MetricSummary(
                math.nan, math.nan, math.nan, math.nan, math.nan, math.nan, 0, "no images were compared"
            )
        if self.undefined_reason is not None:
            reason = f"{self.undefined_reason}; undefined on {self.undefined_images} of {self.images} image(s)"
        else:
            reason = None
        if self.defined == 0:
            return MetricSummary(math.nan, math.nan, math.nan, math.nan, math.nan, math.nan, self.images, reason)
        k = self.defined
        return MetricSummary(
            cosine_mean=self.cosine_sum / k,
            cosine_min=self.cosine_min,
            sqnr_db_mean=self.sqnr_sum / k,
            sqnr_db_min=self.sqnr_min,
            mse_mean=self.mse_sum / k,
            max_abs=self.max_abs,
            images=self.images,
            undefined=reason,
            worst_image=self.worst_image,
        )


@dataclass(frozen=True)
class MetricSummary:
    cosine_mean: float
    cosine_min: float
    sqnr_db_mean: float
    sqnr_db_min: float
    mse_mean: float
    max_abs: float
    images: int
    undefined: str | None = None
    worst_image: int | None = None
