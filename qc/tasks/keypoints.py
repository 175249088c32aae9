"""The ``keypoints`` task: OKS AP of both sides against keypoint labels and label-free keypoint agreement.

Decoders (:mod:`qc.eval.keypoints`): ``top-down-regression`` and ``top-down-heatmap`` models see one person crop
per input, so this task provides its own inputs (:class:`qc.tasks.base.InputsHook`): one crop per person box of
the image set (COCO boxes of ``person_category``, crowds left out; a plain image folder: each whole image is one
box, taken at ``box_scale`` 1), cut with the entry's ``crop`` settings and normalised with its ``preprocess``
(channel order, scale, mean, std, layout, dtype; its resize settings do not apply: the crop is the resize). The
same inputs drive the comparison, the accuracy, the speed input, the diagnosis and the calibration of a quantizing
target; each crop's transform maps its points back to the image. ``yolo-pose`` heads see whole images. The outcome
and the collector live in :mod:`qc.tasks.keypoints_collect`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from qc.config import KeypointsTask as KeypointsSettings
from qc.config import ModelSpec, YoloPoseHead
from qc.errors import ConfigError
from qc.eval.keypoints import (
    COCO_KEYPOINT_NAMES,
    MEDIAPIPE_POSE_TO_COCO,
    KeypointAgreement,
    Poses,
    RegressionSpec,
    YoloPoseSpec,
)
from qc.gates import GateResult, gates_needing
from qc.tasks.base import Calibration, Feeds, GateMetric, Headline, TaskInputs, run_collector
from qc.tasks.crops import crop_inputs
from qc.tasks.keypoints_collect import KeypointsCollection, KeypointsOutcome, per_keypoint_rows

if TYPE_CHECKING:
    from qc.data.images import ImageSet
    from qc.runners.base import Runner


class KeypointsTask:
    """:class:`qc.tasks.base.Task` (with :class:`qc.tasks.base.InputsHook`) for ``task: {kind: keypoints, ...}``."""

    kind: ClassVar[str] = "keypoints"
    calibration: ClassVar[Calibration] = Calibration(
        budgets=(GateMetric("oks_ap_drop", "drop_oks_ap", "max_oks_ap_drop"),),
        agreement=GateMetric("keypoint_agreement", "keypoint_mean_oks", "min_keypoint_agreement"),
    )
    headlines: ClassVar[tuple[Headline, ...]] = (
        Headline("target_oks_ap", True, 0.01, "OKS AP (target)"),
        Headline("drop_oks_ap", False, None, "OKS AP drop"),
        Headline("keypoint_mean_oks", True, 0.01, "keypoint agreement (mean OKS)"),
    )
    diagnosis_metrics: ClassVar[tuple[str, str]] = ("oks_ap", "keypoint_agreement")

    def __init__(self, spec: ModelSpec) -> None:
        if not isinstance(spec.task, KeypointsSettings):
            raise ConfigError(f"{spec.name}: the keypoints task needs a 'task' section of kind 'keypoints'.")
        self.spec = spec
        self.settings: KeypointsSettings = spec.task

    # -- settings --------------------------------------------------------------------------------------------
    @property
    def top_down(self) -> bool:
        return self.settings.decoder.startswith("top-down")

    @property
    def regression(self) -> RegressionSpec:
        lm = self.settings.landmarks
        assert lm is not None
        return RegressionSpec(
            lm.num_keypoints, lm.values_per_point, lm.x_index, lm.y_index, lm.score_index, lm.score_activation,
            lm.coordinates,
        )  # fmt: skip

    @property
    def yolo_pose(self) -> YoloPoseSpec:
        h = self.settings.head or YoloPoseHead()
        return YoloPoseSpec(
            h.num_keypoints, h.num_classes, h.score_threshold, h.iou_threshold, h.max_detections,
            h.visibility_activation,
        )  # fmt: skip

    def keypoint_map(self) -> tuple[int, ...] | None:
        m = self.settings.keypoint_map
        return MEDIAPIPE_POSE_TO_COCO if m == "mediapipe-pose-to-coco" else m

    def mapped(self, poses: Poses) -> Poses:
        """``poses`` with the labels' points only (``keypoint_map``)."""
        m = self.keypoint_map()
        return poses.select_keypoints(m) if m is not None else poses

    @property
    def labelled_points(self) -> int:
        """Points per person after the map; for heatmaps without a map the count is learnt from the first input."""
        n = self.settings.labelled_points()
        if n is None:
            names = self.settings.keypoint_names
            sig = self.settings.sigmas
            n = len(names) if names else (len(sig) if isinstance(sig, tuple) else 17)
        return n

    def sigmas(self, k: int) -> list[float] | None:
        sig = self.settings.sigmas
        if isinstance(sig, tuple):
            if len(sig) != k:
                raise ConfigError(f"{self.spec.name}: task.sigmas has {len(sig)} values for {k} keypoints.")
            return list(sig)
        if k != 17:
            raise ConfigError(f"{self.spec.name}: sigmas 'coco' are COCO's 17; the people have {k} keypoints.")
        return None

    def names(self, k: int) -> list[str]:
        if self.settings.keypoint_names is not None:
            return list(self.settings.keypoint_names)
        return list(COCO_KEYPOINT_NAMES) if k == 17 else [str(i) for i in range(k)]

    def agreement(self, k: int) -> KeypointAgreement:
        return KeypointAgreement(
            k,
            sigmas=self.sigmas(k),
            names=self.names(k),
            keypoint_threshold=self.settings.keypoint_threshold,
            person_threshold=self.settings.person_threshold,
        )

    # -- inputs (top-down) -----------------------------------------------------------------------------------
    def inputs_key(self) -> object:
        if not self.top_down:
            return None
        s = self.settings
        return {"person_boxes": s.person_boxes, "person_category": s.person_category, "crop": s.crop}

    def inputs(self, images: ImageSet, input_name: str, input_hw: tuple[int, int]) -> TaskInputs | None:
        if not self.top_down:
            return None
        s = self.settings
        return crop_inputs(
            self.spec.name,
            "Top-down keypoints",
            images,
            s.person_category,
            s.crop,
            self.spec.preprocess,
            input_name,
            input_hw,
        )

    def labels_missing(self, images: ImageSet) -> str | None:
        """:class:`qc.tasks.base.LabelsHook`: the labels need people (``person_category``) with keypoints."""
        if images.coco is None:
            return None
        for ann in images.coco.get("annotations", []):
            person = int(ann.get("category_id", -1)) == self.settings.person_category and not ann.get("iscrowd", 0)
            if person and ann.get("keypoints") and int(ann.get("num_keypoints", 0)) > 0:
                return None
        return (
            f"the labels ({images.source}) hold no person (category {self.settings.person_category}) with keypoints: "
            "the OKS AP drop cannot be measured"
        )

    # -- the Task protocol -----------------------------------------------------------------------------------
    @property
    def gates(self) -> tuple[str, ...]:
        return gates_needing("accuracy", task=self.kind)

    def key(self) -> object:
        return {"settings": self.settings}

    def collector(self, input_hw: tuple[int, int], images: ImageSet) -> KeypointsCollection:
        return KeypointsCollection(self, input_hw, images)

    def evaluate(
        self, reference: Runner, target: Runner, feeds: Feeds, input_hw: tuple[int, int], images: ImageSet
    ) -> KeypointsOutcome:
        outcome: KeypointsOutcome = run_collector(self.collector(input_hw, images), reference, target, feeds)
        return outcome

    def save(self, outcome: KeypointsOutcome, folder: Path) -> dict[str, Any]:
        from qc.jsonio import write_json

        write_json(folder / "people_reference.json", outcome.reference_people, indent=None)
        write_json(folder / "people_target.json", outcome.target_people, indent=None)
        return outcome.to_json()

    def load(self, data: Mapping[str, Any], folder: Path) -> KeypointsOutcome | None:
        from qc.jsonio import read_json

        ref, tgt = folder / "people_reference.json", folder / "people_target.json"
        if not (ref.is_file() and tgt.is_file()):
            return None
        return KeypointsOutcome.from_json(data, read_json(ref), read_json(tgt))

    def write_report(self, outcome: KeypointsOutcome, images: ImageSet, folder: Path) -> list[Path]:
        import csv
        import io

        from qc.cache import atomic_write_text
        from qc.jsonio import write_json

        folder.mkdir(parents=True, exist_ok=True)
        written = [write_json(folder / "accuracy.json", outcome.summary())]
        for name, people in (("keypoints_reference.json", outcome.reference_people),
                             ("keypoints_target.json", outcome.target_people)):  # fmt: skip
            written.append(write_json(folder / name, people, indent=None))
        buf = io.StringIO()
        columns = ["keypoint", "mean_pixel_error", "mean_normalized_error", "oks"]
        writer = csv.DictWriter(buf, columns, lineterminator="\n")
        writer.writeheader()
        for row in per_keypoint_rows(outcome.agreement):
            writer.writerow({c: row[c] for c in columns})
        atomic_write_text(folder / "keypoints.csv", buf.getvalue())
        written.append(folder / "keypoints.csv")
        return written + self._pictures(outcome, images, folder / "pictures")

    def _pictures(self, outcome: KeypointsOutcome, images: ImageSet, folder: Path) -> list[Path]:
        """Side-by-side pictures of the images where the target's points depart most from the reference's."""
        from qc.data.images import read_rgb
        from qc.eval.keypoints.pictures import draw_poses_side_by_side

        for old in folder.glob("*.png") if folder.is_dir() else []:
            old.unlink()
        paths = {item.image_id: item.path for item in images.items}
        written = []
        s = self.settings
        for image_id, score in [d for d in outcome.disagreement if d[1] > 0][: s.pictures]:
            path = paths.get(image_id)
            if path is None:
                continue
            ref = [p for p in outcome.reference_people if p["image_id"] == image_id]
            tgt = [p for p in outcome.target_people if p["image_id"] == image_id]
            out = folder / f"{path.stem}.png"
            title = f"{self.spec.name}: {path.name}  1 - mean OKS {score:.2f}"
            draw_poses_side_by_side(read_rgb(path), ref, tgt, out, title, keypoint_threshold=s.keypoint_threshold,
                                    person_threshold=s.person_threshold)  # fmt: skip
            written.append(out)
        return written

    def check(self, gate: str, outcome: KeypointsOutcome) -> GateResult:
        if gate == "oks_ap_drop":
            return self._oks_ap_drop(outcome)
        if gate == "keypoint_agreement":
            return self._agreement(outcome)
        raise ConfigError(f"{self.spec.name}: gate {gate!r} is not a keypoints gate (those are {list(self.gates)}).")

    def _oks_ap_drop(self, o: KeypointsOutcome) -> GateResult:
        name, budget = self.spec.name, self.spec.thresholds.max_oks_ap_drop
        metrics: dict[str, float | str] = {"images": float(o.images), "inputs": float(o.inputs)}
        if not o.labelled or o.reference is None or o.target is None:
            return GateResult(
                "oks_ap_drop", False,
                f"{name}: the evaluation data has no labels (a plain image folder), so OKS AP cannot be computed; "
                "give eval_data a COCO annotation file with person keypoints, or list only keypoint_agreement in "
                "'gates'.",
                metrics,
            )  # fmt: skip
        for side, scores in (("reference", o.reference), ("target", o.target)):
            if scores.empty:
                return GateResult("oks_ap_drop", False, f"{name}: the {side}'s OKS AP is undefined: {scores.reason}",
                                  metrics)  # fmt: skip
        ref, tgt = float(o.reference.ap), float(o.target.ap)
        drop = ref - tgt
        metrics.update(reference_oks_ap=ref, target_oks_ap=tgt, drop_oks_ap=drop)
        text = f"reference OKS AP {ref:.4f}, target OKS AP {tgt:.4f}, drop {drop:.4f}, budget {budget:.4f}"
        if math.isnan(drop) or drop > budget:
            return GateResult("oks_ap_drop", False, f"{name}: OKS AP drop over budget: {text} ({o.images} images)",
                              metrics)  # fmt: skip
        return GateResult("oks_ap_drop", True, f"{name}: {text}", metrics)

    def _agreement(self, o: KeypointsOutcome) -> GateResult:
        name, floor, a = self.spec.name, self.spec.thresholds.min_keypoint_agreement, o.agreement
        metrics: dict[str, float | str] = {
            "keypoint_mean_oks": a.mean_oks, "keypoint_min_oks": a.min_oks, "keypoint_agreement_ap": a.ap,
            "people_lost": float(o.people_lost),
        }  # fmt: skip
        if a.empty:
            return GateResult("keypoint_agreement", False, f"{name}: keypoint agreement undefined: {a.reason}", metrics)
        worst = ", ".join(f"{r['keypoint']} {r['mean_pixel_error']:.1f} px" for r in per_keypoint_rows(a)[:3])
        detail = (
            f"min {a.min_oks:.4f}, OKS AP {a.ap:.4f} over {a.num_matched} people the reference sees; the target "
            f"loses {o.people_lost} of them (person score below {self.settings.person_threshold}); worst points: "
            f"{worst}"
        )
        if math.isnan(a.mean_oks) or a.mean_oks < floor:
            return GateResult(
                "keypoint_agreement", False,
                f"{name}: keypoint agreement (mean OKS) {a.mean_oks:.4f} < threshold {floor:.4f} ({detail})", metrics,
            )  # fmt: skip
        return GateResult(
            "keypoint_agreement", True, f"{name}: keypoint agreement {a.mean_oks:.4f} >= {floor:.4f} ({detail})",
            metrics,
        )  # fmt: skip

    def describe(self, outcome: KeypointsOutcome) -> list[str]:
        o = outcome
        lines = [f"{self.spec.name}: {o.images} images, {o.inputs} inputs", f"{'':12}{'OKS AP':>8}{'AP50':>8}"
                 f"{'AP75':>8}{'AR':>8}{'people':>8}"]  # fmt: skip
        for side, sc in (("reference", o.reference), ("target", o.target)):
            if sc is not None:
                lines.append(f"{side:12}{sc.ap:8.4f}{sc.ap50:8.4f}{sc.ap75:8.4f}{sc.ar:8.4f}{sc.num_people:8d}")
        if o.labelled:
            lines.append(f"{'drop':12}{o.drop():8.4f}")
        a = o.agreement
        lines.append(
            f"keypoint agreement: mean OKS {a.mean_oks:.4f} (min {a.min_oks:.4f}, OKS AP {a.ap:.4f}) on "
            f"{a.num_matched} people; {o.people_lost} lost by the target"
        )
        for row in per_keypoint_rows(a)[:3]:
            lines.append(f"  {row['keypoint']:16} OKS {row['oks']:.4f}  {row['mean_pixel_error']:.1f} px")
        return lines

    def metrics(self, outcome: KeypointsOutcome) -> dict[str, float]:
        o = outcome
        out: dict[str, float] = {}
        a = o.agreement
        if not a.empty:
            out.update(keypoint_mean_oks=float(a.mean_oks), keypoint_min_oks=float(a.min_oks))
            if not math.isnan(a.ap):
                out["keypoint_agreement_ap"] = float(a.ap)
        out["people_lost"] = float(o.people_lost)
        for side, sc in (("reference", o.reference), ("target", o.target)):
            if sc is not None and not sc.empty:
                out[f"{side}_oks_ap"] = float(sc.ap)
        if not math.isnan(o.drop()):
            out["drop_oks_ap"] = o.drop()
        return out

    def calibration_metrics(self, outcome: KeypointsOutcome) -> dict[str, float]:
        a = outcome.agreement
        return {"drop_oks_ap": outcome.drop(), "keypoint_mean_oks": math.nan if a.empty else float(a.mean_oks)}

    def score(self, outcome: KeypointsOutcome, metric: str, side: Literal["reference", "target"]) -> float:
        if metric == "oks_ap":
            sc = outcome.reference if side == "reference" else outcome.target
            return 0.0 if sc is None or sc.empty or math.isnan(sc.ap) else float(sc.ap)
        if metric == "keypoint_agreement":
            if side == "reference":
                return 1.0
            a = outcome.agreement
            return 0.0 if a.empty or math.isnan(a.mean_oks) else float(a.mean_oks)
        raise ConfigError(
            f"{self.spec.name}: {metric!r} is not a keypoints metric (those are {self.diagnosis_metrics})."
        )
