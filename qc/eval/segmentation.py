"""Semantic / foreground segmentation: decoding, streaming metrics and pictures (numpy and PIL only).

A network output is decoded into a label mask of the ORIGINAL image: the class scores (or the one foreground
probability) are sampled back through the exact inverse of the preprocessing (``Transform``: letterbox padding
and centre crops included; pixels the network never saw are marked ``IGNORE``), then thresholded or arg-maxed.

Metrics are accumulated image by image in confusion matrices and boundary counts, so no mask is kept:

* against ground truth, for each side: per-class IoU, mean IoU, pixel accuracy and boundary IoU (Cheng et al.,
  "Boundary IoU", CVPR 2021: the band of pixels within ``d = max(1, round(ratio * image diagonal))`` of each
  mask's contour, inside the mask; IoU of the two bands, summed over images per class);
* label-free, target against reference: mean IoU, foreground IoU (two-class tasks) and pixel accuracy.

Label masks are int32 arrays with ``IGNORE`` (-1) for pixels that are not scored.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

from qc.config import SegmentationTask
from qc.data.preprocess import Transform
from qc.errors import DataError, MetricError

IGNORE = -1
Labels = npt.NDArray[np.int32]
Layout = Literal["NCHW", "NHWC"]
Activation = Literal["none", "sigmoid", "softmax"]


@dataclass(frozen=True)
class SegDecode:
    """How one output tensor becomes a label mask.

    ``activation`` is what turns the raw output into probabilities (``none`` when it already is). A single
    channel is a foreground probability thresholded at ``threshold`` (classes 0 = background, 1 = foreground);
    several channels are per-class scores, arg-maxed.
    """

    layout: Layout = "NCHW"
    activation: Activation = "none"
    threshold: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise DataError(f"segmentation threshold must be in [0, 1], found {self.threshold}.")


def _channels_first(output: np.ndarray, layout: Layout, name: str) -> npt.NDArray[np.float32]:
    """(C, H, W) float32 scores of a batch-of-one output; a 2-D or 3-D (1, H, W) output is one channel."""
    x = np.asarray(output, dtype=np.float32)
    if x.ndim == 4:
        if x.shape[0] != 1:
            raise DataError(f"output {name}: expected a batch of one image, found shape {x.shape}.")
        x = x[0]
        if layout == "NHWC":
            x = np.moveaxis(x, -1, 0)
    elif x.ndim == 3 and x.shape[0] == 1:
        pass
    elif x.ndim == 2:
        x = x[None]
    else:
        raise DataError(
            f"output {name}: expected (1, C, H, W), (1, H, W, C), (1, H, W) or (H, W) scores, found shape {x.shape}."
        )
    if min(x.shape) == 0:
        raise DataError(f"output {name}: empty scores of shape {x.shape}.")
    return x


def _interp_taps(
    n_out: int, n_in: int, scale: float, pad: float, *, extent: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
    """Linear interpolation taps (low index, high index, high weight) mapping network samples to original pixels.

    Original pixel ``x`` (centre ``x + 0.5``) lies at network coordinate ``(x + 0.5) * scale + pad``, i.e. at
    sample index ``... - 0.5`` of a grid of ``n_in`` samples spanning ``extent`` network pixels. Also returns
    which original pixels fall inside the network's view (the rest are IGNORE).
    """
    pos = (np.arange(n_out, dtype=np.float64) + 0.5) * scale + pad  # network pixels
    inside = (pos >= 0) & (pos <= extent)
    src = np.clip(pos * (n_in / extent) - 0.5, 0, n_in - 1)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    return lo, hi, (src - lo).astype(np.float32), inside


def decode_mask(
    output: np.ndarray,
    spec: SegDecode,
    transform: Transform,
    net_hw: tuple[int, int],
    name: str = "output",
) -> tuple[Labels, npt.NDArray[np.float32]]:
    """The label mask (orig_h, orig_w) of one output and the per-pixel confidence of the decision.

    ``net_hw`` is the network input size the transform refers to; the output may be smaller (a stride) and is
    sampled at the proportional position. Pixels outside the network's view (a centre crop) are ``IGNORE``.
    """
    scores = _channels_first(output, spec.layout, name)
    c, h, w = scores.shape
    if spec.activation == "sigmoid":
        scores = (1.0 / (1.0 + np.exp(-np.clip(scores, -60, 60)))).astype(np.float32)
    elif spec.activation == "softmax":
        if c == 1:
            raise DataError(f"output {name}: softmax needs several class channels, found one.")
        e = np.exp(scores - scores.max(axis=0, keepdims=True))
        scores = e / e.sum(axis=0, keepdims=True)
    # original pixel -> network pixel: net = orig * scale + pad (the Transform's forward direction)
    ylo, yhi, wy, in_y = _interp_taps(transform.orig_h, h, transform.scale_y, transform.pad_y, extent=net_hw[0])
    xlo, xhi, wx, in_x = _interp_taps(transform.orig_w, w, transform.scale_x, transform.pad_x, extent=net_hw[1])
    rows = scores[:, ylo] * (1.0 - wy)[None, :, None] + scores[:, yhi] * wy[None, :, None]
    resampled = rows[:, :, xlo] * (1.0 - wx) + rows[:, :, xhi] * wx
    if c == 1:
        prob = resampled[0]
        labels = (prob > spec.threshold).astype(np.int32)
        conf = np.abs(prob - spec.threshold).astype(np.float32)
    else:
        labels = resampled.argmax(axis=0).astype(np.int32)
        top2 = np.partition(resampled, c - 2, axis=0)[c - 2 :]
        conf = (top2[1] - top2[0]).astype(np.float32)
    valid = in_y[:, None] & in_x[None, :]
    labels[~valid] = IGNORE
    return labels, conf


def num_classes_of(output_channels: int) -> int:
    """A one-channel (sigmoid) output has two classes: background and foreground."""
    return 2 if output_channels == 1 else output_channels


# -- metrics ------------------------------------------------------------------------------------------------


def confusion(gt: Labels, pred: Labels, k: int) -> npt.NDArray[np.int64]:
    """(k, k) confusion matrix, rows = ground truth, columns = prediction; IGNORE pixels on either side skipped."""
    if gt.shape != pred.shape:
        raise DataError(f"mask shapes differ: ground truth {gt.shape}, prediction {pred.shape}.")
    g = gt.ravel()
    p = pred.ravel()
    ok = (g >= 0) & (p >= 0)
    if not ok.all():
        g, p = g[ok], p[ok]
    top = int(max(g.max(initial=0), p.max(initial=0)))
    if top >= k:
        raise DataError(f"mask label {top} is out of range for {k} classes (0..{k - 1}; {IGNORE} or 255 = ignore).")
    return np.bincount(g.astype(np.int64) * k + p, minlength=k * k).reshape(k, k)


def iou_per_class(cm: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """IoU of each class from a confusion matrix; NaN for a class absent from both sides."""
    tp = np.diag(cm).astype(np.float64)
    union = cm.sum(axis=0) + cm.sum(axis=1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / np.maximum(union, 1), np.nan)


def mean_iou(cm: npt.NDArray[np.int64]) -> float:
    ious = iou_per_class(cm)
    if np.isnan(ious).all():
        raise MetricError("mean IoU is undefined: no scored pixel in any class.")
    return float(np.nanmean(ious))


def pixel_accuracy(cm: npt.NDArray[np.int64]) -> float:
    total = int(cm.sum())
    if total == 0:
        raise MetricError("pixel accuracy is undefined: no scored pixel.")
    return float(np.trace(cm) / total)


def erode(mask: npt.NDArray[np.bool_], d: int) -> npt.NDArray[np.bool_]:
    """Binary erosion by a (2d+1) square, outside the image counting as background (as Cheng et al.'s
    ``cv2.erode`` of a zero-bordered mask); separable: a row pass then a column pass of shifted ANDs."""
    h, w = mask.shape
    p = np.pad(mask, d, constant_values=False)
    rows = p[:, 0:w].copy()
    for k in range(1, 2 * d + 1):
        rows &= p[:, k : k + w]
    out = rows[0:h].copy()
    for k in range(1, 2 * d + 1):
        out &= rows[k : k + h]
    return out


def boundary_band(mask: npt.NDArray[np.bool_], d: int) -> npt.NDArray[np.bool_]:
    """The inner boundary band of a binary mask: mask pixels within ``d`` (Chebyshev) of its contour."""
    return mask & ~erode(mask, d)


def boundary_dilation(h: int, w: int, ratio: float) -> int:
    return max(1, round(ratio * float(np.hypot(h, w))))


def boundary_counts(
    gt: Labels, pred: Labels, k: int, ratio: float
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Per-class boundary intersection and union of one image (pixels ignored in ``gt`` excluded)."""
    return boundary_counts_many(gt, (pred,), k, ratio)[0]


def boundary_counts_many(
    gt: Labels, preds: Sequence[Labels], k: int, ratio: float
) -> list[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]]:
    """``boundary_counts`` of several predictions against one ground truth, eroding the ground truth once."""
    d = boundary_dilation(int(gt.shape[0]), int(gt.shape[1]), ratio)
    scored = gt >= 0
    all_scored = bool(scored.all())
    g = gt.ravel() if all_scored else gt[scored]
    present_gt = np.bincount(g, minlength=k)[:k] > 0
    present = [
        present_gt | (np.bincount((p.ravel() if all_scored else p[scored]).clip(0), minlength=k)[:k] > 0) for p in preds
    ]
    out = [(np.zeros(k, np.int64), np.zeros(k, np.int64)) for _ in preds]
    for c in np.flatnonzero(np.logical_or.reduce(present)).tolist():
        bg = boundary_band(gt == c, d)
        if not all_scored:
            bg &= scored
        for (inter, union), pred, pres in zip(out, preds, present, strict=True):
            if not pres[c]:
                continue
            bp = boundary_band(pred == c, d)
            if not all_scored:
                bp &= scored
            inter[c] = int(np.count_nonzero(bg & bp))
            union[c] = int(np.count_nonzero(bg | bp))
    return out


@dataclass
class SideMetrics:
    """Ground-truth metrics of one side (reference or target)."""

    miou: float
    iou: list[float]
    pixel_accuracy: float
    boundary_iou: float
    foreground_iou: float | None


@dataclass
class SegmentationResult:
    images: int
    num_classes: int
    reference: SideMetrics | None
    target: SideMetrics | None
    agreement_miou: float
    agreement_pixel_accuracy: float
    agreement_foreground_iou: float | None
    worst: list[tuple[float, str]]

    @property
    def miou_drop(self) -> float:
        if self.reference is None or self.target is None:
            raise MetricError("mIoU drop needs ground-truth masks; the evaluation set has none.")
        return self.reference.miou - self.target.miou

    @property
    def mask_agreement(self) -> float:
        """The headline label-free number: foreground IoU for a two-class task, else mean IoU."""
        return self.agreement_foreground_iou if self.agreement_foreground_iou is not None else self.agreement_miou

    def metrics(self) -> dict[str, float]:
        """Flat numbers for summaries (CSV, JUnit properties, history)."""
        out: dict[str, float] = {
            "mask_agreement": self.mask_agreement,
            "agreement_miou": self.agreement_miou,
            "agreement_pixel_accuracy": self.agreement_pixel_accuracy,
        }
        for side, m in (("reference", self.reference), ("target", self.target)):
            if m is None:
                continue
            out[f"{side}_miou"] = m.miou
            out[f"{side}_pixel_accuracy"] = m.pixel_accuracy
            out[f"{side}_boundary_iou"] = m.boundary_iou
            if m.foreground_iou is not None:
                out[f"{side}_foreground_iou"] = m.foreground_iou
        if self.reference is not None and self.target is not None:
            out["miou_drop"] = self.miou_drop
        return out


@dataclass
class SegmentationAccumulator:
    """Running confusion matrices and boundary counts, one image at a time; keeps no mask.

    ``worst`` keeps the ids of the ``keep_worst`` images where target and reference disagree most (lowest
    per-image agreement IoU) for pictures.
    """

    num_classes: int
    boundary_ratio: float = 0.02
    keep_worst: int = 3
    images: int = 0
    labelled: int = 0
    cm_ref: npt.NDArray[np.int64] = field(init=False)
    cm_tgt: npt.NDArray[np.int64] = field(init=False)
    cm_agree: npt.NDArray[np.int64] = field(init=False)
    b_ref: npt.NDArray[np.int64] = field(init=False)
    b_tgt: npt.NDArray[np.int64] = field(init=False)
    _worst: list[tuple[float, int, str]] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        if self.num_classes < 2:
            raise DataError(f"segmentation needs at least 2 classes, found {self.num_classes}.")
        if not 0 < self.boundary_ratio < 1:
            raise DataError(f"boundary IoU dilation ratio must be in (0, 1), found {self.boundary_ratio}.")
        k = self.num_classes
        self.cm_ref = np.zeros((k, k), np.int64)
        self.cm_tgt = np.zeros((k, k), np.int64)
        self.cm_agree = np.zeros((k, k), np.int64)
        self.b_ref = np.zeros((2, k), np.int64)
        self.b_tgt = np.zeros((2, k), np.int64)

    def add(self, image_id: str, ref: Labels, tgt: Labels, gt: Labels | None = None) -> float:
        """Add one image's masks; returns its agreement IoU (target vs reference)."""
        k = self.num_classes
        agree = confusion(ref, tgt, k)
        self.cm_agree += agree
        ious = iou_per_class(agree)
        score = float(np.nanmean(ious)) if not np.isnan(ious).all() else 1.0
        if gt is not None:
            self.cm_ref += confusion(gt, ref, k)
            self.cm_tgt += confusion(gt, tgt, k)
            counts = boundary_counts_many(gt, (ref, tgt), k, self.boundary_ratio)
            for acc, (i, u) in zip((self.b_ref, self.b_tgt), counts, strict=True):
                acc[0] += i
                acc[1] += u
            self.labelled += 1
        self.images += 1
        item = (-score, self.images, image_id)
        if len(self._worst) < self.keep_worst:
            heapq.heappush(self._worst, item)
        elif self.keep_worst > 0 and item > self._worst[0]:
            heapq.heapreplace(self._worst, item)
        return score

    def _side(self, cm: npt.NDArray[np.int64], b: npt.NDArray[np.int64]) -> SideMetrics:
        ious = iou_per_class(cm)
        with np.errstate(invalid="ignore", divide="ignore"):
            biou = np.where(b[1] > 0, b[0] / np.maximum(b[1], 1), np.nan)
        return SideMetrics(
            miou=mean_iou(cm),
            iou=[float(v) for v in ious],
            pixel_accuracy=pixel_accuracy(cm),
            boundary_iou=float(np.nanmean(biou)) if not np.isnan(biou).all() else float("nan"),
            foreground_iou=float(ious[1]) if self.num_classes == 2 else None,
        )

    def result(self) -> SegmentationResult:
        if self.images == 0:
            raise MetricError("segmentation metrics are undefined: no image was evaluated.")
        labelled = self.labelled > 0
        agree_ious = iou_per_class(self.cm_agree)
        return SegmentationResult(
            images=self.images,
            num_classes=self.num_classes,
            reference=self._side(self.cm_ref, self.b_ref) if labelled else None,
            target=self._side(self.cm_tgt, self.b_tgt) if labelled else None,
            agreement_miou=mean_iou(self.cm_agree),
            agreement_pixel_accuracy=pixel_accuracy(self.cm_agree),
            agreement_foreground_iou=(
                float(agree_ious[1]) if self.num_classes == 2 and not np.isnan(agree_ious[1]) else None
            ),
            worst=[(-s, name) for s, _, name in sorted(self._worst, reverse=True)],
        )


# -- pictures -----------------------------------------------------------------------------------------------


def _class_colors(k: int) -> npt.NDArray[np.uint8]:
    import colorsys

    colors = [(0, 0, 0)]
    for c in range(1, k):
        r, g, b = colorsys.hsv_to_rgb((c * 0.618033988749895) % 1.0, 0.8, 1.0)
        colors.append((int(r * 255), int(g * 255), int(b * 255)))
    return np.array(colors, np.uint8)


def _overlay(image: npt.NDArray[np.uint8], labels: Labels, colors: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    out = image.astype(np.float32)
    fg = labels > 0
    out[fg] = 0.45 * out[fg] + 0.55 * colors[labels[fg]].astype(np.float32)
    return np.clip(out, 0, 255).astype(np.uint8)


def draw_mask_triptych(
    image: npt.NDArray[np.uint8],
    ref: Labels,
    tgt: Labels,
    out_path: Path,
    title: str,
    *,
    labels: Sequence[str] = ("reference", "target", "disagreement"),
) -> None:
    """Write reference | target | disagreement: the image with each side's classes overlaid, then the image in
    gray with the pixels where the sides disagree in red (target foreground only: magenta, reference only: cyan).
    """
    from PIL import Image, ImageDraw

    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise DataError(f"draw_mask_triptych needs an (H, W, 3) uint8 RGB image, got {arr.shape} {arr.dtype}.")
    if ref.shape != arr.shape[:2] or tgt.shape != arr.shape[:2]:
        raise DataError(f"masks {ref.shape} / {tgt.shape} do not match the image {arr.shape[:2]}.")
    k = int(max(ref.max(initial=1), tgt.max(initial=1))) + 1
    colors = _class_colors(k)
    gray = arr.mean(axis=2, keepdims=True).repeat(3, axis=2).astype(np.float32) * 0.6
    diff = (ref != tgt) & (ref >= 0) & (tgt >= 0)
    dis = gray.copy()
    dis[diff & (tgt > 0) & (ref <= 0)] = (255, 0, 255)
    dis[diff & (ref > 0) & (tgt <= 0)] = (0, 255, 255)
    dis[diff & (ref > 0) & (tgt > 0)] = (255, 0, 0)
    panels = [_overlay(arr, ref, colors), _overlay(arr, tgt, colors), dis.astype(np.uint8)]
    h, w = arr.shape[:2]
    gap, bar = 8, 24
    canvas = Image.new("RGB", (3 * w + 2 * gap, h + 2 * bar), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 6), title, fill=(0, 0, 0))
    for i, (panel, name) in enumerate(zip(panels, labels, strict=True)):
        canvas.paste(Image.fromarray(panel), (i * (w + gap), bar))
        draw.text((i * (w + gap) + 4, bar + h + 6), name, fill=(0, 0, 0))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out_path)


# -- settings (models.yaml ``task: {kind: segmentation, ...}``): the spec classes live in qc.config ---------

SegmentationSettings = SegmentationTask
"""The ``task: {kind: segmentation}`` settings (:class:`qc.config.SegmentationTask`)."""


class MaskSource(Protocol):
    def mask(self, file_name: str) -> Labels: ...


def evaluate_segmentation(
    settings: SegmentationTask,
    net_hw: tuple[int, int],
    items: Iterable[tuple[str, np.ndarray, np.ndarray, Transform]],
) -> SegmentationResult:
    """Stream ``(image file name, reference output, target output, transform)`` through decoding and the
    accumulator; ground truth (when configured) is read per image. The class count is the outputs' channel count
    (two for one sigmoid channel)."""
    spec = settings.decode_spec()
    source: MaskSource | None = settings.mask_source()
    acc: SegmentationAccumulator | None = None
    for name, ref_out, tgt_out, transform in items:
        ref, _ = decode_mask(ref_out, spec, transform, net_hw, "reference")
        tgt, _ = decode_mask(tgt_out, spec, transform, net_hw, "target")
        if acc is None:
            channels = _channels_first(ref_out, spec.layout, "reference").shape[0]
            acc = SegmentationAccumulator(num_classes_of(channels), settings.boundary_ratio, settings.pictures)
        gt = source.mask(name) if source is not None else None
        if gt is not None and gt.shape != ref.shape:
            raise DataError(f"{name}: ground-truth mask is {gt.shape}, the image is {ref.shape}.")
        acc.add(name, ref, tgt, gt)
    if acc is None:
        raise MetricError("segmentation metrics are undefined: no image was evaluated.")
    return acc.result()
