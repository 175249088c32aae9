"""Ground-truth label masks for segmentation: from COCO polygons / RLE, or from a folder of PNG / NPY masks.

COCO: each image's mask is painted from its annotations (polygons, uncompressed or compressed RLE, decoded with
pycocotools' mask utilities) in annotation order, later instances over earlier ones; ``iscrowd`` regions are
IGNORE. Categories map to labels through ``category_labels`` (COCO category id -> label; an unlisted category
is background and paints over what it occludes), or every annotated object is foreground (label 1) with
``foreground=True``.

Folder (VOC style): ``<stem>.png`` (a palette or gray PNG whose values are class indices) or ``<stem>.npy``
(integer array); 255 (VOC's "void" border) and negative values are IGNORE.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qc.errors import DataError
from qc.eval.segmentation import IGNORE, Labels

VOID = 255


def _decode_segmentation(seg: Any, h: int, w: int, where: str) -> np.ndarray:
    from pycocotools import mask as mask_utils

    if isinstance(seg, list):
        if not seg:
            return np.zeros((h, w), bool)
        polys = [p for p in seg if isinstance(p, list) and len(p) >= 6]
        if len(polys) != len(seg):
            raise DataError(f"{where}: a polygon needs at least 3 (x, y) points.")
        rles = mask_utils.frPyObjects(polys, h, w)
        rle = mask_utils.merge(rles)
    elif isinstance(seg, dict) and "counts" in seg and "size" in seg:
        if list(seg["size"]) != [h, w]:
            raise DataError(f"{where}: RLE size {seg['size']} differs from the image size [{h}, {w}].")
        rle = mask_utils.frPyObjects(seg, h, w) if isinstance(seg["counts"], list) else seg
    else:
        raise DataError(f"{where}: segmentation must be a list of polygons or an RLE dict.")
    return np.asarray(mask_utils.decode(rle), dtype=bool)


@dataclass
class CocoMasks:
    """Label masks painted from a COCO annotation file, by image file name."""

    annotations: Path
    category_labels: Mapping[int, int] | None = None
    foreground: bool = False

    def __post_init__(self) -> None:
        if self.foreground == (self.category_labels is not None):
            raise DataError("CocoMasks: give either category_labels or foreground=True, not both nor neither.")
        try:
            data = json.loads(Path(self.annotations).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(f"{self.annotations}: cannot read the COCO annotations: {exc}.") from None
        self._images: dict[str, dict[str, Any]] = {Path(im["file_name"]).name: im for im in data.get("images", [])}
        self._anns: dict[int, list[dict[str, Any]]] = {}
        for ann in data.get("annotations", []):
            self._anns.setdefault(int(ann["image_id"]), []).append(ann)
        if not self._images:
            raise DataError(f"{self.annotations}: no images.")

    def names(self) -> list[str]:
        return sorted(self._images)

    def mask(self, file_name: str) -> Labels:
        im = self._images.get(Path(file_name).name)
        if im is None:
            raise DataError(f"{self.annotations}: no image named {Path(file_name).name}.")
        h, w = int(im["height"]), int(im["width"])
        out = np.zeros((h, w), np.int32)
        crowd = np.zeros((h, w), bool)
        for ann in self._anns.get(int(im["id"]), []):
            where = f"{self.annotations}: annotation {ann.get('id')}"
            if "segmentation" not in ann:
                raise DataError(f"{where}: has no segmentation (boxes alone cannot make a mask).")
            m = _decode_segmentation(ann["segmentation"], h, w, where)
            if ann.get("iscrowd"):
                crowd |= m
                continue
            if self.foreground:
                out[m] = 1
            else:
                assert self.category_labels is not None
                # an unlisted category is background, and occludes what was painted before it
                out[m] = self.category_labels.get(int(ann["category_id"]), 0)
        out[crowd & (out == 0)] = IGNORE
        return out


@dataclass(frozen=True)
class FolderMasks:
    """VOC-style label masks in a folder: ``<image stem>.png`` or ``<image stem>.npy``."""

    folder: Path

    def mask(self, file_name: str, expect_hw: tuple[int, int] | None = None) -> Labels:
        stem = Path(file_name).stem
        png, npy = self.folder / f"{stem}.png", self.folder / f"{stem}.npy"
        if npy.is_file():
            try:
                raw = np.load(npy, allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise DataError(f"{npy}: cannot read the mask: {exc}.") from None
        elif png.is_file():
            from PIL import Image

            with Image.open(png) as pic:
                if pic.mode not in ("P", "L", "I", "I;16"):
                    raise DataError(f"{png}: a label mask must be a palette or gray PNG, found mode {pic.mode}.")
                raw = np.asarray(pic)
        else:
            raise DataError(f"{self.folder}: no label mask {stem}.png or {stem}.npy for image {file_name}.")
        if raw.ndim != 2 or not np.issubdtype(raw.dtype, np.integer):
            raise DataError(
                f"{self.folder}/{stem}: a label mask must be a 2-D integer array, found {raw.shape} {raw.dtype}."
            )
        out: Labels = raw.astype(np.int32)
        out[(out == VOID) | (out < 0)] = IGNORE
        if expect_hw is not None and out.shape != expect_hw:
            raise DataError(f"{self.folder}/{stem}: mask is {out.shape}, the image is {expect_hw}.")
        return out
