"""One target pass per image on ``ort-int8`` (real onnxruntime, the demo detector): a cold comparison + accuracy
runs the target's ``run_all`` and ``run`` once per image each (the accuracy scores the deployed ``run`` outputs the
comparison computed), the reference once; both results are cached, whichever stage is asked first."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from qc.assets import AssetPaths
from qc.cache import StageCache
from qc.config import load_models
from qc.pipeline import Context, ModelStages
from qc.runners.ort import OrtRunner

ENTRY = """\
models:
  - name: demo-a16
    reference: {root}/yolov3-tiny-coco.onnx
    target: {{kind: ort-int8, activation_bitwidth: 16}}
    preprocess: {{size: [416, 416], mode: letterbox, pad_value: 127.5, scale: 0.00392156862745098}}
    eval_data: {{coco: {{annotations: {root}/eval/annotations.json, images: {root}/eval/images}}, limit: 3}}
    calibration: {{folder: {root}/calibration, limit: 2}}
    task: {{decoder: yolo-decoded, outputs: [yolo_decoded], class_names: {root}/darknet/coco.names, pictures: 0}}
"""


def _count_runs(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    calls: Counter[str] = Counter()
    run, run_all = OrtRunner.run, OrtRunner.run_all

    def counted_run(self: OrtRunner, feeds: Any) -> Any:
        calls[f"{self.name.split('(')[-1].rstrip(')')}.run"] += 1
        return run(self, feeds)

    def counted_run_all(self: OrtRunner, feeds: Any) -> Any:
        calls[f"{self.name.split('(')[-1].rstrip(')')}.run_all"] += 1
        return run_all(self, feeds)

    monkeypatch.setattr(OrtRunner, "run", counted_run)
    monkeypatch.setattr(OrtRunner, "run_all", counted_run_all)
    return calls


@pytest.mark.parametrize("first", ["comparison", "accuracy"])
def test_a_cold_comparison_and_accuracy_run_the_target_once_per_image(
    tmp_path: Path, demo_assets: AssetPaths, monkeypatch: pytest.MonkeyPatch, first: str
) -> None:
    (tmp_path / "models.yaml").write_text(ENTRY.format(root=demo_assets.root))
    spec = load_models(tmp_path / "models.yaml")[0]
    stages = ModelStages(spec, Context(StageCache(tmp_path / "cache"), tmp_path / "reports"))
    stages.target()  # quantization (calibration runs) is not part of the image pass
    calls = _count_runs(monkeypatch)
    if first == "comparison":
        comparison, (result, _, _) = stages.comparison(), stages.accuracy()
    else:
        (result, _, _), comparison = stages.accuracy(), stages.comparison()
    n = 3
    assert comparison.images == n
    assert result.images == n
    # the target: every tensor once (run_all) and its deployed outputs once (run); the reference: run_all only
    assert dict(calls) == {"target.run_all": n, "target.run": n, "reference.run_all": n}
    misses = [m.split("/")[0] for m in stages.ctx.cache.misses]
    assert sorted(misses) == ["accuracy", "comparison", "quantized"]  # the second stage was a cache hit


def test_the_shared_pass_scores_what_the_accuracy_stage_alone_scores(tmp_path: Path, demo_assets: AssetPaths) -> None:
    """The accuracy from the shared pass (reference outputs from run_all, target outputs from run) equals the
    accuracy stage run alone (reference run, target run) once the comparison is cached."""
    (tmp_path / "models.yaml").write_text(ENTRY.format(root=demo_assets.root))
    spec = load_models(tmp_path / "models.yaml")[0]
    shared = ModelStages(spec, Context(StageCache(tmp_path / "c1"), tmp_path / "reports")).accuracy()
    alone_stages = ModelStages(spec, Context(StageCache(tmp_path / "c2"), tmp_path / "reports"))
    alone_stages.comparison()  # caches both ...
    for entry in (tmp_path / "c2" / "accuracy").iterdir():  # ... so drop the accuracy to compute it alone
        if entry.is_dir():
            for f in entry.iterdir():
                f.unlink()
    alone = alone_stages.accuracy()
    assert shared.result.target is not None
    assert alone.result.target is not None
    assert shared.result.target.ap == pytest.approx(alone.result.target.ap, abs=1e-9)
    assert shared.result.agreement.ap == pytest.approx(alone.result.agreement.ap, abs=1e-6)
    assert {i: len(d) for i, d in shared.target.by_image.items()} == {
        i: len(d) for i, d in alone.target.by_image.items()
    }
