"""The local model: same values as the QDQ model when fed its own tensors, DQ(Q(reference)) semantics otherwise."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx
import pytest

from qc.diagnose.local import LOCAL_SUFFIX, REF_SUFFIX, LocalModel, build_local_model, stream_local
from qc.diagnose.qdq import activation_quantizers
from qc.runners.base import TensorDict
from qc.runners.ort import OrtRunner, describe
from tests.unit.diagnose.conftest import TinyQdq, float_tensors, run_model


def _local(tiny: TinyQdq) -> tuple[onnx.ModelProto, onnx.ModelProto, LocalModel]:
    reference = onnx.load(str(tiny.reference))
    target = onnx.load(str(tiny.target))
    _, infos = describe(reference)
    return reference, target, build_local_model(target, infos, "tiny")


def test_every_activation_quantizer_reads_a_reference_input_and_weights_keep_their_qdq(tiny_qdq: TinyQdq) -> None:
    _, target, local = _local(tiny_qdq)
    graph = local.model.graph
    inputs = {i.name for i in graph.input}
    activation_qs = [n for n in graph.node if n.op_type == "QuantizeLinear" and not n.name.endswith(LOCAL_SUFFIX)]
    initializers = {i.name for i in graph.initializer}
    for q in activation_qs:
        assert q.input[0] in inputs or q.input[0] in initializers, q.name
    assert {"relu1" + REF_SUFFIX, "box" + REF_SUFFIX, "score" + REF_SUFFIX} <= inputs
    weights_dq = [n for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] in initializers]
    assert len(weights_dq) == sum(
        1 for n in target.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in initializers
    )
    # the renamed graph output (the producer writes pred_QuantizeLinear_Input) maps back to the reference 'pred'
    assert local.reference_of["pred_QuantizeLinear_Input"] == "pred"
    assert local.outputs["pred_QuantizeLinear_Input"] == "pred_QuantizeLinear_Input" + LOCAL_SUFFIX
    onnx.checker.check_model(local.model)


def test_fed_the_targets_own_tensors_the_local_model_reproduces_the_target(tiny_qdq: TinyQdq) -> None:
    _, target, local = _local(tiny_qdq)
    dequantized = describe(target)[0].dequantized
    for seed in range(3):
        feed = tiny_qdq.feed(seed)
        own = run_model(target, feed, float_tensors(target))
        out = run_model(local.model, {name: own[tensor] for name, tensor in local.feeds.items()})
        assert local.quantized
        for tensor in local.quantized:
            np.testing.assert_array_equal(out[local.outputs[tensor]], own[dequantized[tensor]], err_msg=tensor)
        for tensor, name in local.outputs.items():
            if tensor not in local.quantized:
                np.testing.assert_array_equal(out[name], own[tensor], err_msg=tensor)


def _close_in_steps(actual: np.ndarray, expected: np.ndarray, step: float) -> None:
    """Equal but for float32 ulps across a rounding boundary: at most one step, on under 1% of the values."""
    diff = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
    assert float(diff.max()) <= step * 1.001
    assert float(np.mean(diff > 1e-6)) < 0.01


def test_fed_reference_tensors_each_layer_is_quantized_at_its_own_quantizers(tiny_qdq: TinyQdq) -> None:
    reference, target, local = _local(tiny_qdq)
    _, infos = describe(reference)
    fq = {q.reference: q for q in activation_quantizers(target, infos, "tiny") if q.reference}
    feed = tiny_qdq.feed(7)
    ref = run_model(reference, feed, float_tensors(reference))
    out = run_model(local.model, {name: ref[local.reference_of[t]] for name, t in local.feeds.items()})

    def local_value(name: str) -> np.ndarray:
        target_name = next(t for t, r in local.reference_of.items() if r == name and t in local.outputs)
        return out[local.outputs[target_name]]

    # Sigmoid: the reference raw scores quantized at raw_score's quantizer, then the output quantizer of 'score'
    raw = fq["raw_score"].fake_quant(ref["raw_score"])
    expected_score = fq["score"].fake_quant((1.0 / (1.0 + np.exp(-raw.astype(np.float64)))).astype(np.float32))
    _close_in_steps(local_value("score"), expected_score, fq["score"].step)
    # Concat: each reference input at its own quantizer, the result at the output quantizer of 'pred'
    joined = np.concatenate([fq["box"].fake_quant(ref["box"]), fq["score"].fake_quant(ref["score"])], axis=1)
    _close_in_steps(local_value("pred"), fq["pred"].fake_quant(joined), fq["pred"].step)
    # the graph input: its own quantization error only
    np.testing.assert_array_equal(local_value("images"), fq["images"].fake_quant(ref["images"]))


class Counting(OrtRunner):
    def __init__(self, name: str, path: Path) -> None:
        super().__init__(name, path)
        self.runs = 0
        self.runs_all = 0

    def run(self, feeds: Mapping[str, np.ndarray]) -> TensorDict:
        self.runs += 1
        return super().run(feeds)

    def run_all(self, feeds: Mapping[str, np.ndarray]) -> TensorDict:
        self.runs_all += 1
        return super().run_all(feeds)


def test_one_reference_run_all_and_one_local_run_per_image(tiny_qdq: TinyQdq, tmp_path: Path) -> None:
    _, _, local = _local(tiny_qdq)
    path = tmp_path / "local.onnx"
    onnx.save(local.model, str(path))
    reference = Counting("reference", tiny_qdq.reference)
    runner = Counting("local", path)
    rows = [(t.index, t.name, t.op_type) for t in reference.graph().tensors]
    feeds = ((i, tiny_qdq.feed(i)) for i in range(5))
    seen: list[int] = []
    result = stream_local("tiny", reference, runner, local, rows, feeds, {}, [lambda ref: seen.append(len(ref))])
    assert (reference.runs_all, reference.runs, runner.runs, runner.runs_all) == (5, 0, 5, 0)
    assert (result.images, result.reference_runs, result.local_runs) == (5, 5, 5)
    assert len(seen) == 5
    by = result.by_tensor()
    assert by["images"].quantized
    assert by["images"].metrics.sqnr_db_mean > 30
    # boxes (x100) and 0..1 scores share one int8 scale in 'pred': the score channels collapse locally
    pred = by["pred"]
    assert pred.channels is not None
    assert pred.channels.axis == 1
    assert pred.channels.collapsed == 2
    assert pred.channels.collapsed_first == (4, 5)
    assert pred.metrics.cosine_mean > 0.99  # while the whole tensor looks fine
    assert pred.worst_sqnr_db() < 3.0
    assert all(not math.isnan(r.metrics.cosine_mean) for r in result.rows if r.tensor != "pred")


def test_local_memory_does_not_grow_with_images(tiny_qdq: TinyQdq, tmp_path: Path) -> None:
    import tracemalloc

    _, _, local = _local(tiny_qdq)
    path = tmp_path / "local.onnx"
    onnx.save(local.model, str(path))
    reference, runner = OrtRunner("reference", tiny_qdq.reference), OrtRunner("local", path)
    rows = [(t.index, t.name, t.op_type) for t in reference.graph().tensors]
    stream_local("tiny", reference, runner, local, rows, ((i, tiny_qdq.feed(i)) for i in range(1)), {})

    def peak(n: int) -> int:
        tracemalloc.start()
        stream_local("tiny", reference, runner, local, rows, ((i, tiny_qdq.feed(i)) for i in range(n)), {})
        value = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return value

    small, large = peak(2), peak(20)
    assert large < small * 1.5 + 256 * 1024, (small, large)


def test_a_model_without_quantizers_has_nothing_local_to_measure(tiny_qdq: TinyQdq) -> None:
    reference = onnx.load(str(tiny_qdq.reference))
    _, infos = describe(reference)
    local = build_local_model(reference, infos, "tiny")
    assert not local.quantized
    out = run_model(
        local.model,
        {n: np.ones((1, 3, 32, 32), np.float32) for n in local.feeds if n == "images"}
        | {
            n: np.zeros([d.dim_value for d in i.type.tensor_type.shape.dim], np.float32)
            for i in local.model.graph.input
            if (n := i.name) != "images"
        },
    )
    assert set(out) == set(local.outputs.values())


@pytest.mark.parametrize("bad", ["computed scale"])
def test_a_scale_read_from_a_computed_tensor_is_a_one_line_error(tiny_qdq: TinyQdq, bad: str) -> None:
    from qc.errors import ModelError

    target = onnx.load(str(tiny_qdq.target))
    q = next(n for n in target.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "score")
    q.input[1] = "relu1"
    with pytest.raises(ModelError, match=r"tiny: QuantizeLinear .* of tensor 'score' reads its scale 'relu1'"):
        activation_quantizers(target, ["score"], "tiny")
