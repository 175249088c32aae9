"""The stages on real onnxruntime: quantize, compare, cache; memory does not grow with images."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from qc.cache import StageCache
from qc.config import load_models
from qc.errors import ConfigError, ModelError
from qc.pipeline import Context, ModelStages
from tests.models import tiny_project, write_images


def _stages(folder: Path, name: str = "tiny", cache: Path | None = None) -> ModelStages:
    spec = next(s for s in load_models(folder / "models.yaml") if s.name == name)
    return ModelStages(spec, Context(StageCache(cache or folder / "cache"), folder / "reports"))


def test_comparison_covers_every_layer_output_and_slice(tmp_path: Path) -> None:
    tiny_project(tmp_path, [{"name": "tiny"}])
    result = _stages(tmp_path).comparison()
    assert result.images == 3
    names = [r.tensor for r in result.layers]
    assert names[0] == "images"  # the input's own quantization error is reported too
    assert {"relu1", "head", "box", "score", "pred"} <= set(names)
    # onnxruntime folds Relu into the quantized Conv and drops the tensor between them: listed, not an error
    assert [(u.tensor, u.op_type) for u in result.unmatched] == [("conv1", "Conv")]
    assert [r.index for r in result.layers] == sorted(r.index for r in result.layers)
    by_tensor = {r.tensor: r for r in result.layers}
    assert by_tensor["relu1"].target_tensor == "relu1_DequantizeLinear_Output"
    assert by_tensor["relu1"].op_type == "Relu"
    assert by_tensor["relu1"].shape == "1x8x32x32"
    assert 0.9 < by_tensor["relu1"].metrics.cosine_mean <= 1.0
    outputs = {r.output: r for r in result.outputs}
    assert set(outputs) == {"pred", "pred[boxes]", "pred[scores]"}
    assert outputs["pred[scores]"].shape == "1x2x16x16"
    # One int8 scale shared by boxes (~100s) and scores (0..1): the scores collapse to zero. Undefined, so failing.
    assert outputs["pred"].metrics.cosine_mean > 0.9
    assert outputs["pred[scores]"].metrics.undefined is not None
    assert "the target tensor is all zeros" in outputs["pred[scores]"].metrics.undefined


def test_sixteen_bit_activations_are_far_closer(tmp_path: Path) -> None:
    tiny_project(tmp_path, [{"name": "a8"}, {"name": "a16", "bits": 16}])
    a8 = _stages(tmp_path, "a8").comparison()
    a16 = _stages(tmp_path, "a16").comparison()
    s8 = {r.output: r.metrics for r in a8.outputs}
    s16 = {r.output: r.metrics for r in a16.outputs}
    assert s8["pred[scores]"].undefined is not None
    assert s16["pred[scores]"].undefined is None
    assert s16["pred[scores]"].cosine_mean > 0.99
    l8 = {r.tensor: r.metrics for r in a8.layers}
    l16 = {r.tensor: r.metrics for r in a16.layers}
    assert l16["images"].sqnr_db_mean > l8["images"].sqnr_db_mean + 30  # input quantization: 16 vs 8 bits
    assert all(r.metrics.undefined is None for r in a16.layers)


def test_warm_cache_does_no_quantization_and_no_inference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tiny_project(tmp_path, [{"name": "tiny"}])
    first = _stages(tmp_path).comparison()

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("a warm cache must not quantize or run a model")

    monkeypatch.setattr("qc.runners.quantize.quantize_int8", forbidden)
    monkeypatch.setattr("qc.runners.ort.OrtRunner.run", forbidden)
    monkeypatch.setattr("qc.runners.ort.OrtRunner.run_all", forbidden)
    stages = _stages(tmp_path)
    second = stages.comparison()
    assert json.dumps(second.to_json()) == json.dumps(first.to_json())
    assert stages.ctx.cache.hits
    assert not stages.ctx.cache.misses


def test_changed_input_invalidates_the_cache(tmp_path: Path) -> None:
    tiny_project(tmp_path, [{"name": "tiny"}])
    first = _stages(tmp_path).comparison()
    write_images(tmp_path / "eval", 4, seed=9)  # one more image, others changed
    second = _stages(tmp_path).comparison()
    assert second.images == 4
    assert json.dumps(second.to_json()) != json.dumps(first.to_json())


def test_refresh_rebuilds_entries_written_before_the_session(tmp_path: Path) -> None:
    tiny_project(tmp_path, [{"name": "tiny"}])
    _stages(tmp_path).comparison()
    spec = load_models(tmp_path / "models.yaml")[0]
    import time

    stages = ModelStages(spec, Context(StageCache(tmp_path / "cache", refresh_since=time.time() + 1), tmp_path))
    stages.comparison()
    assert not stages.ctx.cache.hits


def _peak_bytes(folder: Path, images: int) -> int:
    write_images(folder / "eval", images, seed=3)
    stages = _stages(folder, cache=folder / f"cache{images}")
    stages.target()  # quantize outside the measurement
    stages.reference.graph()
    tracemalloc.start()
    stages.comparison()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def test_peak_memory_does_not_grow_with_image_count(tmp_path: Path) -> None:
    tiny_project(tmp_path, [{"name": "tiny"}])
    small = _peak_bytes(tmp_path, 2)
    for f in (tmp_path / "eval").iterdir():
        f.unlink()
    large = _peak_bytes(tmp_path, 24)
    assert large < small * 1.5 + 256 * 1024, (small, large)


def test_bad_preprocess_size_and_float_node_names_are_one_line_errors(tmp_path: Path) -> None:
    path = tiny_project(tmp_path, [{"name": "tiny"}])
    path.write_text(path.read_text().replace("size: [32, 32]", "size: [64, 32]"))
    with pytest.raises(ModelError, match=r"tiny: preprocess.size \[64, 32\] does not fit input 'images'"):
        _stages(tmp_path).comparison()
    path.write_text(
        path.read_text()
        .replace("size: [64, 32]", "size: [32, 32]")
        .replace("activation_bitwidth: 8", "activation_bitwidth: 8, float_nodes: [nope]")
    )
    with pytest.raises(ConfigError, match=r"tiny: target\.float_nodes: no node named 'nope'"):
        _stages(tmp_path).comparison()


def test_float_downstream_keeps_the_decode_in_float(tmp_path: Path) -> None:
    path = tiny_project(tmp_path, [{"name": "tiny"}])
    path.write_text(
        path.read_text().replace("activation_bitwidth: 8", "activation_bitwidth: 8, float_downstream_of: [head]")
    )
    result = _stages(tmp_path).comparison()
    by = {r.tensor: r for r in result.layers}
    assert by["box"].target_tensor == "box"  # left in float: same name
    assert by["relu1"].target_tensor.endswith("_DequantizeLinear_Output")
    scores = next(r for r in result.outputs if r.output == "pred[scores]")
    assert scores.metrics.cosine_mean > 0.9


def test_an_onnx_target_that_produces_nan_fails_with_a_reason(tmp_path: Path) -> None:
    import onnx
    from onnx import helper

    path = tiny_project(tmp_path, [{"name": "tiny"}])
    model = onnx.load(str(tmp_path / "tiny.onnx"))
    # a broken "converted" model: log(-1) in the score branch gives NaN
    for node in model.graph.node:
        if node.name == "score_sigmoid":
            node.op_type = "Log"
    model.graph.node.insert(0, helper.make_node("Neg", ["images"], ["neg_images"], name="neg"))
    onnx.save(model, str(tmp_path / "broken.onnx"))
    text = path.read_text().replace("{kind: ort-int8, activation_bitwidth: 8}", "{kind: onnx, model: broken.onnx}")
    path.write_text(text.replace("    calibration: {folder: calib}\n", ""))
    result = _stages(tmp_path).comparison()
    scores = next(r for r in result.outputs if r.output == "pred[scores]")
    assert scores.metrics.undefined is not None
    assert "NaN or Inf in the target tensor" in scores.metrics.undefined
    assert np.isnan(scores.metrics.cosine_mean)


def test_initializer_named_like_a_quantizer_scale_does_not_corrupt_the_target(tmp_path: Path) -> None:
    """onnxruntime's quantizer names the scale of tensor ``box`` ``box_scale``; a constant of that name was
    silently replaced by it (target boxes clipped to [-500, 0], cosine 0.987). qc renames such constants first."""
    from tests.models import tiny_detector

    tiny_project(tmp_path, [{"name": "tiny", "bits": 16}])
    tiny_detector(tmp_path / "tiny.onnx", gain_name="box_scale")
    result = _stages(tmp_path).comparison()
    by = {r.tensor: r for r in result.layers}
    assert by["box"].metrics.cosine_mean > 0.9999


def test_int16_tensors_rescue_the_shared_output_scale(tmp_path: Path) -> None:
    """Mixed precision: only the concatenated output at 16 bits keeps the 0..1 scores beside the large boxes."""
    path = tiny_project(tmp_path, [{"name": "tiny"}])
    path.write_text(path.read_text().replace("activation_bitwidth: 8", "activation_bitwidth: 8, int16_tensors: [pred]"))
    result = _stages(tmp_path).comparison()
    scores = next(r for r in result.outputs if r.output == "pred[scores]")
    assert scores.metrics.undefined is None
    assert scores.metrics.cosine_mean > 0.99
    by = {r.tensor: r for r in result.layers}
    assert by["relu1"].metrics.sqnr_db_mean < 60  # the rest stays 8-bit
    path.write_text(path.read_text().replace("int16_tensors: [pred]", "int16_tensors: [nope]"))
    with pytest.raises(ConfigError, match=r"target\.int16_tensors: no tensor named 'nope'"):
        _stages(tmp_path).comparison()
