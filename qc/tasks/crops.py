"""Top-down inputs shared by the tasks whose model sees one person crop per input (keypoints, a pose model's
person mask as segmentation): the crop plan of an image set and the feeds cut from it
(:class:`qc.tasks.base.InputsHook`).

Input ``i`` is the ``i``-th (image, box) pair of :func:`crop_plan`, a deterministic order computed from the image
set alone, so a task's collector (built separately) knows which image and box each input id stands for. Each feed's
transform maps crop pixels back to the image's pixels.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from qc.errors import DataError
from qc.tasks.base import Feed, TaskInputs

if TYPE_CHECKING:
    from qc.config import CropSettings, Preprocess
    from qc.data.images import ImageSet

Box = tuple[float, float, float, float]


def crop_plan(person_category: int, images: ImageSet) -> list[tuple[int, Box | None]]:
    """(image id, person box x1, y1, x2, y2) of every labelled box of ``person_category`` (crowds left out), in the
    set's order; a set without labels: (image id, None) for each whole image."""
    if images.coco is None:
        return [(item.image_id, None) for item in images.items]
    by_image: dict[int, list[Box]] = {}
    for ann in images.coco.get("annotations", []):
        if int(ann.get("category_id", -1)) != person_category or ann.get("iscrowd", 0):
            continue
        x, y, w, h = (float(v) for v in ann["bbox"])
        if w > 0 and h > 0:
            by_image.setdefault(int(ann["image_id"]), []).append((x, y, x + w, y + h))
    return [(item.image_id, box) for item in images.items for box in by_image.get(item.image_id, [])]


def crop_inputs(
    entry: str,
    what: str,
    images: ImageSet,
    person_category: int,
    crop: CropSettings,
    preprocess: Preprocess,
    input_name: str,
    input_hw: tuple[int, int],
) -> TaskInputs:
    """One input per entry of :func:`crop_plan`, cut with ``crop`` and normalised with ``preprocess`` (channel
    order, scale, mean, std, layout, dtype; its resize settings do not apply: the crop is the resize). ``what``
    names the task in the note and the errors (e.g. 'Top-down keypoints')."""
    from qc.eval.keypoints import person_crop

    plan = crop_plan(person_category, images)
    if not plan:
        raise DataError(
            f"{entry}: {what} crops one input per person box, and the image set {images.source} has no box of "
            f"category {person_category} (crowds excluded) on its {len(images)} image(s)."
        )

    def feeds() -> Iterator[Feed]:
        from qc.data.images import read_rgb
        from qc.data.preprocess import to_tensor

        paths = {item.image_id: item.path for item in images.items}
        rgb: np.ndarray | None = None
        loaded = -1
        for i, (image_id, box) in enumerate(plan):
            if image_id != loaded:
                rgb, loaded = read_rgb(paths[image_id]), image_id
            assert rgb is not None
            whole = box is None
            region = box if box is not None else (0.0, 0.0, float(rgb.shape[1]), float(rgb.shape[0]))
            pixels, tf = person_crop(
                rgb, region, input_hw, box_scale=1.0 if whole else crop.box_scale, border=crop.border,
                pad_value=crop.pad_value,
            )  # fmt: skip
            yield i, {input_name: to_tensor(pixels, preprocess)}, tf

    boxes = sum(1 for _, b in plan if b is not None)
    note = (
        f"{what}: each of the {len(plan)} inputs is a person crop ({boxes} labelled boxes of category "
        f"{person_category}, box_scale {crop.box_scale}, border {crop.border}) of {len(images)} image(s); 'images' "
        "counts crops."
        if boxes
        else f"{what}: each of the {len(plan)} inputs is a whole image (no boxes), squared with border {crop.border}."
    )
    return TaskInputs(len(plan), feeds(), note)
