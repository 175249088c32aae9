"""Host simulation, step 2 (insert): onnxruntime's ``quantize_static`` with the planned overrides, then the graph
surgery it cannot do itself: Q/DQ pairs removed from float tensors, inserted on exact tensors onnxruntime skipped,
float weights restored."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from qc.errors import ModelError
from qc.snpe.hostsim.plan import _SIGNED_ZP_TYPES, _ZP_TYPES, EncodingPlan, HostSimResult

# ----------------------------------------------------------------------------------------------------------------
# Graph surgery after quantize_static


def _consumers(graph: Any, name: str) -> list[tuple[Any, int]]:
    return [(n, k) for n in graph.node for k, i in enumerate(n.input) if i == name]


def _strip_qdq(model: Any, tensor: str) -> bool:
    """Remove the Q/DQ pair(s) on ``tensor`` (consumers read the float tensor again). True when one was there."""
    graph = model.graph
    outputs = {o.name for o in graph.output}
    float_name = tensor
    if tensor in outputs:  # onnxruntime renamed the producer's output to <t>_QuantizeLinear_Input; DQ writes <t>
        dq = next((n for n in graph.node if n.op_type == "DequantizeLinear" and n.output[0] == tensor), None)
        if dq is None:
            return False
        q = next((n for n in graph.node if n.op_type == "QuantizeLinear" and n.output[0] == dq.input[0]), None)
        if q is None:
            return False
        float_name = q.input[0]
        for node in graph.node:
            for k, out in enumerate(node.output):
                if out == float_name:
                    node.output[k] = tensor
            for k, inp in enumerate(node.input):
                if inp == float_name and node is not q:
                    node.input[k] = tensor
        q.input[0] = tensor
    quants = [n for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] == tensor]
    if not quants:
        return False
    removed = []
    for q in quants:
        for dq, _ in _consumers(graph, q.output[0]):
            if dq.op_type != "DequantizeLinear":
                continue
            for node, k in _consumers(graph, dq.output[0]):
                node.input[k] = tensor
            removed.append(dq)
        if not [n for n, _ in _consumers(graph, q.output[0]) if n not in removed]:
            removed.append(q)
    keep = [n for n in graph.node if all(n is not r for r in removed)]
    del graph.node[:]
    graph.node.extend(keep)
    return True


def _insert_qdq(
    model: Any, tensor: str, scale: float, zero_point: int, zp_type: type[np.integer[Any]], contrib: bool
) -> None:
    """Q/DQ with the given encoding after ``tensor`` (every consumer, and a graph output, read the DQ output)."""
    from onnx import helper, numpy_helper

    graph = model.graph
    stem = f"{tensor}__qc_sim"
    graph.initializer.append(numpy_helper.from_array(np.array(scale, np.float32), f"{stem}_scale"))
    graph.initializer.append(numpy_helper.from_array(np.array(zero_point, zp_type), f"{stem}_zero_point"))
    domain = "com.microsoft" if contrib else ""
    if tensor in {o.name for o in graph.output}:
        src, dst = f"{stem}_float", tensor
        for node in graph.node:
            for k, out in enumerate(node.output):
                if out == tensor:
                    node.output[k] = src
            for k, inp in enumerate(node.input):
                if inp == tensor:
                    node.input[k] = src
    else:
        src, dst = tensor, f"{stem}_dq"
        for node, k in _consumers(graph, tensor):
            node.input[k] = dst
    args = [f"{stem}_scale", f"{stem}_zero_point"]
    graph.node.append(helper.make_node("QuantizeLinear", [src, *args], [f"{stem}_q"], f"{stem}_Q", domain=domain))
    graph.node.append(helper.make_node("DequantizeLinear", [f"{stem}_q", *args], [dst], f"{stem}_DQ", domain=domain))
    _toposort(graph)


def _toposort(graph: Any) -> None:
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending = list(graph.node)
    ordered = []
    while pending:
        progress = False
        rest = []
        for node in pending:
            if all(i in available for i in node.input):
                ordered.append(node)
                available.update(node.output)
                progress = True
            else:
                rest.append(node)
        pending = rest
        if not progress:
            ordered.extend(pending)
            break
    del graph.node[:]
    graph.node.extend(ordered)


def _float_weights(model: Any, original: Any, names: set[str]) -> list[str]:
    """Replace the DequantizeLinear of the named weights by their original float initializer."""
    graph = model.graph
    inits = {i.name for i in graph.initializer}
    by_node = {n.name: n for n in original.graph.node if n.name}
    float_inits = {i.name: i for i in original.graph.initializer}
    outputs = {o.name for o in graph.output}
    restored: set[str] = set()
    drop: list[Any] = []
    for dq in [n for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits]:
        readers = _consumers(graph, dq.output[0])
        rewired = 0
        for node, k in readers:
            source = by_node.get(node.name)
            if source is None or k >= len(source.input) or source.input[k] not in names:
                continue
            node.input[k] = source.input[k]
            restored.add(source.input[k])
            rewired += 1
        if readers and rewired == len(readers) and dq.output[0] not in outputs:
            drop.append(dq)
    keep = [n for n in graph.node if all(n is not d for d in drop)]
    del graph.node[:]
    graph.node.extend(keep)
    live = {i for n in graph.node for i in n.input}
    kept_inits = [i for i in graph.initializer if i.name in live and i.name not in restored]
    kept_inits += [float_inits[name] for name in sorted(restored)]
    del graph.initializer[:]
    graph.initializer.extend(kept_inits)
    return sorted(restored)


def _input_feed(graph: Any) -> dict[str, np.ndarray]:
    inits = {i.name for i in graph.initializer}
    feed = {}
    for inp in graph.input:
        if inp.name in inits:
            continue
        dims = [
            d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 1 for d in inp.type.tensor_type.shape.dim
        ]
        feed[inp.name] = np.zeros(dims, np.float32)
    return feed


def quantize(
    model: Any,
    plan: EncodingPlan,
    calibration: Iterable[Mapping[str, np.ndarray]] | None,
    out: Path,
    entry: str,
    source_name: Path,
    *,
    contrib: bool,
) -> Any:
    """onnxruntime's ``quantize_static`` (QDQ, MinMax, per channel) with the plan's overrides; the quantized model."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    extra: dict[str, Any] = {
        "ActivationSymmetric": False,
        "WeightSymmetric": True,
        "QDQKeepRemovableActivations": True,
        "TensorQuantOverrides": plan.overrides,
    }
    if contrib:
        extra["UseQDQContribOps"] = True
    feeds = iter(calibration) if calibration is not None else iter([_input_feed(model.graph)])
    count = 0

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def get_next(self) -> dict[str, np.ndarray] | None:
            nonlocal count
            item = next(feeds, None)
            if item is None:
                return None
            count += 1
            return dict(item)

    op_types = sorted({n.op_type for n in model.graph.node} - {"Constant"})
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.onnx")
    with tempfile.TemporaryDirectory(prefix="qc-hostsim-", dir=out.parent) as work:
        source = Path(work) / "model.onnx"
        onnx.save(model, str(source))
        try:
            quantize_static(
                str(source),
                str(tmp),
                Reader(),
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=op_types,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=sorted(plan.exclude),
                calibrate_method=CalibrationMethod.MinMax,
                extra_options=extra,
            )
        except Exception as exc:
            tmp.unlink(missing_ok=True)
            raise ModelError(f"{entry}: onnxruntime quantize_static failed on {source_name}: {exc}") from None
    if count == 0:
        tmp.unlink(missing_ok=True)
        raise ModelError(f"{entry}: the calibration set produced no inputs; the host simulation needs at least one.")
    sim = onnx.load(str(tmp))
    tmp.unlink(missing_ok=True)
    return sim


def apply_surgery(sim: Any, original: Any, plan: EncodingPlan, result: HostSimResult, *, contrib: bool) -> None:
    """Float tensors lose any Q/DQ pair; exact tensors onnxruntime skipped get one; float weights are restored."""
    from qc.snpe.hostsim.verify import _qdq_params  # verify reads models back; imported here to avoid a cycle

    for name in plan.float_tensors:
        if _strip_qdq(sim, name):
            result.stripped.append(name)
    present = _qdq_params(sim)
    for name, (scale, zp, bits, _) in plan.exact_act.items():
        if name not in present:
            zp_type = (_SIGNED_ZP_TYPES if name in plan.signed else _ZP_TYPES)[bits]
            _insert_qdq(sim, name, scale, zp, zp_type, contrib)
            result.inserted.append(name)
    if plan.float_weights:
        _float_weights(sim, original, plan.float_weights)
