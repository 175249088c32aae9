"""Per-tensor similarity metrics: one cache-friendly pass per pair, running sums across images.

For a reference tensor ``x`` and a target tensor ``y`` of one image:
cosine = <x,y> / (|x| |y|), SQNR = 20 log10(|x| / |x-y|) dB, MSE = mean((x-y)^2), max abs = max|x-y|.
Undefined cases (a side that is all zeros, NaN or Inf) carry a reason instead of a number: gates fail on them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

CHUNK = 1 << 16  # elements per block: two float32 blocks and a scratch block stay in L2


@dataclass(frozen=True)
class PairStats:
    """Metrics of one tensor pair for one image; ``undefined`` names why the metrics cannot be trusted."""

    cosine: float
    sqnr_db: float
    mse: float
    max_abs: float
    undefined: str | None = None


def _reason(x: np.ndarray, y: np.ndarray, xx: float, yy: float) -> str | None:
    if not np.isfinite(x).all():
        return "NaN or Inf in the reference tensor"
    if not np.isfinite(y).all():
        return "NaN or Inf in the target tensor"
    if xx == 0.0 and yy == 0.0:
        return "both tensors are all zeros"
    if xx == 0.0:
        return "the reference tensor is all zeros"
    if yy == 0.0:
        return "the target tensor is all zeros"
    return None


def _finish(n: int, xy: float, xx: float, yy: float, dd: float, mx: float, reason: str | None) -> PairStats:
    if reason is not None:
        return PairStats(math.nan, math.nan, dd / n if math.isfinite(dd) else math.nan, mx, reason)
    cosine = max(-1.0, min(1.0, xy / math.sqrt(xx * yy)))
    sqnr = math.inf if dd == 0.0 else 10.0 * math.log10(xx / dd)
    return PairStats(cosine, sqnr, dd / n, mx)


def pair_stats(x: np.ndarray, y: np.ndarray) -> PairStats:
    """All four metrics in one blocked pass; float32 dot products per block, float64 sums across blocks."""
    if x.shape != y.shape:
        raise ValueError(f"shape mismatch: reference {x.shape} vs target {y.shape}")
    xf = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    yf = np.ascontiguousarray(y, dtype=np.float32).reshape(-1)
    n = xf.size
    if n == 0:
        return PairStats(math.nan, math.nan, math.nan, math.nan, "the tensor is empty")
    scratch = np.empty(min(CHUNK, n), dtype=np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        xy, xx, yy, dd, mx = _blocked_sums(xf, yf, scratch)
    sums = (xy, xx, yy, dd)
    if all(math.isfinite(s) for s in sums) and not math.isnan(mx) and xx != 0.0 and yy != 0.0:
        return _finish(n, xy, xx, yy, dd, mx, None)
    # Rare cases: NaN/Inf, float32 overflow of huge values or underflow of tiny ones. Decide in float64.
    return pair_stats_naive(x, y)


def _blocked_sums(xf: np.ndarray, yf: np.ndarray, scratch: np.ndarray) -> tuple[float, float, float, float, float]:
    xy = xx = yy = dd = 0.0
    mx = 0.0
    for start in range(0, xf.size, CHUNK):
        a = xf[start : start + CHUNK]
        b = yf[start : start + CHUNK]
        d = scratch[: a.size]
        np.subtract(a, b, out=d)
        xy += float(np.dot(a, b))
        xx += float(np.dot(a, a))
        yy += float(np.dot(b, b))
        dd += float(np.dot(d, d))
        np.abs(d, out=d)
        mx = max(mx, float(d.max()))
    return xy, xx, yy, dd, mx


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
        xy, xx, yy, dd = float(a @ b), float(a @ a), float(b @ b), float(d @ d)
        mx = float(np.max(np.abs(d)))
    return _finish(a.size, xy, xx, yy, dd, mx, _reason(a, b, xx, yy))


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
