"""``qc calibrate`` on the real demo detector, with a two-setting sweep to stay fast: whole graph int8 (the decode
collapses: no detections) against 16-bit activations (within budget)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from qc import calibrate as cal
from qc.assets import AssetPaths
from qc.cache import StageCache
from qc.config import load_models
from qc.pipeline import Context, ModelStages

REPO = Path(__file__).resolve().parents[2]


def test_sweep_through_the_cached_stages_fits_and_writes(
    demo_assets: AssetPaths, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        cal,
        "SWEEP",
        {
            "per_channel": (True,),
            "activation_quantizer": ("tf",),
            "activation_bitwidth": (8, 16),
            "bias_bitwidth": (32,),
        },
    )
    spec = next(s for s in load_models(REPO / "models.yaml") if s.name == "yolov3-tiny-int8")
    ctx = Context(StageCache(tmp_path / "cache"), tmp_path / "reports")
    lines: list[str] = []
    run = cal.calibrate([ModelStages(spec, ctx)], ctx, also=(0.5,), progress=lines.append)
    (fit,) = run.fits
    assert [p.variant for p in fit.points] == ["pc-tf-a8-b32", "pc-tf-a16-b32"]
    int8, a16 = fit.points
    assert fit.over_budget(int8)  # the collapsed decode finds nothing: both labelled gates fail
    assert int8.labelled_failing == ["map_drop", "map50_drop"]
    assert a16.metrics["ap_drop"] < 0.04
    assert a16.metrics["agreement_ap"] > 0.9
    assert not fit.over_budget(a16)
    # no detections fail the agreement gate at any threshold: nothing to push the fitted value up
    assert fit.threshold == 0.0
    assert fit.counts[0.5] == (0, 0)
    assert len(lines) == 2
    written = cal.write_outputs(run, tmp_path / "out", "qc calibrate")
    rows = list(csv.DictReader(written[0].open()))
    assert [r["variant"] for r in rows] == ["pc-tf-a16-b32", "pc-tf-a8-b32"]
    # a second run is answered from the stage cache: nothing is quantized again
    ctx.cache.misses.clear()
    again = cal.calibrate([ModelStages(spec, ctx)], ctx)
    assert not [m for m in ctx.cache.misses if m.startswith(("quantized", "accuracy"))]
    assert again.fits[0].points[1].metrics == a16.metrics
