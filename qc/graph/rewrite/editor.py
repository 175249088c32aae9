"""A mutable editor over a copy of an ONNX model, used by every rewrite rule."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from qc.graph.view import constant_node_value


class Editor:
    """Mutable wrapper over a ModelProto copy: constant lookup, new initializers, node removal/insertion."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.model = model
        self.graph = model.graph
        self.nodes: list[onnx.NodeProto] = list(self.graph.node)
        self.by_name = {n.name: n for n in self.nodes}
        self.inits = {i.name: i for i in self.graph.initializer}
        self.producer: dict[str, onnx.NodeProto] = {o: n for n in self.nodes for o in n.output if o}
        self.taken: set[str] = set(self.inits) | set(self.producer) | {i.name for i in self.graph.input}
        self.taken |= {n.name for n in self.nodes}
        self.removed: set[str] = set()

    def opset(self) -> int:
        for imp in self.model.opset_import:
            if imp.domain in ("", "ai.onnx"):
                return int(imp.version)
        return 1

    def value(self, tensor: str) -> np.ndarray | None:
        if tensor in self.inits:
            return numpy_helper.to_array(self.inits[tensor])
        prod = self.producer.get(tensor)
        if prod is None or prod.domain not in ("", "ai.onnx"):
            return None
        if prod.op_type == "Constant":
            return constant_node_value(prod)
        if prod.op_type == "Identity" and len(prod.input) == 1:
            return self.value(prod.input[0])
        return None

    def fresh(self, base: str) -> str:
        name = base
        k = 1
        while name in self.taken:
            name = f"{base}_{k}"
            k += 1
        self.taken.add(name)
        return name

    def add_const(self, array: np.ndarray, base: str) -> str:
        name = self.fresh(base)
        init = numpy_helper.from_array(np.ascontiguousarray(array), name)
        self.graph.initializer.append(init)
        self.inits[name] = init
        if self.model.ir_version < 4:
            self.graph.input.append(helper.make_tensor_value_info(name, init.data_type, list(array.shape)))
        return name

    def remove(self, name: str) -> None:
        self.removed.add(name)

    def insert_after(self, anchor: str, node: onnx.NodeProto) -> None:
        idx = next(i for i, n in enumerate(self.nodes) if n.name == anchor)
        self.nodes.insert(idx + 1, node)
        self.by_name[node.name] = node
        self.taken.add(node.name)
        for o in node.output:
            self.producer[o] = node
            self.taken.add(o)

    def replace_uses(self, old: str, new: str, only: set[str] | None = None) -> None:
        for n in self.nodes:
            if n.name in self.removed or (only is not None and n.name not in only):
                continue
            for i, t in enumerate(n.input):
                if t == old:
                    n.input[i] = new

    def finish(self) -> onnx.ModelProto:
        kept = [n for n in self.nodes if n.name not in self.removed]
        del self.graph.node[:]
        self.graph.node.extend(kept)
        _cleanup(self.model)
        return self.model


def _subgraph_refs(graph: onnx.GraphProto) -> set[str]:
    refs: set[str] = set()
    for n in graph.node:
        for a in n.attribute:
            subs = [a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)
            for g in subs:
                for sn in g.node:
                    refs.update(sn.input)
                refs |= _subgraph_refs(g)
    return refs


def _cleanup(model: onnx.ModelProto) -> None:
    """Drop Constant nodes and initializers nobody reads, and value_info of tensors that no longer exist."""
    graph = model.graph
    while True:
        used = {t for n in graph.node for t in n.input} | {o.name for o in graph.output} | _subgraph_refs(graph)
        dead = [
            n
            for n in graph.node
            if n.op_type == "Constant" and n.domain in ("", "ai.onnx") and all(o not in used for o in n.output)
        ]
        if not dead:
            break
        keep = [n for n in graph.node if all(n is not d for d in dead)]
        del graph.node[:]
        graph.node.extend(keep)
    used = {t for n in graph.node for t in n.input} | {o.name for o in graph.output} | _subgraph_refs(graph)
    unused = {i.name for i in graph.initializer if i.name not in used}
    if unused:
        keep_inits = [i for i in graph.initializer if i.name not in unused]
        del graph.initializer[:]
        graph.initializer.extend(keep_inits)
        keep_inputs = [i for i in graph.input if i.name not in unused]
        del graph.input[:]
        graph.input.extend(keep_inputs)
    produced = {o for n in graph.node for o in n.output}
    keep_vi = [v for v in graph.value_info if v.name in produced]
    if len(keep_vi) != len(graph.value_info):
        del graph.value_info[:]
        graph.value_info.extend(keep_vi)
