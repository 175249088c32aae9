"""JSON files never hold bare NaN/Infinity: null with the reason beside it, read back as the number."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from qc import jsonio
from qc.cache import StageCache
from qc.data.images import ImageSet
from qc.eval.accuracy import AccuracyResult, DetectionSet
from qc.eval.coco import CocoScores
from qc.report.accuracy import write_accuracy


def _strict(text: str) -> Any:
    def refuse(constant: str) -> Any:
        raise AssertionError(f"bare {constant} in JSON")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_numbers_become_null_with_a_reason_and_read_back() -> None:
    data = {
        "reference.ap": math.nan,
        "reference.empty_reason": "no detections on the 4 evaluated image(s).",
        "layer": {"cosine": 1.0, "sqnr_db": math.inf, "mse": 0.0, "undefined": None},
        "floor": -math.inf,
        "series": [1.0, math.nan],
        "pair": (1, 2),
    }
    text = jsonio.dumps(data, indent=1)
    raw = _strict(text)
    assert raw["reference.ap"] is None
    assert raw["reference.ap_reason"] == "NaN: no detections on the 4 evaluated image(s)."
    assert raw["layer"]["sqnr_db"] is None
    assert raw["layer"]["sqnr_db_reason"].startswith("+inf: ")
    assert raw["floor_reason"].startswith("-inf: ")
    back = jsonio.loads(text)
    assert math.isnan(back["reference.ap"])
    assert back["layer"]["sqnr_db"] == math.inf
    assert back["floor"] == -math.inf
    assert "reference.ap_reason" not in back
    assert "sqnr_db_reason" not in back["layer"]
    assert back["series"] == [1.0, None]  # a list has no room for a reason
    assert back["pair"] == [1, 2]
    assert jsonio.loads('{"ap": NaN}')["ap"] != 0  # older files with bare NaN still read


def test_a_taken_reason_key_is_refused() -> None:
    with pytest.raises(ValueError, match="'ap_reason' is taken"):
        jsonio.dumps({"ap": math.nan, "ap_reason": "mine"})


def test_accuracy_json_is_strict_json(tmp_path: Path) -> None:
    empty = CocoScores.flagged_empty("no detections on the 2 evaluated image(s).", 2, 0, 5)
    result = AccuracyResult(images=2, labelled=True, reference=empty, target=empty, agreement=empty)
    write_accuracy(result, DetectionSet(), DetectionSet(), ImageSet(()), ["a"], tmp_path, pictures=0, model="m")
    raw = _strict((tmp_path / "accuracy.json").read_text())
    assert raw["reference.ap"] is None
    assert raw["reference.ap_reason"] == "NaN: no detections on the 2 evaluated image(s)."
    assert raw["drop.ap"] is None
    assert raw["drop.ap_reason"].startswith("NaN: ")
    assert raw["agreement_ap"] is None
    assert raw["agreement_ap_reason"].startswith("NaN: ")
    assert math.isnan(jsonio.read_json(tmp_path / "accuracy.json")["target.ap"])


def test_cache_entries_round_trip_non_finite_metrics(tmp_path: Path) -> None:
    cache = StageCache(tmp_path)
    file = cache.save_json("compare", "k", {"sqnr_db": math.inf, "cosine": math.nan})
    _strict(file.read_text())
    back = cache.load_json("compare", "k")
    assert back is not None
    assert back["sqnr_db"] == math.inf
    assert math.isnan(back["cosine"])
