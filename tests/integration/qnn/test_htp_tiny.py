"""qc.qnn on the real HTP simulator with tiny models (about a second each)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from qc.config import QuantSettings
from qc.errors import ModelError
from qc.qnn.context import context_session, export_context_binary
from qc.qnn.expose import expose_activations, max_abs_change
from qc.qnn.profile import onnx_node_types, read_htp_profile
from qc.qnn.quantize import quantize_htp
from qc.qnn.session import (
    HtpOptions,
    HtpUnsupportedError,
    create_htp_session,
    htp_support_findings,
    run_session,
)

pytestmark = pytest.mark.usefixtures("htp_backend")
SHAPE = (1, 3, 16, 16)


def _float_model(path: Path, with_sigmoid: bool = False) -> Path:
    """x -> Conv(conv0) -> Relu(relu0) [-> Sigmoid(sig0)] -> y."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array((rng.standard_normal((8, 3, 3, 3)) * 0.3).astype(np.float32), "W"),
        numpy_helper.from_array((rng.standard_normal(8) * 0.1).astype(np.float32), "B"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "W", "B"], ["c"], name="conv0", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r" if with_sigmoid else "y"], name="relu0"),
    ]
    if with_sigmoid:
        nodes.append(helper.make_node("Sigmoid", ["r"], ["y"], name="sig0"))
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(SHAPE))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _feeds(n: int, seed: int = 1) -> Iterator[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    for _ in range(n):
        yield {"x": rng.random(SHAPE, dtype=np.float32)}


def _cpu(model: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(["y"], feeds)[0])


def _output_scale(model: Path) -> float:
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(model))
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    (dq,) = [n for n in m.graph.node if n.op_type == "DequantizeLinear" and n.output[0] == "y"]
    return float(inits[dq.input[1]])


@pytest.fixture(scope="module")
def tiny_qdq(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("htp-tiny")
    out = folder / "qdq.onnx"
    assert quantize_htp(_float_model(folder / "f32.onnx"), QuantSettings(), _feeds(4), out, "tiny") == 4
    return out


def test_qdq_runs_entirely_on_htp_within_one_step_of_cpu(tiny_qdq: Path) -> None:
    session = create_htp_session(tiny_qdq, HtpOptions(), entry="tiny")
    assert session.get_providers()[0] == "QNNExecutionProvider"
    feeds = next(_feeds(1, seed=7))
    htp = run_session(session, feeds)["y"]
    cpu = _cpu(tiny_qdq, feeds)
    step = _output_scale(tiny_qdq)
    diff = np.abs(htp - cpu)
    assert diff.max() <= 1.01 * step  # HTP's fixed-point requantization: at most one output step apart
    assert np.count_nonzero(diff) < diff.size  # and mostly identical


def test_profile_maps_htp_ops_to_onnx_nodes(tiny_qdq: Path, tmp_path: Path) -> None:
    csv = tmp_path / "profile.csv"
    csv.write_text("left over from an earlier session\n", encoding="utf-8")  # replaced, not appended to
    session = create_htp_session(tiny_qdq, HtpOptions(profiling="detailed", profile_path=csv))
    for feeds in _feeds(2):
        run_session(session, feeds)
    del session
    profile = read_htp_profile(csv, onnx_node_types(tiny_qdq))
    assert profile.runs == 2
    mapped = {op.onnx_node: op for op in profile.ops if op.onnx_node}
    assert mapped["conv0"].op_type == "Conv"
    assert mapped["conv0"].cycles > 0
    assert any(op.inserted and op.op_type == "Transpose" for op in profile.ops)  # NCHW <-> NHWC layout ops
    assert {io.kind for io in profile.io} == {"input", "output"}
    total = sum(op.cycles for op in profile.ops) + sum(io.cycles for io in profile.io)
    assert total == pytest.approx(profile.accelerator_cycles)


def test_context_binary_runs_back_with_identical_outputs(tiny_qdq: Path, tmp_path: Path) -> None:
    context = export_context_binary(tiny_qdq, tmp_path / "ctx" / "tiny.bin", HtpOptions(), entry="tiny")
    assert context.binaries == (tmp_path / "ctx" / "tiny.bin",)
    assert context.binaries[0].stat().st_size > 0
    assert context.model == tmp_path / "ctx" / "tiny.onnx"
    assert context.sdk_version.startswith("v2.")
    assert sorted(p.name for p in (tmp_path / "ctx").iterdir()) == ["tiny.bin", "tiny.onnx"]
    feeds = next(_feeds(1, seed=3))
    direct = run_session(create_htp_session(tiny_qdq), feeds)["y"]
    from_binary = run_session(context_session(context), feeds)["y"]
    np.testing.assert_array_equal(direct, from_binary)


def test_exposed_activations_run_on_htp(tiny_qdq: Path, tmp_path: Path) -> None:
    exposed = tmp_path / "exposed.onnx"
    names = expose_activations(tiny_qdq, exposed)
    assert names == ["x_DequantizeLinear_Output"]
    feeds = next(_feeds(1, seed=5))
    deployed = run_session(create_htp_session(tiny_qdq), feeds)
    both = run_session(create_htp_session(exposed), feeds)
    assert max_abs_change(deployed, {"y": both["y"]}) <= _output_scale(tiny_qdq)
    np.testing.assert_allclose(both[names[0]], feeds["x"], atol=1 / 255)  # the input, dequantized (8 bits)


def test_sixteen_bit_activations_with_sigmoid_run_on_htp(tmp_path: Path) -> None:
    out = tmp_path / "a16.onnx"
    reference = _float_model(tmp_path / "f32.onnx", with_sigmoid=True)
    quantize_htp(reference, QuantSettings(activation_bitwidth=16), _feeds(4), out, "a16")
    feeds = next(_feeds(1, seed=9))
    htp = run_session(create_htp_session(out), feeds)["y"]
    scale = _output_scale(out)
    assert scale == pytest.approx(1 / 65536)  # the fixed 16-bit Sigmoid encoding HTP requires
    np.testing.assert_allclose(htp, _cpu(out, feeds), atol=8 * scale)  # measured: at most 4 steps apart


def test_float_graph_runs_in_fp16(tmp_path: Path) -> None:
    model = _float_model(tmp_path / "f32.onnx")
    feeds = next(_feeds(1, seed=11))
    cpu = _cpu(model, feeds)
    fp16 = run_session(create_htp_session(model, HtpOptions()), feeds)["y"]
    np.testing.assert_allclose(fp16, cpu, rtol=1e-2, atol=1e-2)
    assert not np.array_equal(fp16, cpu)  # fp16 arithmetic, not an fp32 run


def test_refused_nodes_are_named_as_error_and_findings(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu_a"),
        helper.make_node("Det", ["r"], ["d"], name="det_b"),
        helper.make_node("Abs", ["d"], ["y"], name="abs_c"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "det.onnx"
    onnx.save(model, str(path))
    with pytest.raises(HtpUnsupportedError) as info:
        create_htp_session(path, entry="det-model")
    message = str(info.value)
    assert "det-model:" in message
    assert "det_b (Det)" in message
    assert "never falls back to the CPU" in message
    assert [(f.rule, f.node, f.op_type) for f in info.value.findings] == [("htp-unsupported", "det_b", "Det")]
    assert "not supported by QNN EP" in info.value.findings[0].why
    assert [(f.node, f.op_type, f.severity) for f in htp_support_findings(path)] == [("det_b", "Det", "error")]
    assert htp_support_findings(_float_model(tmp_path / "ok.onnx")) == []


def test_an_unknown_soc_model_is_a_model_error_with_qnns_reason(tiny_qdq: Path) -> None:
    with pytest.raises(ModelError, match="soc_model 9999") as info:
        create_htp_session(tiny_qdq, HtpOptions(soc_model=9999), entry="tiny")
    assert not isinstance(info.value, HtpUnsupportedError)
    assert "QNN_DEVICE_ERROR_INVALID_CONFIG" in str(info.value)
