"""A small, neutral graph view that the lint rules run on.

The view is built from an ONNX model (:func:`view_from_onnx`) or, by an adapter, from a parsed ``snpe-dlc-info``
layer table. Operator types use ONNX names; :func:`canonical_op` maps QNN/SNPE type names (and the ``operation``
code of ``Eltwise_Binary``) to them and :func:`canonical_attrs` maps the usual QNN parameters (``stride``,
``pad_amount``, ``group``...) to ONNX attribute names, so an adapter is a loop over the table rows. Both live in
:mod:`qc.graph.qnn_ops` and are re-exported here.

Constant tensors (initializers *and* ``Constant`` node values) live in :attr:`GraphView.constants`; ``Constant``
nodes themselves are not listed in :attr:`GraphView.nodes`. An adapter that knows a tensor is static but not its
values may store an array of the right shape filled with NaN: lint rules only look at constant shapes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

from qc.errors import ModelError
from qc.graph.qnn_ops import canonical_attrs, canonical_op

Dim = int | str
Shape = tuple[Dim, ...]

__all__ = [
    "Dim",
    "GraphView",
    "Node",
    "Shape",
    "assign_node_names",
    "canonical_attrs",
    "canonical_op",
    "constant_node_value",
    "graph_view",
    "onnx_attrs",
    "view_from_onnx",
]


@dataclass
class Node:
    """One operator: ONNX op type, tensor names in and out, attributes as plain Python values."""

    name: str
    op_type: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, object] = field(default_factory=dict)


@dataclass
class GraphView:
    """Nodes in topological order plus tensor facts.

    ``inputs`` are the runtime graph inputs (initializers excluded), ``shapes`` maps tensor names to shapes whose
    dimensions are ints or symbolic names (``"?"`` when unknown). ``channel_axis`` is 1 for ONNX (NCHW) and should
    be set to -1 by a DLC adapter (NHWC).
    """

    nodes: list[Node]
    inputs: list[str]
    outputs: list[str]
    constants: dict[str, np.ndarray] = field(default_factory=dict)
    shapes: dict[str, Shape] = field(default_factory=dict)
    channel_axis: int = 1
    _producer: dict[str, Node] = field(init=False, repr=False, compare=False)
    _consumers: dict[str, list[Node]] = field(init=False, repr=False, compare=False)
    _by_name: dict[str, Node] = field(init=False, repr=False, compare=False)
    _index: dict[str, int] = field(init=False, repr=False, compare=False)
    _outs: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.reindex()

    def reindex(self) -> None:
        """Rebuild the lookup tables; call after editing ``nodes`` in place."""
        self._producer = {}
        self._consumers = {}
        self._by_name = {}
        self._index = {}
        self._outs = frozenset(self.outputs)
        for i, node in enumerate(self.nodes):
            self._by_name[node.name] = node
            self._index[node.name] = i
            for out in node.outputs:
                if out:
                    self._producer[out] = node
            for inp in node.inputs:
                if inp:
                    lst = self._consumers.setdefault(inp, [])
                    if not lst or lst[-1] is not node:
                        lst.append(node)

    # ----------------------------------------------------------------- lookups
    def node(self, name: str) -> Node:
        """The node called ``name``; ``KeyError`` when absent."""
        return self._by_name[name]

    def has_node(self, name: str) -> bool:
        return name in self._by_name

    def index(self, name: str) -> int:
        """Topological position of the node called ``name``."""
        return self._index[name]

    def producer(self, tensor: str) -> Node | None:
        """The node writing ``tensor``; None for graph inputs, constants and unknown names."""
        return self._producer.get(tensor)

    def consumers(self, tensor: str) -> list[Node]:
        """Nodes reading ``tensor`` (each once, in topological order)."""
        return self._consumers.get(tensor, [])

    def is_constant(self, tensor: str) -> bool:
        return tensor in self.constants

    def is_graph_output(self, tensor: str) -> bool:
        return tensor in self._outs

    def shape(self, tensor: str) -> Shape | None:
        """Known shape of ``tensor`` (constants included), or None."""
        shp = self.shapes.get(tensor)
        if shp is not None:
            return shp
        const = self.constants.get(tensor)
        if const is not None:
            return tuple(int(d) for d in const.shape)
        return None

    def rank(self, tensor: str) -> int | None:
        shp = self.shape(tensor)
        return None if shp is None else len(shp)

    def dim(self, tensor: str, axis: int) -> int | None:
        """Integer size of ``tensor`` along ``axis`` (negative axes allowed), None when unknown or symbolic."""
        shp = self.shape(tensor)
        if shp is None or not -len(shp) <= axis < len(shp):
            return None
        d = shp[axis]
        return d if isinstance(d, int) and d >= 0 else None

    def single_consumer(self, tensor: str) -> Node | None:
        """The only consumer of ``tensor`` if it has exactly one and is not a graph output."""
        cons = self.consumers(tensor)
        if len(cons) != 1 or self.is_graph_output(tensor):
            return None
        node = cons[0]
        if sum(1 for i in node.inputs if i == tensor) != 1:
            return None
        return node


# ---------------------------------------------------------------------- ONNX adapter
def assign_node_names(nodes: Sequence[onnx.NodeProto]) -> list[str]:
    """Unique, deterministic names for ``nodes``: the node's own name, else ``<op_type>_<index>``.

    Duplicate names get a ``__<k>`` suffix. The same function names nodes in :mod:`qc.graph.rewrite`, so
    findings and rewrites refer to the same names.
    """
    taken = {n.name for n in nodes if n.name}
    seen: set[str] = set()
    names: list[str] = []
    for i, n in enumerate(nodes):
        base = n.name or f"{n.op_type}_{i}"
        name = base
        k = 1
        while name in seen or (name != n.name and name in taken):
            name = f"{base}__{k}"
            k += 1
        seen.add(name)
        names.append(name)
    return names


def onnx_attrs(node: onnx.NodeProto) -> dict[str, object]:
    """Attributes of ``node`` as Python values (ints, floats, str, lists, numpy arrays, GraphProto)."""
    out: dict[str, object] = {}
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.TENSOR:
            out[attr.name] = numpy_helper.to_array(attr.t)
            continue
        if attr.type == onnx.AttributeProto.TENSORS:
            out[attr.name] = [numpy_helper.to_array(t) for t in attr.tensors]
            continue
        value = onnx.helper.get_attribute_value(attr)
        if isinstance(value, bytes):
            value = value.decode("utf-8", errors="replace")
        elif isinstance(value, list):
            value = [v.decode("utf-8", errors="replace") if isinstance(v, bytes) else v for v in value]
        out[attr.name] = value
    return out


def constant_node_value(node: onnx.NodeProto) -> np.ndarray | None:
    """Value of an ONNX ``Constant`` node, None for sparse or string constants."""
    for attr in node.attribute:
        if attr.name == "value" and attr.type == onnx.AttributeProto.TENSOR:
            return numpy_helper.to_array(attr.t)
        if attr.name == "value_float":
            return np.array(attr.f, dtype=np.float32)
        if attr.name == "value_floats":
            return np.array(list(attr.floats), dtype=np.float32)
        if attr.name == "value_int":
            return np.array(attr.i, dtype=np.int64)
        if attr.name == "value_ints":
            return np.array(list(attr.ints), dtype=np.int64)
    return None


def _shape_of(tp: onnx.TypeProto) -> Shape | None:
    if not tp.HasField("tensor_type") or not tp.tensor_type.HasField("shape"):
        return None
    dims: list[Dim] = []
    for d in tp.tensor_type.shape.dim:
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        elif d.HasField("dim_param") and d.dim_param:
            dims.append(d.dim_param)
        else:
            dims.append("?")
    return tuple(dims)


def _toposort(nodes: list[Node], known: set[str]) -> list[Node]:
    """Kahn's algorithm, stable with respect to the original order; cycles keep their original order at the end."""
    producer: dict[str, int] = {}
    for i, n in enumerate(nodes):
        for o in n.outputs:
            if o:
                producer[o] = i
    if all(producer.get(t, -1) < i for i, n in enumerate(nodes) for t in n.inputs if t and t not in known):
        return list(nodes)  # already sorted: the common case
    indeg = [0] * len(nodes)
    succ: list[list[int]] = [[] for _ in nodes]
    for i, n in enumerate(nodes):
        deps = {producer[t] for t in n.inputs if t and t not in known and t in producer and producer[t] != i}
        indeg[i] = len(deps)
        for d in deps:
            succ[d].append(i)
    ready = deque(i for i in range(len(nodes)) if indeg[i] == 0)
    order: list[int] = []
    placed = [False] * len(nodes)
    while ready:
        i = ready.popleft()
        order.append(i)
        placed[i] = True
        for s in sorted(succ[i]):
            indeg[s] -= 1
            if indeg[s] == 0:
                ready.append(s)
    order.extend(i for i in range(len(nodes)) if not placed[i])
    return [nodes[i] for i in order]


def view_from_onnx(model: onnx.ModelProto, *, infer_shapes: bool = True) -> GraphView:
    """Build a :class:`GraphView` of the main graph of ``model`` (subgraphs of If/Loop are not descended into).

    Runs ONNX shape inference (with data propagation) when ``infer_shapes``; a model that shape inference
    rejects (or larger than 2 GB) is viewed with the shapes it already declares.
    """
    if not isinstance(model, onnx.ModelProto):
        raise ModelError(f"view_from_onnx needs an onnx.ModelProto, got {type(model).__name__}.")
    inferred = model
    if infer_shapes:
        try:
            inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
        except Exception:  # shape inference is best effort: fall back on declared shapes
            try:
                inferred = onnx.shape_inference.infer_shapes(model)
            except Exception:
                inferred = model
    graph = inferred.graph

    constants: dict[str, np.ndarray] = {}
    for init in graph.initializer:
        try:
            constants[init.name] = numpy_helper.to_array(init)
        except Exception as exc:  # external data not loaded, unsupported dtype
            raise ModelError(f"Initializer {init.name!r} cannot be read ({exc}); load external data first.") from exc

    shapes: dict[str, Shape] = {}
    for vi in [*graph.input, *graph.value_info, *graph.output]:
        shp = _shape_of(vi.type)
        if shp is not None:
            shapes[vi.name] = shp

    names = assign_node_names(graph.node)
    nodes: list[Node] = []
    for name, n in zip(names, graph.node, strict=True):
        if n.op_type == "Constant" and n.domain in ("", "ai.onnx") and len(n.output) == 1:
            value = constant_node_value(n)
            if value is not None:
                constants[n.output[0]] = value
                continue
        if n.op_type == "Identity" and len(n.input) == 1 and n.input[0] in constants and n.output:
            constants[n.output[0]] = constants[n.input[0]]
            continue
        nodes.append(Node(name, n.op_type, list(n.input), list(n.output), onnx_attrs(n)))

    for cname, value in constants.items():
        shapes.setdefault(cname, tuple(int(d) for d in value.shape))

    inputs = [i.name for i in graph.input if i.name not in constants]
    outputs = [o.name for o in graph.output]
    ordered = _toposort(nodes, set(inputs) | set(constants))
    return GraphView(nodes=ordered, inputs=inputs, outputs=outputs, constants=constants, shapes=shapes)


def graph_view(
    nodes: Iterable[Node],
    *,
    inputs: Sequence[str],
    outputs: Sequence[str],
    constants: Mapping[str, np.ndarray] | None = None,
    shapes: Mapping[str, Shape] | None = None,
    channel_axis: int = 1,
) -> GraphView:
    """Build a view from adapter-made nodes, sorting them topologically."""
    consts = dict(constants or {})
    ordered = _toposort(list(nodes), set(inputs) | set(consts))
    return GraphView(
        nodes=ordered,
        inputs=list(inputs),
        outputs=list(outputs),
        constants=consts,
        shapes=dict(shapes or {}),
        channel_axis=channel_axis,
    )
