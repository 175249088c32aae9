"""layers.csv / outputs.csv carry the threshold their gate applied to each row (per-tensor overrides included)."""

from __future__ import annotations

import csv
from pathlib import Path

from qc.compare.layerwise import Comparison, LayerRow, OutputRow
from qc.compare.metrics import MetricSummary
from qc.config import Thresholds, ThresholdValues
from qc.report.tables import LAYER_COLUMNS, OUTPUT_COLUMNS, write_comparison


def _m(cos: float) -> MetricSummary:
    return MetricSummary(cos, cos, 30.0, 30.0, 0.0, 0.0, 2, None)


def test_applied_thresholds_are_written_per_row(tmp_path: Path) -> None:
    result = Comparison(
        model="m",
        images=2,
        layers=[LayerRow(0, "a", "Conv", "1x2", "a_dq", _m(0.99)), LayerRow(1, "b", "Relu", "1x2", "b_dq", _m(0.5))],
        outputs=[
            OutputRow("out", "out", None, "1x6", _m(0.999)),
            OutputRow("out[scores]", "out", "scores", "1x2", _m(0.9)),
        ],
    )
    thresholds = Thresholds(
        layer_cosine=0.98,
        output_cosine=0.99,
        output_sqnr_db=20,
        overrides={"b": ThresholdValues(layer_cosine=0.0), "out[scores]": ThresholdValues(output_sqnr_db=12.5)},
    )
    write_comparison(result, tmp_path, thresholds)
    with (tmp_path / "layers.csv").open() as f:
        layers = list(csv.DictReader(f))
    assert tuple(layers[0]) == LAYER_COLUMNS
    assert LAYER_COLUMNS[-2:] == ("cosine_threshold", "input_independent")
    assert [r["cosine_threshold"] for r in layers] == ["0.98", "0"]
    with (tmp_path / "outputs.csv").open() as f:
        outputs = {r["output"]: r for r in csv.DictReader(f)}
    assert OUTPUT_COLUMNS[-2:] == ("cosine_threshold", "sqnr_db_threshold")
    assert (outputs["out"]["cosine_threshold"], outputs["out"]["sqnr_db_threshold"]) == ("0.99", "20")
    assert (outputs["out[scores]"]["cosine_threshold"], outputs["out[scores]"]["sqnr_db_threshold"]) == ("0.99", "12.5")
