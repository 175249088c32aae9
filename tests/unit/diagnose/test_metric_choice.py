"""The diagnosis' sensitivity metric comes from the entry's task (Task.diagnosis_metrics), never assumes AP."""

from __future__ import annotations

from typing import Any

import pytest

from qc.config import ModelSpec
from qc.diagnose.sensitivity import choose_metric


def _spec(task: dict[str, Any] | None, metric: str = "auto") -> ModelSpec:
    return ModelSpec.model_validate(
        {
            "name": "m",
            "reference": "r.onnx",
            "target": {"kind": "onnx", "model": "t.onnx"},
            "eval_data": {"folder": "."},
            "task": task,
            "diagnose": {"metric": metric},
        }
    )


SEG = {"kind": "segmentation"}
CLS = {"kind": "classification"}
DET = {"decoder": "yolov8", "class_names": ["a"]}


@pytest.mark.parametrize(
    ("task", "labelled", "failing", "expected"),
    [
        (SEG, True, (), "miou"),
        (SEG, False, (), "mask_agreement"),
        (SEG, True, ("miou_drop", "mask_agreement"), "miou"),
        (SEG, True, ("mask_agreement", "output_cosine"), "mask_agreement"),  # labels fine, agreement lost
        (CLS, True, ("top1_agreement",), "top1_agreement"),
        (CLS, True, ("top1_drop",), "top1"),
        (DET, True, ("map_drop", "agreement_ap"), "ap"),
        (DET, False, (), "agreement_ap"),
        (None, True, (), "output_sqnr"),
    ],
)
def test_auto_picks_the_task_metric(
    task: dict[str, Any] | None, labelled: bool, failing: tuple[str, ...], expected: str
) -> None:
    assert choose_metric(_spec(task), labelled, failing) == expected


def test_an_explicit_metric_wins() -> None:
    assert choose_metric(_spec(CLS, "top1"), True, ("top1_agreement",)) == "top1"
    assert choose_metric(_spec(SEG, "output_sqnr"), True) == "output_sqnr"
