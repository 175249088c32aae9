"""Accuracy artifacts: detections in COCO results format, accuracy.json, side-by-side pictures."""

from __future__ import annotations

from pathlib import Path

from qc.data.images import ImageSet, read_rgb
from qc.eval.accuracy import AccuracyResult, DetectionSet
from qc.eval.pictures import draw_side_by_side
from qc.jsonio import write_json


def write_accuracy(
    result: AccuracyResult,
    ref: DetectionSet,
    tgt: DetectionSet,
    images: ImageSet,
    class_names: list[str],
    folder: Path,
    *,
    pictures: int,
    model: str,
) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, dets in (("detections_reference.json", ref), ("detections_target.json", tgt)):
        write_json(folder / name, dets.coco_results(result.category_map), indent=None)
        written.append(folder / name)
    write_json(folder / "accuracy.json", result.summary())
    written.append(folder / "accuracy.json")
    paths = {item.image_id: item.path for item in images.items}
    pic_dir = folder / "pictures"
    for old in pic_dir.glob("*.png") if pic_dir.is_dir() else []:
        old.unlink()
    for image_id, score in result.disagreement[:pictures]:
        path = paths[image_id]
        out = pic_dir / f"{path.stem}.png"
        title = f"{model}: {path.name}  disagreement {score:.2f}"
        draw_side_by_side(read_rgb(path), ref.by_image[image_id], tgt.by_image[image_id], class_names, out, title)
        written.append(out)
    return written
