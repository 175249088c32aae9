"""Side-by-side pose pictures (reference left, target right): each person's points and, for COCO's 17, the skeleton."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from qc.errors import DataError
from qc.eval.pictures import GAP, TITLE_HEIGHT, picture_size

#: COCO's keypoint skeleton (0-based point indices, the pycocotools 'skeleton' minus one).
COCO_SKELETON: tuple[tuple[int, int], ...] = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8), (7, 9), (8, 10),
    (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)  # fmt: skip
SIDE_COLORS = ((80, 220, 80), (240, 80, 60))  # reference green, target red


def draw_poses_side_by_side(
    image: npt.NDArray[np.uint8],
    reference: Sequence[Mapping[str, Any]],
    target: Sequence[Mapping[str, Any]],
    out_path: Path,
    title: str,
    *,
    keypoint_threshold: float = 0.5,
    person_threshold: float = 0.25,
) -> None:
    """Write ``out_path``: the image twice, the reference's people left and the target's right (COCO keypoint
    results of this image, original pixels). Points scoring below ``keypoint_threshold`` and people below
    ``person_threshold`` are left out; with 17 points the COCO skeleton joins them."""
    from PIL import Image, ImageDraw, ImageFont

    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise DataError(f"draw_poses_side_by_side needs an (H, W, 3) uint8 RGB image, got {arr.shape} {arr.dtype}.")
    h, w = arr.shape[:2]
    canvas = Image.new("RGB", picture_size(w, h), (32, 32, 32))
    font = ImageFont.load_default()
    draw = ImageDraw.Draw(canvas)
    draw.text((6, 5), title, fill=(255, 255, 255), font=font)
    radius = max(2.0, min(w, h) / 150)
    for side, (people, label) in enumerate(((reference, "reference"), (target, "target"))):
        panel = Image.fromarray(arr, "RGB")
        pdraw = ImageDraw.Draw(panel)
        color = SIDE_COLORS[side]
        shown = [p for p in people if float(p.get("score", 1.0)) >= person_threshold]
        for person in shown:
            kp = np.asarray(person["keypoints"], np.float64).reshape(-1, 3)
            seen = (kp[:, 2] >= keypoint_threshold) & np.isfinite(kp[:, :2]).all(axis=1)
            if len(kp) == 17:
                for a, b in COCO_SKELETON:
                    if seen[a] and seen[b]:
                        pdraw.line((*kp[a, :2], *kp[b, :2]), fill=color, width=2)
            for x, y in kp[seen, :2]:
                pdraw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=color, outline=(0, 0, 0))
        canvas.paste(panel, (side * (w + GAP), TITLE_HEIGHT))
        caption = f"{label}: {len(shown)} person(s) >= {person_threshold:g}"
        draw.text((side * (w + GAP) + 4, TITLE_HEIGHT + h + 3), caption, fill=(230, 230, 230), font=font)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out_path)
