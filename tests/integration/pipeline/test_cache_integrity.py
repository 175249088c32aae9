"""Tampered stage cache entries on the real stages (onnxruntime): each is a warning naming the entry and the file,
and a rebuild that gives the true result, never a wrong metric, a passing FP32 "target" or a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from qc.assets import AssetPaths
from qc.cache import CacheWarning, StageCache
from qc.config import load_models
from qc.pipeline import Context, ModelStages
from tests.integration.pipeline.test_one_pass import ENTRY as DEMO_ENTRY
from tests.models import tiny_project


def _stages(folder: Path) -> ModelStages:
    spec = load_models(folder / "models.yaml")[0]
    return ModelStages(spec, Context(StageCache(folder / "cache"), folder / "reports"))


def _only(folder: Path, stage: str) -> Path:
    (entry,) = [p for p in (folder / "cache" / stage).iterdir() if p.is_dir()]
    return entry


def _quantized(path: Path) -> bool:
    return any(n.op_type == "QuantizeLinear" for n in onnx.load(str(path)).graph.node)


def test_a_changed_digit_in_a_cached_comparison_is_not_used(tmp_path: Path) -> None:
    tiny_project(tmp_path, [{"name": "tiny"}])
    first = _stages(tmp_path).comparison()
    result = _only(tmp_path, "comparison") / "result.json"
    data = json.loads(result.read_text())
    cosine = data["outputs"][0]["metrics"]["cosine_mean"]
    result.write_text(result.read_text().replace(repr(cosine), repr(cosine)[:-1] + "0", 1))
    assert result.read_text() != json.dumps(data, indent=1)
    with pytest.warns(CacheWarning, match=r"comparison/\w+ .*file result\.json changed"):
        again = _stages(tmp_path).comparison()
    assert again.to_json() == first.to_json()


def test_an_fp32_model_dropped_in_as_the_quantized_model_is_rebuilt(tmp_path: Path) -> None:
    tiny_project(tmp_path, [{"name": "tiny"}])
    first = _stages(tmp_path).comparison()
    model = _only(tmp_path, "quantized") / "model.int8.onnx"
    model.write_bytes((tmp_path / "tiny.onnx").read_bytes())  # the FP32 reference: every gate would pass
    for entry in (tmp_path / "cache" / "comparison").iterdir():  # recompute the comparison with that model
        if entry.is_dir():
            (entry / "manifest.json").unlink()
    with pytest.warns(CacheWarning) as caught:
        again = _stages(tmp_path).comparison()
    assert any("quantized/" in str(w.message) and "file model.int8.onnx has" in str(w.message) for w in caught)
    assert _quantized(model)
    assert again.to_json() == first.to_json()


def test_a_truncated_quantized_model_is_rebuilt_not_failed_on_every_rerun(tmp_path: Path) -> None:
    tiny_project(tmp_path, [{"name": "tiny"}])
    _stages(tmp_path).target()
    model = _only(tmp_path, "quantized") / "model.int8.onnx"
    model.write_bytes(model.read_bytes()[:200])
    with pytest.warns(CacheWarning, match=r"quantized/\w+ .*file model\.int8\.onnx has 200 bytes"):
        _stages(tmp_path).comparison()
    assert _quantized(model)


def test_a_truncated_detection_array_is_rebuilt_not_a_bad_zip_traceback(
    tmp_path: Path, demo_assets: AssetPaths
) -> None:
    (tmp_path / "models.yaml").write_text(DEMO_ENTRY.format(root=demo_assets.root))
    first = _stages(tmp_path).accuracy()
    npz = _only(tmp_path, "accuracy") / "target.npz"
    npz.write_bytes(npz.read_bytes()[:64])
    with pytest.warns(CacheWarning, match=r"accuracy/\w+ .*file target\.npz has 64 bytes"):
        again = _stages(tmp_path).accuracy()
    assert again.result.to_json() == first.result.to_json()
    assert {i: len(d) for i, d in again.target.by_image.items()} == {
        i: len(d) for i, d in first.target.by_image.items()
    }
