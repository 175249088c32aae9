"""Label-free keypoint agreement of a target against a reference: matched OKS, per-keypoint errors and the AP of
the target with the reference as pseudo ground truth."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from qc.errors import ConfigError, DataError, MetricError
from qc.eval.keypoints.oks import KeypointScores, oks, oks_sigmas, run_keypoint_eval, to_coco_keypoint_results
from qc.eval.keypoints.poses import FloatArray, Poses


@dataclass(frozen=True)
class KeypointAgreementScores:
    """Target vs reference keypoints without labels.

    ``mean_oks``/``min_oks``: OKS of each matched target person against its reference person (reference
    keypoints with score >= ``keypoint_threshold`` count, area = reference box area); ``ap``/``ap50``: COCO
    keypoint AP of every target person against the reference people (score >= ``person_threshold``) as ground
    truth; ``per_keypoint_oks``: mean per-keypoint similarity; ``per_keypoint_error``: mean distance / sqrt(box
    area) per keypoint; ``per_keypoint_pixels``: mean distance in original pixels.
    """

    mean_oks: float
    min_oks: float
    ap: float
    ap50: float
    num_people: int
    num_matched: int
    num_absent: int = 0
    per_keypoint_oks: dict[str, float] = field(default_factory=dict)
    per_keypoint_error: dict[str, float] = field(default_factory=dict)
    per_keypoint_pixels: dict[str, float] = field(default_factory=dict)
    empty: bool = False
    reason: str = ""

    def worst(self, n: int = 3) -> list[tuple[str, float]]:
        """The ``n`` keypoints with the largest normalised error."""
        return sorted(self.per_keypoint_error.items(), key=lambda kv: -kv[1])[:n]

    def require(self) -> KeypointAgreementScores:
        if self.empty:
            raise MetricError(f"keypoint agreement is undefined: {self.reason}")
        return self


class KeypointAgreement:
    """Streaming keypoint agreement: :meth:`add` one image's reference and target poses at a time, then
    :meth:`result`. Top-down results (one person per given box, same order on both sides) pass
    ``paired=True``: pairs whose reference person score (e.g. a presence flag) is below ``person_threshold``
    are left out (the reference sees no person there; counted in ``num_absent``), but the target's person still
    enters the AP as a detection. Otherwise people are matched greedily by OKS (each reference person above
    ``person_threshold`` at most once)."""

    def __init__(
        self,
        num_keypoints: int,
        *,
        sigmas: Sequence[float] | None = None,
        names: Sequence[str] | None = None,
        keypoint_threshold: float = 0.5,
        person_threshold: float = 0.25,
    ) -> None:
        self.k = num_keypoints
        self.sigmas = oks_sigmas(sigmas, num_keypoints)
        self.names = list(names) if names is not None else [str(i) for i in range(num_keypoints)]
        if len(self.names) != num_keypoints:
            raise ConfigError(f"{len(self.names)} keypoint names given for {num_keypoints} keypoints.")
        self.keypoint_threshold = keypoint_threshold
        self.person_threshold = person_threshold
        self.person_oks: list[float] = []
        self.kp_sim = np.zeros(num_keypoints)
        self.kp_err = np.zeros(num_keypoints)
        self.kp_pix = np.zeros(num_keypoints)
        self.kp_count = np.zeros(num_keypoints)
        self.num_people = 0
        self.num_absent = 0
        self.images: list[dict[str, Any]] = []
        self.gt: list[dict[str, Any]] = []
        self.results: list[dict[str, Any]] = []

    def _check(self, p: Poses, side: str) -> None:
        if len(p) and p.num_keypoints != self.k:
            raise DataError(f"{side} poses have {p.num_keypoints} keypoints, the agreement expects {self.k}.")

    def add(self, image_id: int, reference: Poses, target: Poses, *, paired: bool = False) -> None:
        self._check(reference, "reference")
        self._check(target, "target")
        iid = int(image_id)
        if paired and len(reference) != len(target):
            raise DataError(f"image {iid}: paired poses need as many target ({len(target)}) as reference people "
                            f"({len(reference)}).")  # fmt: skip
        if paired:  # people the reference sees (score >= person_threshold), with their target counterparts
            keep = np.flatnonzero(reference.scores >= self.person_threshold)
            ref = Poses(reference.boxes[keep], reference.scores[keep], reference.keypoints[keep])
            counterpart = Poses(target.boxes[keep], target.scores[keep], target.keypoints[keep])
            self.num_absent += len(reference) - len(keep)
        else:
            ref = reference.above(self.person_threshold)
            counterpart = target
        w = float(max([1.0, *ref.boxes[:, 2].tolist(), *target.boxes[:, 2].tolist()]))
        h = float(max([1.0, *ref.boxes[:, 3].tolist(), *target.boxes[:, 3].tolist()]))
        self.images.append({"id": iid, "width": math.ceil(w), "height": math.ceil(h)})
        areas = np.maximum((ref.boxes[:, 2] - ref.boxes[:, 0]) * (ref.boxes[:, 3] - ref.boxes[:, 1]), 1.0)
        for j in range(len(ref)):
            vis = ref.keypoints[j, :, 2] >= self.keypoint_threshold
            x1, y1, x2, y2 = ref.boxes[j].tolist()
            flat = np.concatenate([ref.keypoints[j, :, :2], np.where(vis, 2.0, 0.0)[:, None]], axis=1)
            self.gt.append(
                {
                    "id": len(self.gt) + 1,
                    "image_id": iid,
                    "category_id": 1,
                    "keypoints": flat.reshape(-1).astype(np.float64).tolist(),
                    "num_keypoints": int(vis.sum()),
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": float(areas[j]),
                    "iscrowd": 0,
                }
            )
        self.results.extend(to_coco_keypoint_results(iid, target))
        self.num_people += len(ref)
        pairs = [(j, j) for j in range(len(ref))] if paired else self._match(ref, target, areas)
        for j, t in pairs:
            vis = ref.keypoints[j, :, 2] >= self.keypoint_threshold
            d = np.linalg.norm(counterpart.keypoints[t, :, :2].astype(np.float64) - ref.keypoints[j, :, :2], axis=1)
            sim = np.exp(-(d**2) / ((2 * self.sigmas) ** 2) / (2 * areas[j]))
            if vis.any():
                self.person_oks.append(float(sim[vis].mean()))
            self.kp_sim[vis] += sim[vis]
            self.kp_err[vis] += d[vis] / math.sqrt(areas[j])
            self.kp_pix[vis] += d[vis]
            self.kp_count[vis] += 1

    def _match(self, ref: Poses, target: Poses, areas: FloatArray) -> list[tuple[int, int]]:
        if not len(ref) or not len(target):
            return []
        table = np.full((len(ref), len(target)), -1.0)
        for j in range(len(ref)):
            vis = ref.keypoints[j, :, 2] >= self.keypoint_threshold
            for t in range(len(target)):
                v = oks(target.keypoints[t, :, :2], ref.keypoints[j, :, :2], vis, float(areas[j]), self.sigmas.tolist())
                table[j, t] = -1.0 if math.isnan(v) else v
        pairs: list[tuple[int, int]] = []
        used_r: set[int] = set()
        used_t: set[int] = set()
        for flat in np.argsort(-table, axis=None, kind="stable"):
            j, t = divmod(int(flat), len(target))
            if table[j, t] < 0 or j in used_r or t in used_t:
                continue
            pairs.append((j, t))
            used_r.add(j)
            used_t.add(t)
        return pairs

    def result(self) -> KeypointAgreementScores:
        nan = math.nan
        if not self.person_oks:
            return KeypointAgreementScores(
                nan, nan, nan, nan, self.num_people, 0, empty=True,
                reason=f"no matched person with a reference keypoint scoring >= {self.keypoint_threshold} "
                f"({self.num_people} reference people on {len(self.images)} image(s)).",
            )  # fmt: skip
        ids = [im["id"] for im in self.images]
        gt = {"images": self.images, "annotations": self.gt, "categories": [{"id": 1, "name": "person"}]}
        if self.results and any(a["num_keypoints"] > 0 for a in self.gt):
            ap_scores = run_keypoint_eval(gt, [dict(r, id=i + 1, iscrowd=0, area=r["bbox"][2] * r["bbox"][3])
                                                for i, r in enumerate(self.results)], ids, self.sigmas)  # fmt: skip
        else:
            ap_scores = KeypointScores.flagged_empty("no target people or no visible reference keypoints.")
        seen = self.kp_count > 0
        per_oks = {n: float(self.kp_sim[i] / self.kp_count[i]) for i, n in enumerate(self.names) if seen[i]}
        per_err = {n: float(self.kp_err[i] / self.kp_count[i]) for i, n in enumerate(self.names) if seen[i]}
        per_pix = {n: float(self.kp_pix[i] / self.kp_count[i]) for i, n in enumerate(self.names) if seen[i]}
        return KeypointAgreementScores(
            mean_oks=float(np.mean(self.person_oks)),
            min_oks=float(np.min(self.person_oks)),
            ap=ap_scores.ap,
            ap50=ap_scores.ap50,
            num_people=self.num_people,
            num_matched=len(self.person_oks),
            num_absent=self.num_absent,
            per_keypoint_oks=per_oks,
            per_keypoint_error=per_err,
            per_keypoint_pixels=per_pix,
        )
