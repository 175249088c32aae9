"""Per-layer tensors on the HTP: the dequantized activations of a QDQ model as extra graph outputs.

Only DequantizeLinear nodes whose data input is an activation are exposed: exposing a weight's DequantizeLinear
output makes the HTP refuse the node (the QNN EP folds weight dequantization into its consumer).

Nor, by default, the input of an activation the HTP fuses into the op before it (Conv -> Q/DQ -> LeakyRelu: the
Conv's own quantized output never exists in the prepared graph). Exposing it forces the HTP to materialize and
requantize it, which changes every tensor after it: on the demo YOLOv3-tiny (decode in float) exposing all 31
activations changed the raw heads by up to 9.3 (most elements) and the decoded boxes by up to 223, while exposing
the 20 others left every final output bit-identical (whole-graph int8: 46 of 57, also bit-identical). Final
outputs, accuracy and agreement still come from the graph as deployed; :func:`max_abs_change` measures what
exposing changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from qc.errors import MetricError, ModelError

_DQ = "DequantizeLinear"
# Activations HTP fuses into the op that produces their input (measured for Relu and LeakyRelu after Conv; the
# others are left out on the same ground).
FUSED_ACTIVATIONS = frozenset({"Relu", "LeakyRelu", "Clip", "PRelu", "HardSigmoid", "HardSwish"})


def activation_dequant_outputs(model: Any, *, skip_fused: bool = True) -> list[str]:
    """Outputs of DequantizeLinear nodes whose data input is not a constant, in graph order.

    ``skip_fused`` leaves out those consumed only by :data:`FUSED_ACTIVATIONS` (tensors the HTP fuses away).
    """
    graph = model.graph
    constants = {i.name for i in graph.initializer}
    constants |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    outputs = {o.name for o in graph.output}
    consumers: dict[str, set[str]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, set()).add(node.op_type)
    names = []
    for node in graph.node:
        if node.op_type != _DQ or not node.input or node.input[0] in constants or node.output[0] in outputs:
            continue
        uses = consumers.get(node.output[0], set())
        if skip_fused and uses and uses <= FUSED_ACTIVATIONS:
            continue
        names.append(node.output[0])
    return names


def expose_activations(model_path: Path, out: Path, *, skip_fused: bool = True) -> list[str]:
    """Write ``model_path`` with the activation DequantizeLinear outputs added as graph outputs; returns them.

    See :func:`activation_dequant_outputs` for ``skip_fused``."""
    import onnx

    try:
        model = onnx.load(str(model_path))
    except Exception as exc:
        raise ModelError(f"{model_path}: cannot be read as ONNX: {exc}") from None
    names = activation_dequant_outputs(model, skip_fused=skip_fused)
    if not names:
        raise ModelError(
            f"{model_path}: no DequantizeLinear node with an activation input: expected a QDQ model to expose."
        )
    dq_nodes = {n.output[0]: n for n in model.graph.node if n.op_type == _DQ}
    for name in names:
        node = dq_nodes[name]
        # DequantizeLinear yields float32 unless opset 21+'s output_dtype says otherwise
        out_type = next((a.i for a in node.attribute if a.name == "output_dtype" and a.i), onnx.TensorProto.FLOAT)
        model.graph.output.append(onnx.helper.make_tensor_value_info(name, out_type, None))
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))
    return names


def max_abs_change(deployed: Mapping[str, np.ndarray], exposed: Mapping[str, np.ndarray]) -> float:
    """Largest absolute difference between the final outputs of the deployed and the exposed graph."""
    missing = sorted(set(deployed) - set(exposed))
    if missing:
        raise MetricError(f"the exposed graph lacks the final output(s) {missing}.")
    worst = 0.0
    for name, a in deployed.items():
        b = exposed[name]
        if a.shape != b.shape:
            raise MetricError(f"final output {name!r}: shape {a.shape} as deployed but {b.shape} when exposed.")
        diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
        if diff.size and not np.all(np.isfinite(diff)):
            raise MetricError(f"final output {name!r}: non-finite values when comparing deployed and exposed runs.")
        worst = max(worst, float(diff.max()) if diff.size else 0.0)
    return worst
