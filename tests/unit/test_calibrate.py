"""``qc calibrate`` on measured-looking points: the sweep, the fit, its counts, its outputs, and what it skips."""

from __future__ import annotations

import csv
import math
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import ClassVar

import pytest

from qc import calibrate as cal
from qc.cli import main
from qc.config import ModelSpec, OnnxTarget, OrtInt8Target, TaskSpec, Thresholds, load_models
from qc.errors import ConfigError
from qc.eval.accuracy import AccuracyResult
from qc.eval.coco import CocoScores
from qc.tasks.detection import DetectionTask
from tests.models import tiny_project


@pytest.fixture
def spec(tmp_path: Path) -> ModelSpec:
    (entry,) = load_models(tiny_project(tmp_path, [{"name": "tiny"}]))
    return entry.model_copy(update={"task": TaskSpec(decoder="yolo-decoded", class_names=("a",))})


def _scores(ap: float, ap50: float) -> CocoScores:
    if math.isnan(ap):
        return CocoScores.flagged_empty("the target found nothing")
    return CocoScores(ap, ap50, ap, ap)


def _point(spec: ModelSpec, name: str, drop: float, agreement: float, drop50: float | None = None) -> cal.Point:
    """A variant whose AP drops by ``drop`` (NaN: no detections), AP50 by ``drop50`` (default the same), with
    ``agreement`` (NaN: undefined)."""
    reference = _scores(0.5, 0.7)
    target = _scores(0.5 - drop, 0.7 - (drop if drop50 is None else drop50))
    result = AccuracyResult(4, True, reference, target, _scores(agreement, agreement))
    task = DetectionTask(spec)
    failing = [b.gate for b in DetectionTask.calibration.budgets if not task.check(b.gate, result).passed]
    setting = cal.Setting(True, "tf", 8, 32, ())
    return cal.Point(
        "detection", [spec.name], name, setting, 4, 31, task.calibration_metrics(result), failing, spec, result
    )


def test_the_sweep_covers_every_setting_once_and_keeps_the_rest_of_the_target(spec: ModelSpec) -> None:
    assert isinstance(spec.target, OrtInt8Target)
    settings = cal.settings_for(spec.target)
    assert len(settings) == 24  # 2 x 3 x 2 x 2, and float_downstream_of only "none" (the entry has none)
    assert len({s.label() for s in settings}) == 24
    assert len(cal.settings_for(None)) == 24  # a target compared as it is: the same sweep from the reference
    target = spec.target.model_copy(update={"float_downstream_of": ("head",), "float_nodes": ("keep",)})
    decoded = spec.model_copy(update={"target": target})
    settings = cal.settings_for(target)
    assert len(settings) == 48
    variant = cal.variant_spec(decoded, settings[-1], target)
    assert isinstance(variant.target, OrtInt8Target)
    assert variant.target.float_nodes == ("keep",)  # what the sweep does not vary stays as configured
    assert variant.target.float_downstream_of == settings[-1].float_downstream_of
    assert (variant.target.per_channel, variant.target.bias_bitwidth) == (False, 8)
    assert variant.name.startswith("tiny-cal-pt-symmetric-a16-b8")
    assert variant.expect == "pass"
    assert variant.gates is None
    onnx_entry = spec.model_copy(update={"target": OnnxTarget(kind="onnx", model=spec.reference)})
    assert cal.variant_spec(onnx_entry, settings[0]).target.kind == "ort-int8"


def test_fit_is_the_smallest_threshold_without_a_false_pass(spec: ModelSpec) -> None:
    points = [
        _point(spec, "good-high", 0.0, 0.95),
        _point(spec, "good-low", 0.01, 0.80),
        _point(spec, "bad-close", 0.05, 0.831),
        _point(spec, "bad-far", 0.3, 0.40),
        _point(spec, "bad-empty", math.nan, math.nan),
        _point(spec, "ap50-only", 0.01, 0.89, drop50=0.05),
    ]
    fit = cal.fit("detection", points, DetectionTask.calibration)
    assert fit.gates == ("map_drop",)
    assert [fit.over_budget(p) for p in points] == [False, False, True, True, True, False]
    assert fit.threshold == pytest.approx(0.84)
    assert cal.counts_at(points, DetectionTask.calibration, 0.84) == (0, 1)  # good-low fails: a false fail
    assert cal.counts_at(points, DetectionTask.calibration, 0.83) == (1, 1)  # bad-close passes at 0.83
    assert cal.counts_at(points, DetectionTask.calibration, 0.5) == (1, 0)
    assert fit.over_budget_count == 3
    # with the AP50 budget too, the variant only AP50 condemns must fail the agreement gate as well
    every = ("map_drop", "map50_drop")
    strict = cal.fit("detection", points, DetectionTask.calibration, gates=every)
    assert strict.threshold == pytest.approx(0.9)
    assert cal.counts_at(points, DetectionTask.calibration, 0.9, every) == (0, 1)


def test_no_fit_without_a_bad_variant_or_when_nothing_separates_them(spec: ModelSpec) -> None:
    good = [_point(spec, "good", 0.0, 0.9)]
    fit = cal.fit("detection", good, DetectionTask.calibration)
    assert fit.threshold is None
    assert "no variant fails ['map_drop']" in fit.reason
    perfect_but_bad = [*good, _point(spec, "bad", 0.2, 1.0)]
    fit = cal.fit("detection", perfect_but_bad, DetectionTask.calibration)
    assert fit.threshold is None
    assert "min_agreement_ap <= 1" in fit.reason


def test_outputs_table_plot_and_markdown_state_the_counts(spec: ModelSpec, tmp_path: Path) -> None:
    points = [
        _point(spec, "good", 0.0, 0.95),
        _point(spec, "ap50-only", 0.0, 0.9, drop50=0.1),
        _point(spec, "bad", 0.05, 0.70),
        _point(spec, "empty", math.nan, 0),
    ]
    fit = cal.fit("detection", points, DetectionTask.calibration)
    assert fit.threshold == pytest.approx(0.71)
    fit.counts = {v: cal.counts_at(points, DetectionTask.calibration, v) for v in (0.5, 0.71)}
    every = ("map_drop", "map50_drop")
    fit.strict = cal.fit("detection", points, DetectionTask.calibration, gates=every)
    fit.strict.counts = {v: cal.counts_at(points, DetectionTask.calibration, v, every) for v in (0.5, 0.71, 0.91)}
    run = cal.CalibrationRun([fit], ["other: no labels"])
    written = cal.write_outputs(run, tmp_path / "out", "qc calibrate models.yaml --out=out")
    assert [p.name for p in written] == ["calibration.csv", "calibration.svg", "calibration.md"]
    rows = list(csv.DictReader((tmp_path / "out/calibration.csv").open()))
    assert [r["variant"] for r in rows] == ["good", "ap50-only", "bad", "empty"]  # by agreement, highest first
    assert [r["agreement_at_fit"] for r in rows] == ["pass", "pass", "fail", "fail"]
    assert [r["over_budget"] for r in rows] == ["no", "no", "yes", "yes"]
    assert rows[1]["labelled_failing"] == "map50_drop"
    assert rows[2]["labelled_failing"] == "map_drop map50_drop"
    assert rows[3]["ap_drop"] == "nan"
    svg = ET.parse(tmp_path / "out/calibration.svg").getroot()
    assert len(svg.findall(".//{http://www.w3.org/2000/svg}circle")) == 4
    md = (tmp_path / "out/calibration.md").read_text()
    assert "**Fitted `min_agreement_ap` = 0.71**" in md
    assert "0 false pass(es), 0 false fail(s) among 4 variants, 2 of them over budget (map_drop fails)" in md
    assert "| 0.5 | 1 | 0 |" in md
    assert "**It would fit `min_agreement_ap` = 0.91**" in md
    assert "3 of them over budget (map_drop or map50_drop fails)" in md
    assert "| 0.71 | 1 | 0 | asked (--also) |" in md
    assert "small calibration set" in md
    assert "qc calibrate my-models.yaml" in md
    assert "- other: no labels" in md


class NoCalibration(DetectionTask):
    """A task kind that has not declared its calibration yet (as a newly added task might)."""

    calibration: ClassVar = None  # type: ignore[assignment]


def test_entries_that_cannot_be_calibrated_are_named_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tiny_project(tmp_path, [{"name": "unlabelled"}])
    assert main(["calibrate", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "no entry could be calibrated" in err
    assert "unlabelled: no 'task' section" in err
    (spec,) = load_models(path)
    task_spec = spec.model_copy(update={"task": TaskSpec(decoder="yolo-decoded", class_names=("a",))})
    from qc import tasks

    monkeypatch.setitem(tasks.TASKS, "detection", f"{__name__}:NoCalibration")
    with pytest.raises(ConfigError, match="declares no 'calibration'"):
        cal._task_calibration(task_spec)


def test_cli_rejects_a_threshold_outside_zero_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tiny_project(tmp_path, [{"name": "tiny"}])
    assert main(["calibrate", str(path), "--out", str(tmp_path), "--also", "1.5"]) == 2
    assert "--also thresholds must be in [0, 1], found [1.5]" in capsys.readouterr().err


def test_the_agreement_default_is_the_calibrated_value() -> None:
    """docs/calibration.md states the fitted value and its counts; the default must be that value."""
    docs = Path(__file__).resolve().parents[2] / "docs" / "calibration.md"
    text = docs.read_text(encoding="utf-8")
    default = Thresholds.model_fields["min_agreement_ap"].default
    assert f"**Fitted `min_agreement_ap` = {default:g}**" in text
