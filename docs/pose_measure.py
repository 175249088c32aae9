"""Measure the pose demo: FP32 vs an onnxruntime INT8 variant on the labelled persons of the demo photos.

An independent cross-check of the keypoints task (the mediapipe-pose-* entries of models.yaml), outside the pipeline:

    cd <worktree> && python docs/pose_measure.py                      # default ort-int8 settings
    python docs/pose_measure.py '{"activation_bitwidth": 16}'
    python docs/pose_measure.py '{"float_downstream_of": ["model_1/model/max_pooling2d/MaxPool"]}'

Calibration: the photos of the asset calibration folder, each whole photo squared (box = the full image, box_scale
1.0, borders replicated) and resized to 256x256 (they have no person boxes to crop).

It normalises with ``/ 255.0`` where the pipeline multiplies by the float32 of 1/255: inputs one ulp apart, and the
INT8 results move (mean OKS 0.824 here, 0.808 in the pipeline; with the pipeline's normalisation it gives 0.808 too).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from PIL import Image

from qc.assets import AssetBuilder, pose_paths
from qc.config import QuantSettings
from qc.eval.instance_masks import InstanceMasks, MaskAgreement, encode, sample_to_original
from qc.eval.keypoints import (
    COCO_KEYPOINT_NAMES,
    MEDIAPIPE_POSE_TO_COCO,
    KeypointAgreement,
    Poses,
    RegressionSpec,
    decode_regression,
    person_crop,
    top_down_person,
)
from qc.runners.quantize import quantize_int8

INPUT = (256, 256)
SPEC = RegressionSpec(num_keypoints=33, values_per_point=5, score_index=3, score_activation="sigmoid")


def load(path: Path) -> np.ndarray[Any, Any]:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def feed(crop: np.ndarray[Any, Any]) -> dict[str, np.ndarray[Any, Any]]:
    return {"input_1": np.ascontiguousarray((crop / 255.0).astype(np.float32).transpose(2, 0, 1)[None])}


def main(argv: list[str]) -> None:
    settings = QuantSettings(**json.loads(argv[0])) if argv else QuantSettings()
    assets = AssetBuilder(network=False).build()
    _, fp32 = pose_paths(assets.root)

    def calibration() -> Iterator[dict[str, np.ndarray[Any, Any]]]:
        for p in sorted(assets.calibration.iterdir()):
            rgb = load(p)
            h, w = rgb.shape[:2]
            yield feed(person_crop(rgb, [0, 0, w, h], INPUT, box_scale=1.0)[0])

    coco = json.loads(assets.eval_annotations.read_text())
    files = {im["id"]: im["file_name"] for im in coco["images"]}
    people = []
    for ann in coco["annotations"]:
        if ann["category_id"] == 1:
            x, y, w, h = ann["bbox"]
            crop, tf = person_crop(load(assets.eval_images / files[ann["image_id"]]), [x, y, x + w, y + h], INPUT)
            people.append((ann["image_id"], [x, y, x + w, y + h], crop, tf))
    with tempfile.TemporaryDirectory() as tmp:
        quantized = Path(tmp) / "pose-int8.onnx"
        quantize_int8(fp32, settings, calibration(), quantized, "pose-demo")
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        sessions = {k: ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"])
                    for k, p in (("fp32", fp32), ("target", quantized))}  # fmt: skip
        outputs: dict[str, list[dict[str, Any]]] = {k: [] for k in sessions}
        times: dict[str, list[float]] = {k: [] for k in sessions}
        for k, sess in sessions.items():
            names = [o.name for o in sess.get_outputs()]
            sess.run(None, feed(people[0][2]))
            for _, _, crop, _ in people:
                start = time.perf_counter()
                values = sess.run(None, feed(crop))
                times[k].append(time.perf_counter() - start)
                outputs[k].append(dict(zip(names, values, strict=True)))
    keypoints = KeypointAgreement(17, names=COCO_KEYPOINT_NAMES, keypoint_threshold=0.5, person_threshold=0.5)
    masks = MaskAgreement()
    by_image: dict[int, list[tuple[Any, ...]]] = {}
    for i, (iid, box, _, tf) in enumerate(people):
        sides = []
        for k in sessions:
            o = outputs[k][i]
            kp = decode_regression(o["Identity"], SPEC, INPUT)
            person = top_down_person(kp, tf, box, float(o["Identity_1"].reshape(-1)[0]))
            mask = encode(sample_to_original(o["Identity_2"][0, 0], (1.0, 1.0), tf))
            sides.append((person.select_keypoints(MEDIAPIPE_POSE_TO_COCO), mask))
        by_image.setdefault(iid, []).append((*sides, box, (tf.orig_h, tf.orig_w)))
    for iid, rows in by_image.items():
        keypoints.add(iid, Poses.stack([r[0][0] for r in rows], 17), Poses.stack([r[1][0] for r in rows], 17),
                      paired=True)  # fmt: skip
        boxes = np.asarray([r[2] for r in rows], np.float32)
        ones, zeros = np.ones(len(rows), np.float32), np.zeros(len(rows), np.int64)
        ref = InstanceMasks(boxes, ones, zeros, tuple(r[0][1] for r in rows), rows[0][3])
        tgt = InstanceMasks(boxes, ones, zeros, tuple(r[1][1] for r in rows), rows[0][3])
        masks.add(iid, ref, tgt, paired=True)
    kres, mres = keypoints.result(), masks.result()
    kept = sum(
        1
        for a, b in zip(outputs["fp32"], outputs["target"], strict=True)
        if a["Identity_1"].item() >= 0.5 and b["Identity_1"].item() >= 0.5
    )
    print(f"people present in FP32: {kres.num_people} (absent {kres.num_absent}); present in both: {kept}")
    print(f"keypoint agreement: mean OKS {kres.mean_oks:.4f}, min {kres.min_oks:.4f}, ", end="")
    print(f"AP {kres.ap:.4f}, AP50 {kres.ap50:.4f}")
    print("worst keypoints (error / sqrt(box area), px):",
          [(n, round(e, 4), round(kres.per_keypoint_pixels[n], 1)) for n, e in kres.worst(4)])  # fmt: skip
    print(f"person-mask agreement: mean IoU {mres.mean_iou:.4f}, min {mres.min_iou:.4f}")
    print(f"ms per crop (1 thread): FP32 {1000 * np.median(times['fp32']):.1f}, "
          f"target {1000 * np.median(times['target']):.1f}")  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:])
