"""Report artifacts of the segmentation and classification tasks (the model folder's ``accuracy.json`` and more).

``accuracy.json`` uses the dashboard's flat keys: ``reference.<metric>``, ``target.<metric>`` and
``drop.<metric>`` for the metrics of both sides, ``reference.per_class_<metric>`` for per-class tables, and plain
keys for the label-free agreement numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qc.cache import atomic_write_text
from qc.jsonio import write_json
from qc.report.tables import to_csv

if TYPE_CHECKING:
    from qc.data.images import ImageSet
    from qc.tasks.classification import ClassificationOutcome
    from qc.tasks.segmentation import SegmentationOutcome

PER_CLASS_IOU_COLUMNS = ["class", "reference_iou", "target_iou", "drop"]
PREDICTION_COLUMNS = [
    "file",
    "label",
    "reference_top1",
    "reference_p",
    "target_top1",
    "target_p",
    "agree",
    "reference_correct",
    "target_correct",
    "kl",
]


def _class_name(names: Sequence[str], index: int) -> str:
    return names[index] if index < len(names) else str(index)


def write_segmentation(
    outcome: SegmentationOutcome, images: ImageSet, class_names: Sequence[str], folder: Path, *, model: str
) -> list[Path]:
    """accuracy.json, per_class_iou.csv (with labels) and pictures/ (reference | target | disagreement)."""
    from qc.data.images import read_rgb
    from qc.eval.segmentation import draw_mask_triptych

    r = outcome.result
    folder.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"images": r.images, "num_classes": r.num_classes}
    for side, m in (("reference", r.reference), ("target", r.target)):
        if m is None:
            continue
        summary[f"{side}.miou"] = m.miou
        summary[f"{side}.pixel_accuracy"] = m.pixel_accuracy
        summary[f"{side}.boundary_iou"] = m.boundary_iou
        if m.foreground_iou is not None:
            summary[f"{side}.foreground_iou"] = m.foreground_iou
        summary[f"{side}.per_class_iou"] = {_class_name(class_names, i): v for i, v in enumerate(m.iou)}
    if r.reference is not None and r.target is not None:
        summary["drop.miou"] = r.reference.miou - r.target.miou
        summary["drop.pixel_accuracy"] = r.reference.pixel_accuracy - r.target.pixel_accuracy
        summary["drop.boundary_iou"] = r.reference.boundary_iou - r.target.boundary_iou
    summary["agreement.mask"] = r.mask_agreement
    summary["agreement_miou"] = r.agreement_miou
    summary["agreement_pixel_accuracy"] = r.agreement_pixel_accuracy
    if r.agreement_foreground_iou is not None:
        summary["agreement_foreground_iou"] = r.agreement_foreground_iou
    summary["most_disagreeing_images"] = [{"image_id": n, "disagreement": 1.0 - s} for s, n in r.worst]
    summary["presentation"] = {
        "files": ["accuracy.json", "per_class_iou.csv"],
        "pictures": "reference | target | disagreement: cyan reference only, magenta target only, red other class",
    }
    written = [folder / "accuracy.json"]
    write_json(written[0], summary)
    if r.reference is not None and r.target is not None:
        rows = [
            {
                "class": _class_name(class_names, i),
                "reference_iou": ref,
                "target_iou": tgt,
                "drop": ref - tgt if not (math.isnan(ref) or math.isnan(tgt)) else math.nan,
            }
            for i, (ref, tgt) in enumerate(zip(r.reference.iou, r.target.iou, strict=True))
        ]
        atomic_write_text(folder / "per_class_iou.csv", to_csv(PER_CLASS_IOU_COLUMNS, rows))
        written.append(folder / "per_class_iou.csv")
    pic_dir = folder / "pictures"
    for old in pic_dir.glob("*.png") if pic_dir.is_dir() else []:
        old.unlink()
    paths = {item.path.name: item.path for item in images.items}
    for pair in outcome.worst:
        path = paths.get(pair.file_name)
        if path is None:
            continue
        out = pic_dir / f"{path.stem}.png"
        title = f"{model}: {path.name}  mask agreement {pair.agreement:.3f}"
        draw_mask_triptych(read_rgb(path), pair.reference, pair.target, out, title)
        written.append(out)
    return written


def write_classification(outcome: ClassificationOutcome, class_names: Sequence[str], folder: Path) -> list[Path]:
    """accuracy.json and predictions.csv (one row per image: both sides' top-1, agreement, KL)."""
    r = outcome.result
    folder.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"images": r.images, "labelled": r.labelled}
    for side in ("reference", "target"):
        for k in ("top1", "top5"):
            value = getattr(r, f"{side}_{k}")
            if value is not None:
                summary[f"{side}.{k}"] = value
    if r.labelled:
        summary["drop.top1"] = r.top1_drop
        summary["drop.top5"] = r.top5_drop
    summary["agreement.top1"] = r.top1_agreement
    summary["mean_kl"] = r.mean_kl
    summary["most_disagreeing_images"] = [
        {"image_id": p.file, "disagreement": p.kl} for p in sorted(outcome.predictions, key=lambda p: -p.kl)[:5]
    ]
    summary["presentation"] = {"files": ["accuracy.json", "predictions.csv"]}
    written = [folder / "accuracy.json"]
    write_json(written[0], summary)
    rows = [
        {
            "file": p.file,
            "label": "" if p.label is None else _class_name(class_names, p.label),
            "reference_top1": _class_name(class_names, p.reference_top1),
            "reference_p": p.reference_p,
            "target_top1": _class_name(class_names, p.target_top1),
            "target_p": p.target_p,
            "agree": "true" if p.reference_top1 == p.target_top1 else "false",
            "reference_correct": "" if p.label is None else str(p.label == p.reference_top1).lower(),
            "target_correct": "" if p.label is None else str(p.label == p.target_top1).lower(),
            "kl": p.kl,
        }
        for p in outcome.predictions
    ]
    atomic_write_text(folder / "predictions.csv", to_csv(PREDICTION_COLUMNS, rows))
    written.append(folder / "predictions.csv")
    return written
