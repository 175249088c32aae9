"""Side-by-side detection pictures (reference left, target right) and a disagreement score to pick images."""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from qc.errors import DataError
from qc.eval.nms import box_iou
from qc.eval.types import Detections

TITLE_HEIGHT = 24
CAPTION_HEIGHT = 18
GAP = 8


def _color(cls: int) -> tuple[int, int, int]:
    h = (cls * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(h, 0.85, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def _label(class_names: Sequence[str], cls: int) -> str:
    return class_names[cls] if 0 <= cls < len(class_names) else str(cls)


def picture_size(image_w: int, image_h: int) -> tuple[int, int]:
    """``(width, height)`` of the picture :func:`draw_side_by_side` writes for an ``image_w x image_h``
    image."""
    return 2 * image_w + GAP, image_h + TITLE_HEIGHT + CAPTION_HEIGHT


def draw_side_by_side(
    image: npt.NDArray[np.uint8],
    ref: Detections,
    tgt: Detections,
    class_names: Sequence[str],
    out_path: Path,
    title: str,
    *,
    min_score: float = 0.25,
    ref_label: str = "reference",
    tgt_label: str = "target",
) -> None:
    """Write ``out_path`` (format from its suffix, e.g. .png/.jpg): the image twice, reference boxes left,
    target boxes right, each box labelled ``"<class> <score>"``; only detections with ``score >= min_score``
    are drawn.

    ``image`` is ``(H, W, 3)`` uint8 RGB in original pixels (the detections' coordinates). The picture is
    :func:`picture_size` big: a title bar, the two panels separated by a gap, a caption row naming each side.
    """
    from PIL import Image, ImageDraw, ImageFont

    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise DataError(f"draw_side_by_side needs an (H, W, 3) uint8 RGB image, got {arr.shape} {arr.dtype}.")
    h, w = arr.shape[:2]
    width, height = picture_size(w, h)
    canvas = Image.new("RGB", (width, height), (32, 32, 32))
    font = ImageFont.load_default()
    draw = ImageDraw.Draw(canvas)
    draw.text((6, 5), title, fill=(255, 255, 255), font=font)

    for side, (det, label) in enumerate(((ref, ref_label), (tgt, tgt_label))):
        x0 = side * (w + GAP)
        panel = Image.fromarray(arr, "RGB")
        pdraw = ImageDraw.Draw(panel)
        shown = det.above(min_score)
        order = np.argsort(shown.scores, kind="stable")  # draw the best boxes last (on top)
        for i in order.tolist():
            x1, y1, x2, y2 = (float(v) for v in shown.boxes[i])
            if not all(np.isfinite([x1, y1, x2, y2])):
                continue
            x1, x2 = sorted((x1, x2))
            y1, y2 = sorted((y1, y2))
            cls = int(shown.classes[i])
            color = _color(cls)
            pdraw.rectangle((x1, y1, x2, y2), outline=color, width=2)
            text = f"{_label(class_names, cls)} {float(shown.scores[i]):.2f}"
            tx, ty = x1 + 2, max(0.0, y1 - 12)
            bbox = pdraw.textbbox((tx, ty), text, font=font)
            pdraw.rectangle(bbox, fill=color)
            pdraw.text((tx, ty), text, fill=(0, 0, 0), font=font)
        canvas.paste(panel, (x0, TITLE_HEIGHT))
        caption = f"{label}: {len(shown)} detection(s) >= {min_score:g}"
        draw.text((x0 + 4, TITLE_HEIGHT + h + 3), caption, fill=(230, 230, 230), font=font)

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out_path)


def disagreement(ref: Detections, tgt: Detections, iou: float = 0.5, score_threshold: float = 0.25) -> float:
    """``1 - F1`` of the same-class matches (IoU ``>= iou``) between the two sides' detections with score
    ``>= score_threshold``: 0 = they agree, 1 = nothing in common. Both sides empty -> 0.

    Matching is greedy: target detections by descending score, each taking the unmatched reference box of its
    class with the highest IoU.
    """
    r = ref.above(score_threshold)
    t = tgt.above(score_threshold)
    if len(r) == 0 and len(t) == 0:
        return 0.0
    if len(r) == 0 or len(t) == 0:
        return 1.0
    ious = box_iou(t.boxes, r.boxes)
    ious[t.classes[:, None] != r.classes[None, :]] = -1.0
    taken = np.zeros(len(r), dtype=np.bool_)
    matches = 0
    for i in np.argsort(-t.scores, kind="stable").tolist():
        row = np.where(taken, -1.0, ious[i])
        j = int(np.argmax(row))
        if row[j] >= iou:
            taken[j] = True
            matches += 1
    f1 = 2.0 * matches / (len(r) + len(t))
    return float(1.0 - f1)
