"""Image sets: a COCO annotation file with its images, or a plain folder of images."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, ValidationError, model_validator

from qc.config import ImageData
from qc.errors import ConfigError, DataError

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
        """sha256 over the images' bytes and ids and, when labelled, the whole annotation content of these images
        (images, annotations, categories and every other field): content only, never where the files are."""
        h = hashlib.sha256()
        for item in self.items:
            h.update(f"{item.image_id}:{item.path.name}:".encode())
            h.update(file_sha256(item.path).encode())
        if self.coco is not None:
            h.update(json.dumps(self.coco, sort_keys=True, separators=(",", ":")).encode())
        return h.hexdigest()


_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """The sha256 of a file, memoized per (path, size, mtime) for the process."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        from qc.cache import sha256_file

        _SHA_CACHE[key] = sha256_file(path)
    return _SHA_CACHE[key]


class _CocoItem(BaseModel):
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)


class _CocoImage(_CocoItem):
    id: StrictInt
    file_name: StrictStr = Field(min_length=1)
    width: StrictInt | None = Field(default=None, ge=0)
    height: StrictInt | None = Field(default=None, ge=0)


class _CocoCategory(_CocoItem):
    id: StrictInt
    name: StrictStr = Field(min_length=1)


class _CocoAnnotation(_CocoItem):
    image_id: StrictInt
    category_id: StrictInt
    bbox: list[StrictFloat] = Field(min_length=4, max_length=4)
    iscrowd: StrictInt = Field(default=0, ge=0, le=1)
    area: StrictFloat | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _size(self) -> _CocoAnnotation:
        if self.bbox[2] < 0 or self.bbox[3] < 0:
            raise ValueError(f"bbox [x, y, w, h] needs w >= 0 and h >= 0, found {list(self.bbox)}")
        return self


class _CocoFile(BaseModel):
    model_config = ConfigDict(extra="allow")
    images: list[_CocoImage]
    annotations: list[_CocoAnnotation]
    categories: list[_CocoCategory]


MAX_LISTED = 20


def _json_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(file)"


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _unique_ids(coco: Any, key: str, source: Path, problems: list[str]) -> set[int] | None:
    """The integer ids of ``coco[key]`` (None when that list is unusable); duplicates are problems."""
    items = coco.get(key) if isinstance(coco, dict) else None
    if not isinstance(items, list):
        return None
    first: dict[int, int] = {}
    for i, item in enumerate(items):
        value = item.get("id") if isinstance(item, dict) else None
        if not _is_int(value):
            continue
        assert isinstance(value, int)
        if value in first:
            problems.append(f"{source.name}: {key}[{i}].id: duplicate id {value} (also {key}[{first[value]}])")
        first.setdefault(value, i)
    return set(first)


def validate_coco(coco: Any, source: Path) -> dict[str, Any]:
    """Check a COCO annotation dict; raise one :class:`DataError` listing every problem as ``file: json.path: ...``.

    Images need an integer ``id`` (unique) and a ``file_name``; categories an integer ``id`` (unique) and a ``name``;
    annotations an ``image_id`` and a ``category_id`` that exist and a ``bbox`` of 4 finite numbers with w, h >= 0.
    """
    problems: list[str] = []
    try:
        _CocoFile.model_validate(coco)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "missing":
                msg = "required field is missing"
            elif "input" in err and err["type"] not in ("model_type", "value_error", "list_type"):
                msg = f"{msg}, found {err['input']!r}"
            problems.append(f"{source.name}: {_json_path(tuple(err['loc']))}: {msg}")
    # Cross references, on whatever is well-typed (so every problem is listed in one go).
    image_ids = _unique_ids(coco, "images", source, problems)
    category_ids = _unique_ids(coco, "categories", source, problems)
    annotations = coco.get("annotations") if isinstance(coco, dict) else None
    for i, ann in enumerate(annotations if isinstance(annotations, list) else []):
        if not isinstance(ann, dict):
            continue
        for key, known, what in (("image_id", image_ids, "image"), ("category_id", category_ids, "category")):
            ref = ann.get(key)
            if _is_int(ref) and known is not None and ref not in known:
                problems.append(f"{source.name}: annotations[{i}].{key}: no {what} has id {ref}")
    if problems:
        shown = problems[:MAX_LISTED]
        more = f"\n... and {len(problems) - MAX_LISTED} more problem(s)" if len(problems) > MAX_LISTED else ""
        raise DataError(f"{source}: invalid COCO annotations ({len(problems)} problem(s)):\n" + "\n".join(shown) + more)
    assert isinstance(coco, dict)
    return coco


def load_image_set(data: ImageData, *, limit: int | None = None) -> ImageSet:
    """Read an image set. ``limit`` (or ``data.limit``) keeps the first N images by id (COCO) or by name."""
    for what, value in (("the image limit", limit), ("the image set's 'limit'", data.limit)):
        if value is not None and value < 1:
            raise ConfigError(f"{what} must be at least 1, found {value} (0 or a negative count is not 'all').")
    caps = [x for x in (limit, data.limit) if x is not None]
    cap = min(caps) if caps else None
    if data.coco is not None:
        ann_path = data.coco.annotations
        try:
            raw = json.loads(ann_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(f"{ann_path}: cannot read COCO annotations: {exc}.") from None
        coco = validate_coco(raw, ann_path)
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
