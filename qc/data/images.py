"""Image sets: a COCO annotation file with its images, or a plain folder of images."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qc.config import ImageData
from qc.errors import DataError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


@dataclass(frozen=True)
class ImageItem:
    image_id: int
    path: Path
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True)
class ImageSet:
    """An ordered, deterministic list of images; ``coco`` holds the annotation dict when there are labels."""

    items: tuple[ImageItem, ...]
    coco: dict[str, Any] | None = None
    source: str = ""

    def __len__(self) -> int:
        return len(self.items)

    def fingerprint(self) -> str:
        """sha256 over the images' bytes and ids (and the annotations when present)."""
        h = hashlib.sha256()
        for item in self.items:
            h.update(f"{item.image_id}:{item.path.name}:".encode())
            h.update(file_sha256(item.path).encode())
        if self.coco is not None:
            h.update(json.dumps(self.coco.get("annotations", []), sort_keys=True).encode())
        return h.hexdigest()


_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        h = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _SHA_CACHE[key] = h.hexdigest()
    return _SHA_CACHE[key]


def load_image_set(data: ImageData, *, limit: int | None = None) -> ImageSet:
    """Read an image set. ``limit`` (or ``data.limit``) keeps the first N images by id (COCO) or by name."""
    cap = min(x for x in (limit, data.limit) if x is not None) if (limit or data.limit) else None
    if data.coco is not None:
        ann_path = data.coco.annotations
        try:
            coco = json.loads(ann_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(f"{ann_path}: cannot read COCO annotations: {exc}.") from None
        for key in ("images", "annotations", "categories"):
            if not isinstance(coco.get(key), list):
                raise DataError(f"{ann_path}: COCO annotations need a '{key}' list; it is missing or not a list.")
        images = sorted(coco["images"], key=lambda im: int(im["id"]))
        if cap is not None:
            images = images[:cap]
        items = []
        for im in images:
            path = data.coco.images / im["file_name"]
            if not path.is_file():
                raise DataError(f"{ann_path}: image id {im['id']} file {path} does not exist.")
            items.append(
                ImageItem(int(im["id"]), path, int(im.get("width", 0)) or None, int(im.get("height", 0)) or None)
            )
        keep = {it.image_id for it in items}
        subset = dict(coco)
        subset["images"] = [im for im in coco["images"] if int(im["id"]) in keep]
        subset["annotations"] = [a for a in coco["annotations"] if int(a["image_id"]) in keep]
        return ImageSet(tuple(items), subset, str(ann_path))
    assert data.folder is not None
    files = sorted(p for p in data.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if cap is not None:
        files = files[:cap]
    if not files:
        raise DataError(f"{data.folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder.")
    return ImageSet(tuple(ImageItem(i, p) for i, p in enumerate(files)), None, str(data.folder))


def read_rgb(path: Path) -> np.ndarray:
    """Decode an image file to an (H, W, 3) uint8 RGB array."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (OSError, UnidentifiedImageError) as exc:
        raise DataError(f"{path}: cannot decode the image: {exc}.") from None


def iter_images(images: ImageSet) -> Iterator[tuple[ImageItem, np.ndarray]]:
    for item in images.items:
        yield item, read_rgb(item.path)
