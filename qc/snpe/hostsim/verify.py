"""Host simulation, step 3 (verify): every exact encoding read back from the built model must equal the DLC's, and
no float tensor may carry a Q/DQ pair; a difference is a :class:`qc.errors.ModelError` naming the tensor."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from qc.errors import ModelError
from qc.snpe.hostsim.insert import _consumers
from qc.snpe.hostsim.plan import HostSimResult

# ----------------------------------------------------------------------------------------------------------------
# Reading the built model back


def _qdq_params(model: Any) -> dict[str, tuple[np.ndarray, np.ndarray, int | None]]:
    """tensor -> (scale, zero point, axis) of the QuantizeLinear reading it (graph outputs under their own name)."""
    from onnx import numpy_helper

    graph = model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    inits[node.output[0]] = numpy_helper.to_array(a.t)
    dq_of = {n.input[0]: n for n in graph.node if n.op_type == "DequantizeLinear"}
    found: dict[str, tuple[np.ndarray, np.ndarray, int | None]] = {}
    for q in graph.node:
        if q.op_type != "QuantizeLinear" or len(q.input) < 3:
            continue
        axis = next((int(a.i) for a in q.attribute if a.name == "axis"), None)
        params = (inits[q.input[1]], inits[q.input[2]], axis)
        dq = dq_of.get(q.output[0])
        name = q.input[0]
        if dq is not None and dq.output[0] in {o.name for o in graph.output}:
            name = dq.output[0]
        found[name] = params
    for dq in graph.node:  # quantized weights: an initializer read by a DequantizeLinear
        if dq.op_type == "DequantizeLinear" and dq.input[0] in inits and len(dq.input) >= 3:
            axis = next((int(a.i) for a in dq.attribute if a.name == "axis"), None)
            found[f"weight:{dq.output[0]}"] = (inits[dq.input[1]], inits[dq.input[2]], axis)
    return found


def _weight_params(model: Any, original: Any) -> dict[str, tuple[np.ndarray, np.ndarray, int | None]]:
    """Original weight name -> (scale, zero point, axis) of the DequantizeLinear its consumer reads."""
    from onnx import numpy_helper

    graph = model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    by_node = {n.name: n for n in original.graph.node if n.name}
    out: dict[str, tuple[np.ndarray, np.ndarray, int | None]] = {}
    for dq in graph.node:
        if dq.op_type != "DequantizeLinear" or dq.input[0] not in inits or len(dq.input) < 3:
            continue
        axis = next((int(a.i) for a in dq.attribute if a.name == "axis"), None)
        for node, k in _consumers(graph, dq.output[0]):
            source = by_node.get(node.name)
            if source is not None and k < len(source.input):
                out[source.input[k]] = (inits[dq.input[1]], inits[dq.input[2]], axis)
    return out


def verify(
    entry: str,
    sim: Any,
    original: Any,
    result: HostSimResult,
    exact_act: Mapping[str, tuple[float, int, int, str]],
    exact_weights: Mapping[str, tuple[list[float], list[int], int | None]],
    float_tensors: Sequence[str],
) -> None:
    """Every exact encoding read back from the model equals the DLC's; no float tensor is quantized."""
    params = _qdq_params(sim)
    weights = _weight_params(sim, original)
    problems: list[str] = []
    checked = 0
    for name, (scale, zp, _bits, dlc_name) in exact_act.items():
        found = params.get(name)
        if found is None:
            problems.append(f"tensor {name!r} (DLC {dlc_name!r}): expected a Q/DQ pair, found none")
            continue
        s, z, _ = found
        want = np.float32(scale)
        if s.size != 1 or z.size != 1 or np.float32(s.reshape(-1)[0]) != want or int(z.reshape(-1)[0]) != zp:
            problems.append(
                f"tensor {name!r} (DLC {dlc_name!r}): expected scale {float(want)!r}, zero point {zp}; found scale "
                f"{s.reshape(-1).tolist()}, zero point {z.reshape(-1).tolist()}"
            )
            continue
        checked += 1
    for name, (scales, zps, axis) in exact_weights.items():
        found = weights.get(name)
        if found is None:
            problems.append(f"weight {name!r}: expected a DequantizeLinear with the DLC encoding, found none")
            continue
        s, z, ax = found
        want_s = np.asarray(scales, np.float32)
        ok = (
            s.size == want_s.size
            and np.array_equal(s.astype(np.float32).reshape(-1), want_s)
            and np.array_equal(z.astype(np.int64).reshape(-1), np.asarray(zps, np.int64))
            and (axis is None or s.size == 1 or (ax if ax is not None else 1) == axis)
        )
        if not ok:
            problems.append(
                f"weight {name!r}: expected scales {want_s.tolist()[:4]}..., zero points {zps[:4]}... (axis {axis}); "
                f"found {s.reshape(-1).tolist()[:4]}..., {z.reshape(-1).tolist()[:4]}... (axis {ax})"
            )
            continue
        checked += 1
    for name in float_tensors:
        if name in params:
            problems.append(f"tensor {name!r}: expected float (no encoding in the DLC), found a Q/DQ pair")
    if problems:
        shown = "; ".join(problems[:10]) + (f"; ... {len(problems) - 10} more" if len(problems) > 10 else "")
        raise ModelError(f"{entry}: the host simulation does not carry the DLC's encodings: {shown}.")
    result.verified = checked
