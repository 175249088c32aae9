"""Detection decoders: model output tensors of a batch -> per-image boxes in network-input pixels.

A decoder is any callable with the :data:`Decoder` signature::

    def decode(outputs: Mapping[str, np.ndarray], settings: DecodeSettings) -> list[RawDetections]: ...

``outputs`` holds the model's output tensors by name for ONE batch (first axis = batch); the result has one
:class:`~qc.eval.types.RawDetections` per image, AFTER score filtering and NMS, boxes ``x1, y1, x2, y2`` in
network-input pixels (map them to the original image with ``RawDetections.to_original``).

Built-in decoders (:func:`get_decoder`): ``yolo-decoded``, ``yolov6r2``, ``yolov8``. Any other name of the
form ``"package.module:function"`` is imported and used as the decoder (see :func:`load_user_decoder`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from qc.errors import ConfigError, DataError
from qc.eval.nms import nms_indices
from qc.eval.types import RawDetections

EVAL_SCORE_THRESHOLD = 0.001
DEPLOY_SCORE_THRESHOLD = 0.25
DEFAULT_IOU_THRESHOLD = 0.45
EVAL_MAX_DETECTIONS = 100
DEPLOY_MAX_DETECTIONS = 300

Layout = Literal["NCHW", "NHWC"]


@dataclass(frozen=True)
class DecodeSettings:
    """Decoding and NMS settings. The defaults are the EVALUATION settings (COCO mAP).

    * ``score_threshold``: candidates with ``score >= score_threshold`` enter NMS (evaluation 0.001;
      deployment 0.25, see :meth:`deploy`).
    * ``iou_threshold``: NMS suppresses same-class boxes with IoU ``>`` this (0.45; 0.65 is also common for
      eval).
    * ``max_detections``: per image, after NMS (evaluation 100, deployment 300).
    * ``multi_label``: one candidate per (anchor, class) whose score passes (evaluation); ``False`` keeps only
      the best class of each anchor (deployment).
    * ``class_agnostic``: NMS across classes.
    * ``output_names``: the output tensors to decode, in order. Empty = automatic (the only tensor for
      one-tensor decoders; every 4-D tensor for ``yolov6r2``, which needs three).
    * ``layout``: layout of 4-D grid heads (``yolov6r2``): ``NCHW`` (ONNX) or ``NHWC`` (SNPE DLC outputs).
    * ``input_hw``: network input ``(height, width)``; ``yolov6r2`` derives each head's stride from it
      (``input / grid``). Without it the finest grid is assumed to be stride 8 and the others scale from it.
    * ``num_classes``: expected class count, checked against the tensors when given.
    """

    score_threshold: float = EVAL_SCORE_THRESHOLD
    iou_threshold: float = DEFAULT_IOU_THRESHOLD
    max_detections: int = EVAL_MAX_DETECTIONS
    multi_label: bool = True
    class_agnostic: bool = False
    output_names: tuple[str, ...] = ()
    layout: Layout = "NCHW"
    input_hw: tuple[int, int] | None = None
    num_classes: int | None = None

    def __post_init__(self) -> None:
        if self.layout not in ("NCHW", "NHWC"):
            raise ConfigError(f"DecodeSettings.layout must be 'NCHW' or 'NHWC', got {self.layout!r}.")
        if not 0.0 <= self.iou_threshold <= 1.0:
            raise ConfigError(f"DecodeSettings.iou_threshold must be in [0, 1], got {self.iou_threshold}.")
        if self.max_detections < 1:
            raise ConfigError(f"DecodeSettings.max_detections must be >= 1, got {self.max_detections}.")

    @classmethod
    def deploy(cls, **overrides: Any) -> DecodeSettings:
        """Deployment settings: score 0.25, IoU 0.45, 300 detections, best class only."""
        base = cls(
            score_threshold=DEPLOY_SCORE_THRESHOLD,
            iou_threshold=DEFAULT_IOU_THRESHOLD,
            max_detections=DEPLOY_MAX_DETECTIONS,
            multi_label=False,
        )
        return replace(base, **overrides)


Decoder = Callable[[Mapping[str, npt.NDArray[Any]], DecodeSettings], list[RawDetections]]

F32 = npt.NDArray[np.float32]


# ------------------------------------------------------------------------------------------------------------
# shared helpers


def _pick(outputs: Mapping[str, npt.NDArray[Any]], settings: DecodeSettings, decoder: str, count: int) -> list[str]:
    if settings.output_names:
        missing = [n for n in settings.output_names if n not in outputs]
        if missing:
            raise DataError(
                f"Decoder '{decoder}': output tensor(s) {missing} not found; the model produced {sorted(outputs)}."
            )
        names = list(settings.output_names)
    elif count == 1 and len(outputs) == 1:
        names = list(outputs)
    elif count > 1:
        names = [n for n, a in outputs.items() if np.ndim(a) == 4]
    else:
        raise DataError(
            f"Decoder '{decoder}' needs one output tensor but the model produced {sorted(outputs)}; "
            "set task.outputs in models.yaml (output_names)."
        )
    if len(names) != count:
        raise DataError(
            f"Decoder '{decoder}' needs {count} output tensor(s), got {names}; "
            "set task.outputs in models.yaml (output_names)."
        )
    return names


def _check_classes(decoder: str, name: str, nc: int, settings: DecodeSettings) -> None:
    if nc < 1:
        raise DataError(f"Decoder '{decoder}': tensor '{name}' has no class channels.")
    if settings.num_classes is not None and nc != settings.num_classes:
        raise DataError(
            f"Decoder '{decoder}': tensor '{name}' holds {nc} classes but num_classes is {settings.num_classes}."
        )


def _cxcywh_to_xyxy(b: F32) -> F32:
    half = b[:, 2:4] * 0.5
    out: F32 = np.concatenate([b[:, 0:2] - half, b[:, 0:2] + half], axis=1)
    return out


def _candidates(class_scores: F32, settings: DecodeSettings) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], F32]:
    """(anchor index, class index, score) of every candidate passing the score threshold."""
    thr = settings.score_threshold
    if settings.multi_label:
        rows, cols = np.nonzero(class_scores >= thr)
        return rows, cols, class_scores[rows, cols]
    cols_all = class_scores.argmax(axis=1)
    best = np.take_along_axis(class_scores, cols_all[:, None], axis=1)[:, 0]
    rows = np.flatnonzero(best >= thr)
    return rows, cols_all[rows], best[rows]


def _finish(boxes_xyxy: F32, class_scores: F32, settings: DecodeSettings) -> RawDetections:
    """Candidates then NMS for one image (one box per anchor, ``class_scores`` (anchors, nc)).

    Anchors with a non-finite box are dropped; NaN scores never pass the threshold.
    """
    ok = np.isfinite(boxes_xyxy).all(axis=1)
    if not ok.all():
        anchors = np.flatnonzero(ok)
        boxes_xyxy = boxes_xyxy[anchors]
        class_scores = class_scores[anchors]
    rows, cols, scores = _candidates(class_scores, settings)
    keep = nms_indices(
        boxes_xyxy,
        scores,
        None if settings.class_agnostic else cols,
        settings.iou_threshold,
        settings.max_detections,
        box_index=rows,
    )
    return RawDetections(boxes_xyxy[rows[keep]], scores[keep], cols[keep].astype(np.int64))


# ------------------------------------------------------------------------------------------------------------
# built-in decoders


def _passing_anchors(class_scores_cf: F32, threshold: float) -> npt.NDArray[np.intp]:
    """Anchors (columns of a channels-first ``(nc, anchors)`` array) whose best class score passes."""
    return np.flatnonzero(class_scores_cf.max(axis=0) >= threshold)


def decode_yolo_decoded(outputs: Mapping[str, npt.NDArray[Any]], settings: DecodeSettings) -> list[RawDetections]:
    """One tensor ``(B, N, 5 + nc)``: cx, cy, w, h (network pixels), objectness, class probabilities.

    Score = objectness * class probability (both in [0, 1]); anchors whose objectness is below the score
    threshold are skipped before the product.
    """
    (name,) = _pick(outputs, settings, "yolo-decoded", 1)
    t = np.asarray(outputs[name], dtype=np.float32)
    if t.ndim == 2:
        t = t[None]
    if t.ndim != 3 or t.shape[2] < 6:
        raise DataError(f"Decoder 'yolo-decoded': tensor '{name}' must be (B, N, 5 + nc), got {t.shape}.")
    _check_classes("yolo-decoded", name, t.shape[2] - 5, settings)
    results: list[RawDetections] = []
    for img in t:
        obj = img[:, 4]
        anchors = np.flatnonzero(obj >= settings.score_threshold)
        sub = img[anchors]
        scores = sub[:, 5:] * sub[:, 4:5]
        results.append(_finish(_cxcywh_to_xyxy(sub[:, :4]), scores, settings))
    return results


def decode_yolov8(outputs: Mapping[str, npt.NDArray[Any]], settings: DecodeSettings) -> list[RawDetections]:
    """One tensor ``(B, 4 + nc, N)``: cx, cy, w, h (network pixels) then nc class scores (no objectness)."""
    (name,) = _pick(outputs, settings, "yolov8", 1)
    t = np.asarray(outputs[name], dtype=np.float32)
    if t.ndim == 2:
        t = t[None]
    if t.ndim != 3 or t.shape[1] < 5:
        raise DataError(f"Decoder 'yolov8': tensor '{name}' must be (B, 4 + nc, N), got {t.shape}.")
    _check_classes("yolov8", name, t.shape[1] - 4, settings)
    results: list[RawDetections] = []
    for img in t:
        anchors = _passing_anchors(img[4:], settings.score_threshold)
        a = np.ascontiguousarray(img[:, anchors].T)  # (k, 4 + nc), only anchors that can pass
        results.append(_finish(_cxcywh_to_xyxy(a[:, :4]), np.ascontiguousarray(a[:, 4:]), settings))
    return results


def _grid_strides(shapes: Sequence[tuple[int, int]], settings: DecodeSettings, names: Sequence[str]) -> list[float]:
    if settings.input_hw is not None:
        in_h, in_w = settings.input_hw
        strides = []
        for (h, w), name in zip(shapes, names, strict=True):
            sh, sw = in_h / h, in_w / w
            if abs(sh - sw) > 1e-6 or abs(sh - round(sh)) > 1e-6:
                raise DataError(
                    f"Decoder 'yolov6r2': grid {h}x{w} of tensor '{name}' does not divide the input "
                    f"{in_h}x{in_w} into one integer stride (got {sh:g} x {sw:g}); "
                    "check layout and input size."
                )
            strides.append(float(round(sh)))
        return strides
    finest = max(h for h, _ in shapes)
    return [8.0 * finest / h for h, _ in shapes]


def decode_yolov6r2(outputs: Mapping[str, npt.NDArray[Any]], settings: DecodeSettings) -> list[RawDetections]:
    """Three heads ``(B, 4 + 1 + nc, H/s, W/s)`` (NCHW) or ``(B, H/s, W/s, 4 + 1 + nc)`` (NHWC), s = 8, 16,
    32.

    Channels: l, t, r, b distances in grid units, a confidence channel (IGNORED: max(class) in some exports,
    all ones in RVC4 exports), then nc sigmoid class scores. ``x1y1 = (grid + 0.5) - lt``, ``x2y2 = (grid +
    0.5) + rb``, times the stride; score = class score. The stride of each head is ``input / grid`` (see
    ``input_hw``).
    """
    names = _pick(outputs, settings, "yolov6r2", 3)
    heads: list[F32] = []
    for name in names:
        t = np.asarray(outputs[name], dtype=np.float32)
        if t.ndim == 3:
            t = t[None]
        if t.ndim != 4:
            raise DataError(f"Decoder 'yolov6r2': tensor '{name}' must be 4-D, got {t.shape}.")
        nch = t.shape[1] if settings.layout == "NCHW" else t.shape[3]
        if nch < 6:
            raise DataError(
                f"Decoder 'yolov6r2': tensor '{name}' {t.shape} has {nch} channels in layout "
                f"{settings.layout}, expected 4 + 1 + nc; is layout {settings.layout} right?"
            )
        heads.append(t)
    if settings.layout == "NCHW":
        grids = [(h.shape[2], h.shape[3]) for h in heads]
        channels = {h.shape[1] for h in heads}
    else:
        grids = [(h.shape[1], h.shape[2]) for h in heads]
        channels = {h.shape[3] for h in heads}
    batches = {h.shape[0] for h in heads}
    if len(channels) != 1 or len(batches) != 1:
        raise DataError(
            f"Decoder 'yolov6r2': heads {names} disagree on batch or channels: "
            f"{[h.shape for h in heads]} ({settings.layout})."
        )
    _check_classes("yolov6r2", names[0], channels.pop() - 5, settings)
    strides = _grid_strides(grids, settings, names)

    centers: list[F32] = []
    stride_col: list[F32] = []
    for (gh, gw), s in zip(grids, strides, strict=True):
        gy, gx = np.meshgrid(np.arange(gh, dtype=np.float32), np.arange(gw, dtype=np.float32), indexing="ij")
        centers.append(np.stack([gx.ravel() + 0.5, gy.ravel() + 0.5], axis=1))
        stride_col.append(np.full((gh * gw, 1), s, dtype=np.float32))
    center = np.concatenate(centers)
    stride = np.concatenate(stride_col)

    results: list[RawDetections] = []
    for b in range(heads[0].shape[0]):
        if settings.layout == "NCHW":  # (C, anchors) without transposing every anchor
            cf = np.concatenate([h[b].reshape(h.shape[1], -1) for h in heads], axis=1)
            keep = _passing_anchors(cf[5:], settings.score_threshold)
            sub = np.ascontiguousarray(cf[:, keep].T)
        else:
            flat = np.concatenate([h[b].reshape(-1, h.shape[3]) for h in heads])
            keep = np.flatnonzero(flat[:, 5:].max(axis=1) >= settings.score_threshold)
            sub = flat[keep]
        c = center[keep]
        boxes = np.concatenate([c - sub[:, 0:2], c + sub[:, 2:4]], axis=1) * stride[keep]
        results.append(_finish(boxes.astype(np.float32), np.ascontiguousarray(sub[:, 5:]), settings))
    return results


_BUILTIN: dict[str, Decoder] = {
    "yolo-decoded": decode_yolo_decoded,
    "yolov6r2": decode_yolov6r2,
    "yolov8": decode_yolov8,
}


def decoder_names() -> list[str]:
    """Names of the built-in decoders."""
    return sorted(_BUILTIN)


def load_user_decoder(spec: str) -> Decoder:
    """Load ``"package.module:function"`` with importlib.

    The function must have the :data:`Decoder` signature::

        def my_decoder(outputs: Mapping[str, np.ndarray], settings: DecodeSettings) -> list[RawDetections]:
            '''outputs: the model's output tensors by name for one batch (axis 0 = batch).
            Return one RawDetections per image, after score filtering and NMS (qc.eval.nms.select helps),
            boxes x1, y1, x2, y2 in network-input pixels, model class indices.'''

    Its results are checked: anything but a list of :class:`RawDetections` raises
    :class:`qc.errors.DataError`. Import or attribute failures raise :class:`qc.errors.ConfigError`.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(
            f"Decoder '{spec}' is neither a built-in decoder ({', '.join(decoder_names())}) "
            "nor of the form 'package.module:function'."
        )
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any import-time failure is a configuration problem
        raise ConfigError(f"Decoder '{spec}': cannot import module '{module_name}': {exc!r}.") from exc
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise ConfigError(f"Decoder '{spec}': module '{module_name}' has no attribute '{attr}'.") from exc
    if not callable(obj):
        raise ConfigError(f"Decoder '{spec}': '{attr}' in module '{module_name}' is not callable.")
    fn: Callable[..., Any] = obj

    def checked(outputs: Mapping[str, npt.NDArray[Any]], settings: DecodeSettings) -> list[RawDetections]:
        result = fn(outputs, settings)
        if not isinstance(result, list) or not all(isinstance(r, RawDetections) for r in result):
            raise DataError(
                f"Decoder '{spec}' must return a list of qc.eval.types.RawDetections, got {type(result).__name__}."
            )
        return result

    return checked


def get_decoder(name: str) -> Decoder:
    """A built-in decoder by name, or a user decoder ``"package.module:function"`` (see
    :func:`load_user_decoder`)."""
    if name in _BUILTIN:
        return _BUILTIN[name]
    if ":" not in name:
        raise ConfigError(f"Unknown decoder '{name}'; built-in decoders are {', '.join(decoder_names())}.")
    return load_user_decoder(name)
