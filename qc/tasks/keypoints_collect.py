"""The keypoints task's outcome and its collector: people decoded input by input (original pixels, the labels'
points), scored at the end (OKS AP of both sides against the labels, agreement of the target with the reference)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from qc.config import KeypointsTask as KeypointsSettings
from qc.errors import DataError
from qc.eval.keypoints import (
    KeypointAgreementScores,
    KeypointScores,
    Poses,
    decode_heatmaps,
    decode_regression,
    decode_yolo_pose,
    evaluate_oks,
    poses_to_original,
    to_coco_keypoint_results,
    top_down_person,
)
from qc.tasks.crops import Box, crop_plan

if TYPE_CHECKING:
    from qc.data.images import ImageSet
    from qc.data.preprocess import Transform
    from qc.tasks.keypoints import KeypointsTask


def person_boxes(settings: KeypointsSettings, images: ImageSet) -> list[tuple[int, Box | None]]:
    """The top-down inputs of an image set, in order (:func:`qc.tasks.crops.crop_plan` of ``person_category``)."""
    return crop_plan(settings.person_category, images)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, x))))


@dataclass
class KeypointsOutcome:
    """Both sides' OKS AP against the labels (None without labels), the agreement, and the people of each side
    (COCO keypoint results, original pixels, the labels' points)."""

    images: int
    inputs: int
    labelled: bool
    reference: KeypointScores | None
    target: KeypointScores | None
    agreement: KeypointAgreementScores
    people_lost: int
    """People the reference sees (score >= person_threshold) whose target score falls below it."""
    reference_people: list[dict[str, Any]]
    target_people: list[dict[str, Any]]
    disagreement: list[tuple[int, float]] = field(default_factory=list)
    """(image id, 1 - the image's mean OKS of target vs reference), worst first (at most 50)."""

    def drop(self) -> float:
        if self.reference is None or self.target is None or self.reference.empty or self.target.empty:
            return math.nan
        return float(self.reference.ap) - float(self.target.ap)

    def summary(self) -> dict[str, Any]:
        """``accuracy.json``."""
        out: dict[str, Any] = {"images": self.images, "inputs": self.inputs, "labelled": self.labelled}
        for side, scores in (("reference", self.reference), ("target", self.target)):
            if scores is not None:
                for key in ("ap", "ap50", "ap75", "ar"):
                    out[f"{side}.oks_{key}"] = getattr(scores, key)
                out[f"{side}.people"] = scores.num_people
                out[f"{side}.empty_reason"] = scores.reason or None
        if self.labelled:
            out["drop.oks_ap"] = self.drop()
        a = self.agreement
        out.update(
            {
                "agreement.mean_oks": a.mean_oks,
                "agreement.min_oks": a.min_oks,
                "agreement.oks_ap": a.ap,
                "agreement.oks_ap50": a.ap50,
                "agreement.reference_people": a.num_people,
                "agreement.matched": a.num_matched,
                "agreement.reference_absent": a.num_absent,
                "agreement.target_people_lost": self.people_lost,
                "agreement.empty_reason": a.reason or None,
                "per_keypoint": per_keypoint_rows(a),
                "most_disagreeing_images": [{"image_id": i, "disagreement": d} for i, d in self.disagreement],
            }
        )
        return out

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        del data["reference_people"], data["target_people"]
        return data

    @classmethod
    def from_json(
        cls, data: Mapping[str, Any], reference: list[dict[str, Any]], target: list[dict[str, Any]]
    ) -> KeypointsOutcome:
        def scores(d: Mapping[str, Any] | None) -> KeypointScores | None:
            return None if d is None else KeypointScores(**d)

        return cls(
            images=int(data["images"]),
            inputs=int(data["inputs"]),
            labelled=bool(data["labelled"]),
            reference=scores(data["reference"]),
            target=scores(data["target"]),
            agreement=KeypointAgreementScores(**data["agreement"]),
            people_lost=int(data["people_lost"]),
            reference_people=reference,
            target_people=target,
            disagreement=[(int(i), float(d)) for i, d in data.get("disagreement", [])],
        )


def per_keypoint_rows(a: KeypointAgreementScores) -> list[dict[str, Any]]:
    """Per keypoint: mean pixel error, mean error / sqrt(box area) and mean OKS, lowest OKS (worst) first."""
    rows = [
        {
            "keypoint": name,
            "oks": a.per_keypoint_oks[name],
            "mean_pixel_error": a.per_keypoint_pixels.get(name, math.nan),
            "mean_normalized_error": a.per_keypoint_error.get(name, math.nan),
        }
        for name in a.per_keypoint_oks
    ]
    return sorted(rows, key=lambda r: (r["oks"], -r["mean_pixel_error"]))


class KeypointsCollection:
    """:class:`qc.tasks.base.Collector` of the keypoints task: decode each input's outputs into people (original
    pixels, the labels' points), then score at :meth:`finish`."""

    def __init__(self, task: KeypointsTask, input_hw: tuple[int, int], images: ImageSet) -> None:
        self.task = task
        self.s = task.settings
        self.input_hw = input_hw
        self.images = images
        self.top_down = task.top_down
        self.plan = person_boxes(self.s, images) if self.top_down else []
        self.by_image: dict[int, tuple[list[Poses], list[Poses]]] = {}
        self.inputs = 0

    def _output(self, outputs: Mapping[str, np.ndarray], side: str) -> np.ndarray:
        if self.s.outputs:
            name = self.s.outputs[0]
            if name not in outputs:
                raise DataError(
                    f"{self.task.spec.name}: task.outputs names {name!r}, the {side} has outputs {sorted(outputs)}."
                )
            return outputs[name]
        return next(iter(outputs.values()))

    def _person_score(self, outputs: Mapping[str, np.ndarray], side: str) -> float:
        name = self.s.person_score_output
        if name is None:
            return 1.0
        if name not in outputs:
            raise DataError(
                f"{self.task.spec.name}: task.person_score_output {name!r} is not an output of the {side} "
                f"(outputs: {sorted(outputs)})."
            )
        value = np.asarray(outputs[name], np.float64).reshape(-1)
        if value.size != 1:
            raise DataError(
                f"{self.task.spec.name}: task.person_score_output {name!r} has {value.size} values; expected one "
                "person score per crop."
            )
        raw = float(value[0])
        return _sigmoid(raw) if self.s.person_score_activation == "sigmoid" else raw

    def _top_down(self, outputs: Mapping[str, np.ndarray], tf: Transform, box: Box, side: str) -> Poses:
        raw = self._output(outputs, side)
        if self.s.decoder == "top-down-regression":
            assert self.s.landmarks is not None  # validated
            kp = decode_regression(raw, self.task.regression, self.input_hw)
        else:
            kp = decode_heatmaps(raw, self.input_hw)
        person = top_down_person(kp, tf, box, self._person_score(outputs, side))
        return self.task.mapped(person)

    def add(self, image_id: int, transform: Transform, reference: Mapping[str, Any], target: Mapping[str, Any]) -> None:
        self.inputs += 1
        if self.top_down:
            if not 0 <= image_id < len(self.plan):
                raise DataError(f"{self.task.spec.name}: input {image_id} is not one of the {len(self.plan)} crops.")
            iid, box = self.plan[image_id]
            whole = (0.0, 0.0, float(transform.orig_w), float(transform.orig_h))
            ref = self._top_down(reference, transform, box or whole, "reference")
            tgt = self._top_down(target, transform, box or whole, "target")
        else:
            iid = image_id
            spec = self.task.yolo_pose
            ref = self.task.mapped(poses_to_original(decode_yolo_pose(self._output(reference, "reference"), spec)[0],
                                                     transform))  # fmt: skip
            tgt = self.task.mapped(poses_to_original(decode_yolo_pose(self._output(target, "target"), spec)[0],
                                                     transform))  # fmt: skip
        refs, tgts = self.by_image.setdefault(iid, ([], []))
        refs.append(ref)
        tgts.append(tgt)

    def finish(self) -> KeypointsOutcome:
        k = self.task.labelled_points
        agreement = self.task.agreement(k)
        s = self.s
        ref_people: list[dict[str, Any]] = []
        tgt_people: list[dict[str, Any]] = []
        lost = 0
        ranking: list[tuple[int, float]] = []
        for item in self.images.items:
            refs, tgts = self.by_image.get(item.image_id, ([], []))
            ref, tgt = Poses.stack(refs, k), Poses.stack(tgts, k)
            one = self.task.agreement(k)  # this image alone (matched OKS only: no COCO evaluation)
            for agg in (agreement, one):
                agg.add(item.image_id, ref, tgt, paired=self.top_down)
            if self.top_down:
                seen = ref.scores >= s.person_threshold
                lost += int((seen & (tgt.scores < s.person_threshold)).sum())
            if one.num_people:
                matched = one.person_oks + [0.0] * (one.num_people - len(one.person_oks))  # unmatched: OKS 0
                ranking.append((item.image_id, 1.0 - float(np.mean(matched))))
            ref_people += to_coco_keypoint_results(item.image_id, ref, s.person_category)
            tgt_people += to_coco_keypoint_results(item.image_id, tgt, s.person_category)
        coco = self.images.coco
        ids = [item.image_id for item in self.images.items]
        ref_scores = tgt_scores = None
        if coco is not None:
            sigmas = self.task.sigmas(k)
            ref_scores = evaluate_oks(coco, ref_people, ids, sigmas)
            tgt_scores = evaluate_oks(coco, tgt_people, ids, sigmas)
        return KeypointsOutcome(
            images=len(self.images),
            inputs=self.inputs,
            labelled=coco is not None,
            reference=ref_scores,
            target=tgt_scores,
            agreement=agreement.result(),
            people_lost=lost,
            reference_people=ref_people,
            target_people=tgt_people,
            disagreement=sorted(ranking, key=lambda t: (-t[1], t[0]))[:50],
        )
