"""The parsed ``snpe-dlc-info`` layer table as a :class:`qc.graph.view.GraphView`, so lint runs on the DLC itself."""

from __future__ import annotations

import numpy as np

from qc.graph.view import GraphView, Node, canonical_attrs, canonical_op, graph_view
from qc.snpe.parsers import DlcInfo

_BINARY = ("Eltwise_Binary", "ElementWiseBinary")


def view_from_dlc(info: DlcInfo) -> GraphView:
    """A lint view of the DLC: QNN op types mapped to ONNX ones (``Eltwise_Binary`` operation 2 is ``Div``).

    dlc-info lists only activation tensors as layer inputs. A binary element-wise layer with one listed input reads
    a static operand: it becomes a constant input (its name taken from the layer's other encoding when shown), so a
    Div by a constant is told from a Div of two activations. Constants carry NaN values: lint reads shapes only.
    Layout is NHWC (channel axis -1).
    """
    nodes: list[Node] = []
    constants: dict[str, np.ndarray] = {}
    shapes: dict[str, tuple[int | str, ...]] = {}
    inputs: list[str] = []
    for layer in info.layers:
        ins = [t.name for t in layer.inputs]
        outs = [t.name for t in layer.outputs]
        for t in (*layer.inputs, *layer.outputs):
            if t.dims is not None:
                shapes[t.name] = tuple(t.dims)
            if t.is_network_input and t.name not in inputs:
                inputs.append(t.name)
            if (t.tensor_type or "").upper() == "STATIC":
                constants[t.name] = np.full(t.dims or (), np.nan, np.float32)
        if layer.type in _BINARY and len(ins) == 1:
            static = [n for n in layer.encodings if n not in ins and n not in outs]
            name = static[0] if static else f"{layer.name}/static_operand"
            constants.setdefault(name, np.full((), np.nan, np.float32))
            ins.append(name)
        nodes.append(
            Node(
                layer.name, canonical_op(layer.type, layer.params), ins, outs, canonical_attrs(layer.type, layer.params)
            )
        )
    outputs = [o.name for o in info.outputs]
    return graph_view(nodes, inputs=inputs, outputs=outputs, constants=constants, shapes=shapes, channel_axis=-1)
