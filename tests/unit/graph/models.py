"""Small ONNX model builders (onnx.helper) for the graph lint and rewrite tests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8


def rand(*shape: int, seed: int = 0, low: float = -1.0, high: float = 1.0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(low, high, shape).astype(np.float32)


def vinfo(name: str, shape: Sequence[int | str], elem: int = TensorProto.FLOAT) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, list(shape))


def const_node(name: str, value: np.ndarray) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], name=f"{name}_const", value=numpy_helper.from_array(value, name))


def make_model(
    nodes: Sequence[onnx.NodeProto],
    inputs: Sequence[onnx.ValueInfoProto],
    outputs: Sequence[onnx.ValueInfoProto],
    initializers: dict[str, np.ndarray] | None = None,
    *,
    opset: int = OPSET,
    constant_nodes: bool = False,
) -> onnx.ModelProto:
    """A checked model; with ``constant_nodes`` the weights become Constant nodes instead of initializers."""
    inits = initializers or {}
    all_nodes = list(nodes)
    init_protos: list[onnx.TensorProto] = []
    if constant_nodes:
        all_nodes = [const_node(k, v) for k, v in inits.items()] + all_nodes
    else:
        init_protos = [numpy_helper.from_array(v, k) for k, v in inits.items()]
    graph = helper.make_graph(all_nodes, "g", list(inputs), list(outputs), init_protos)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def conv_node(
    x: str,
    w: str,
    b: str | None,
    y: str,
    *,
    name: str = "conv",
    strides: Sequence[int] = (1, 1),
    pads: Sequence[int] = (0, 0, 0, 0),
    group: int = 1,
    auto_pad: str | None = None,
) -> onnx.NodeProto:
    kwargs: dict[str, Any] = {"strides": list(strides), "group": group}
    if auto_pad is None:
        kwargs["pads"] = list(pads)
    else:
        kwargs["auto_pad"] = auto_pad
    inputs = [x, w] if b is None else [x, w, b]
    return helper.make_node("Conv", inputs, [y], name=name, **kwargs)


# ----------------------------------------------------------------------------- div / matmul
def div_model(
    *, constant_divisor: bool = True, constant_node: bool = False, shape: Sequence[int] = (1, 4, 8, 8)
) -> onnx.ModelProto:
    """x / d -> Relu. ``d`` is a per-channel constant (initializer or Constant node) or a second input."""
    c = shape[1]
    nodes = [
        helper.make_node("Div", ["x", "d"], ["q"], name="div"),
        helper.make_node("Relu", ["q"], ["y"], name="relu"),
    ]
    inputs = [vinfo("x", shape)]
    inits: dict[str, np.ndarray] = {}
    if constant_divisor:
        inits["d"] = rand(1, c, 1, 1, seed=1, low=0.5, high=3.0)
    else:
        inputs.append(vinfo("d", shape))
    return make_model(nodes, inputs, [vinfo("y", shape)], inits, constant_nodes=constant_node)


def int_div_model() -> onnx.ModelProto:
    nodes = [helper.make_node("Div", ["x", "d"], ["y"], name="div")]
    inits = {"d": np.array([3], np.int64)}
    return make_model(nodes, [vinfo("x", [4], TensorProto.INT64)], [vinfo("y", [4], TensorProto.INT64)], inits)


def multi_div_model(n: int = 3) -> onnx.ModelProto:
    """x / 3 / 7 / 11 ... (n Divs by awkward constants)."""
    nodes = []
    inits: dict[str, np.ndarray] = {}
    prev = "x"
    for i in range(n):
        inits[f"d{i}"] = np.array(3.0 + 4 * i, np.float32)
        out = "y" if i == n - 1 else f"t{i}"
        nodes.append(helper.make_node("Div", [prev, f"d{i}"], [out], name=f"div{i}"))
        prev = out
    return make_model(nodes, [vinfo("x", [1, 4, 8, 8])], [vinfo("y", [1, 4, 8, 8])], inits)


def matmul_model() -> onnx.ModelProto:
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"], name="matmul"),
        helper.make_node("Gemm", ["h", "w2", "b2"], ["y"], name="gemm"),
    ]
    inits = {"w": rand(16, 8, seed=2), "w2": rand(8, 4, seed=3), "b2": rand(4, seed=4)}
    return make_model(nodes, [vinfo("x", [1, 16])], [vinfo("y", [1, 4])], inits)


# ----------------------------------------------------------------------------- conv stride / channels
def conv_model(
    *,
    c_in: int = 3,
    c_out: int = 8,
    kernel: int = 3,
    size: int = 16,
    strides: Sequence[int] = (1, 2),
    pads: Sequence[int] = (1, 1, 1, 1),
    auto_pad: str | None = None,
    constant_nodes: bool = False,
    with_bias: bool = True,
    width: int | None = None,
) -> onnx.ModelProto:
    w_size = width if width is not None else size
    inits = {"w": rand(c_out, c_in, kernel, kernel, seed=5)}
    if with_bias:
        inits["b"] = rand(c_out, seed=6)
    nodes = [
        conv_node("x", "w", "b" if with_bias else None, "c", strides=strides, pads=pads, auto_pad=auto_pad),
        helper.make_node("Relu", ["c"], ["y"], name="relu"),
    ]
    return make_model(
        nodes,
        [vinfo("x", [1, c_in, size, w_size])],
        [vinfo("y", [1, c_out, "H", "W"])],
        inits,
        constant_nodes=constant_nodes,
    )


# ----------------------------------------------------------------------------- foldable eltwise
def _const_for(c: int, shape_kind: str, seed: int, positive: bool = False) -> np.ndarray:
    low, high = (0.5, 2.0) if positive else (-1.0, 1.0)
    if shape_kind == "scalar":
        return rand(seed=seed, low=low, high=high).reshape(())
    if shape_kind == "c11":
        return rand(c, 1, 1, seed=seed, low=low, high=high)
    if shape_kind == "1c11":
        return rand(1, c, 1, 1, seed=seed, low=low, high=high)
    if shape_kind == "111w":  # per-column: NOT per-channel
        return rand(1, 1, 1, 8, seed=seed, low=low, high=high)
    if shape_kind == "c":  # (C,) broadcasts along W, not channels
        return rand(c, seed=seed, low=low, high=high)
    raise ValueError(shape_kind)


def fold_before_model(
    ops: Sequence[str],
    *,
    c_in: int = 4,
    c_out: int = 8,
    pads: Sequence[int] = (0, 0, 0, 0),
    shape_kind: str = "1c11",
    group: int = 1,
    constant_nodes: bool = False,
    values: Sequence[np.ndarray] | None = None,
    with_bias: bool = True,
) -> onnx.ModelProto:
    """x -> ops (each "add", "sub", "rsub", "mul") -> Conv -> y, with 8x8 spatial size."""
    inits: dict[str, np.ndarray] = {"w": rand(c_out, c_in // group, 3, 3, seed=11)}
    if with_bias:
        inits["b"] = rand(c_out, seed=12)
    nodes: list[onnx.NodeProto] = []
    prev = "x"
    for i, op in enumerate(ops):
        cname = f"k{i}"
        inits[cname] = values[i] if values is not None else _const_for(c_in, shape_kind, 20 + i, op == "mul")
        out = f"e{i}"
        if op == "add":
            nodes.append(helper.make_node("Add", [prev, cname], [out], name=f"add{i}"))
        elif op == "sub":
            nodes.append(helper.make_node("Sub", [prev, cname], [out], name=f"sub{i}"))
        elif op == "rsub":
            nodes.append(helper.make_node("Sub", [cname, prev], [out], name=f"rsub{i}"))
        elif op == "mul":
            nodes.append(helper.make_node("Mul", [cname, prev], [out], name=f"mul{i}"))
        else:
            raise ValueError(op)
        prev = out
    nodes.append(conv_node(prev, "w", "b" if with_bias else None, "y", pads=pads, group=group))
    size_out = 8 - 2 + pads[0] + pads[2]
    return make_model(
        nodes,
        [vinfo("x", [1, c_in, 8, 8])],
        [vinfo("y", [1, c_out, size_out, 8 - 2 + pads[1] + pads[3]])],
        inits,
        constant_nodes=constant_nodes,
    )


def fold_after_model(
    ops: Sequence[str],
    *,
    c_in: int = 4,
    c_out: int = 8,
    shape_kind: str = "1c11",
    pads: Sequence[int] = (1, 1, 1, 1),
    constant_nodes: bool = False,
    values: Sequence[np.ndarray] | None = None,
    with_bias: bool = True,
    group: int = 1,
) -> onnx.ModelProto:
    """x -> Conv -> ops -> y."""
    inits: dict[str, np.ndarray] = {"w": rand(c_out, c_in // group, 3, 3, seed=13)}
    if with_bias:
        inits["b"] = rand(c_out, seed=14)
    nodes = [conv_node("x", "w", "b" if with_bias else None, "c", pads=pads, group=group)]
    prev = "c"
    for i, op in enumerate(ops):
        cname = f"k{i}"
        inits[cname] = values[i] if values is not None else _const_for(c_out, shape_kind, 30 + i, op == "mul")
        out = "y" if i == len(ops) - 1 else f"e{i}"
        if op == "add":
            nodes.append(helper.make_node("Add", [cname, prev], [out], name=f"add{i}"))
        elif op == "sub":
            nodes.append(helper.make_node("Sub", [prev, cname], [out], name=f"sub{i}"))
        elif op == "rsub":
            nodes.append(helper.make_node("Sub", [cname, prev], [out], name=f"rsub{i}"))
        elif op == "mul":
            nodes.append(helper.make_node("Mul", [prev, cname], [out], name=f"mul{i}"))
        else:
            raise ValueError(op)
        prev = out
    size = 8 - 2 + pads[0] + pads[2]
    return make_model(
        nodes,
        [vinfo("x", [1, c_in, 8, 8])],
        [vinfo("y", [1, c_out, size, 8 - 2 + pads[1] + pads[3]])],
        inits,
        constant_nodes=constant_nodes,
    )


def fold_shared_intermediate_model() -> onnx.ModelProto:
    """x -> Conv -> Mul -> y, but the Conv output is also a second graph output (cannot fold)."""
    inits = {"w": rand(8, 4, 3, 3, seed=15), "b": rand(8, seed=16), "k": rand(1, 8, 1, 1, seed=17)}
    nodes = [
        conv_node("x", "w", "b", "c", pads=(1, 1, 1, 1)),
        helper.make_node("Mul", ["c", "k"], ["y"], name="mul"),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
    ]
    return make_model(nodes, [vinfo("x", [1, 4, 8, 8])], [vinfo("y", [1, 8, 8, 8]), vinfo("r", [1, 8, 8, 8])], inits)


def conv_mul_conv_model() -> onnx.ModelProto:
    """Conv -> Mul -> Conv: the Mul must fold exactly once (after the first Conv)."""
    inits = {
        "w1": rand(8, 4, 3, 3, seed=40),
        "b1": rand(8, seed=41),
        "k": rand(1, 8, 1, 1, seed=42, low=0.5, high=2.0),
        "w2": rand(8, 8, 3, 3, seed=43),
        "b2": rand(8, seed=44),
    }
    nodes = [
        conv_node("x", "w1", "b1", "c1", pads=(1, 1, 1, 1), name="conv1"),
        helper.make_node("Mul", ["c1", "k"], ["m"], name="mul"),
        conv_node("m", "w2", "b2", "y", pads=(1, 1, 1, 1), name="conv2"),
    ]
    return make_model(nodes, [vinfo("x", [1, 4, 8, 8])], [vinfo("y", [1, 8, 8, 8])], inits)


# ----------------------------------------------------------------------------- input channel swap
def channel_swap_model(
    kind: str = "split",
    *,
    normalize: bool = False,
    size: int = 16,
    order: Sequence[int] = (2, 1, 0),
    second_consumer: bool = False,
    constant_nodes: bool = False,
    c_out: int = 8,
) -> onnx.ModelProto:
    """x (1,3,H,W) -> channel reorder (Split+Concat, 3 Slices+Concat, Gather, or a reversing Slice) [-> Sub -> Mul]
    -> Conv(pads 1) -> y. With ``second_consumer`` x also feeds a ReduceMean output."""
    inits: dict[str, np.ndarray] = {"w": rand(c_out, 3, 3, 3, seed=50), "b": rand(c_out, seed=51)}
    nodes: list[onnx.NodeProto] = []
    if kind == "split":
        inits["split"] = np.array([1, 1, 1], np.int64)
        nodes.append(helper.make_node("Split", ["x", "split"], ["s0", "s1", "s2"], name="split", axis=1))
        nodes.append(helper.make_node("Concat", [f"s{i}" for i in order], ["sw"], name="concat", axis=1))
    elif kind == "slices":
        for i in range(3):
            inits[f"st{i}"] = np.array([i], np.int64)
            inits[f"en{i}"] = np.array([i + 1], np.int64)
            inits[f"ax{i}"] = np.array([1], np.int64)
            nodes.append(helper.make_node("Slice", ["x", f"st{i}", f"en{i}", f"ax{i}"], [f"s{i}"], name=f"slice{i}"))
        nodes.append(helper.make_node("Concat", [f"s{i}" for i in order], ["sw"], name="concat", axis=1))
    elif kind == "gather":
        inits["idx"] = np.array(list(order), np.int64)
        nodes.append(helper.make_node("Gather", ["x", "idx"], ["sw"], name="gather", axis=1))
    elif kind == "reverse":
        inits["st"] = np.array([-1], np.int64)
        inits["en"] = np.array([np.iinfo(np.int64).min], np.int64)
        inits["ax"] = np.array([1], np.int64)
        inits["sp"] = np.array([-1], np.int64)
        nodes.append(helper.make_node("Slice", ["x", "st", "en", "ax", "sp"], ["sw"], name="reverse"))
    else:
        raise ValueError(kind)
    prev = "sw"
    if normalize:
        inits["mean"] = np.array([0.485, 0.456, 0.406], np.float32).reshape(1, 3, 1, 1)
        inits["scale"] = np.array([1 / 0.229, 1 / 0.224, 1 / 0.225], np.float32).reshape(1, 3, 1, 1)
        nodes.append(helper.make_node("Sub", [prev, "mean"], ["n0"], name="norm_sub"))
        nodes.append(helper.make_node("Mul", ["n0", "scale"], ["n1"], name="norm_mul"))
        prev = "n1"
    nodes.append(conv_node(prev, "w", "b", "y", pads=(1, 1, 1, 1)))
    outputs = [vinfo("y", [1, c_out, size, size])]
    if second_consumer:
        nodes.append(helper.make_node("ReduceMean", ["x"], ["m"], name="mean_x", keepdims=1))
        outputs.append(vinfo("m", [1, 1, 1, 1]))
    return make_model(nodes, [vinfo("x", [1, 3, size, size])], outputs, inits, constant_nodes=constant_nodes)


# ----------------------------------------------------------------------------- layout chains
def reshape_chain_model(kinds: Sequence[str] = ("Reshape", "Transpose")) -> onnx.ModelProto:
    """x (1,8,4,4) -> a chain of Reshape/Transpose ops -> y."""
    inits: dict[str, np.ndarray] = {}
    nodes: list[onnx.NodeProto] = []
    prev = "x"
    shape = [1, 8, 4, 4]
    for i, k in enumerate(kinds):
        out = "y" if i == len(kinds) - 1 else f"t{i}"
        if k == "Reshape":
            shape = [shape[0], shape[1], shape[2] * shape[3]] if len(shape) == 4 else [1, 8, 4, 4]
            inits[f"shape{i}"] = np.array(shape, np.int64)
            nodes.append(helper.make_node("Reshape", [prev, f"shape{i}"], [out], name=f"reshape{i}"))
        else:
            perm = list(range(len(shape)))
            perm[-1], perm[-2] = perm[-2], perm[-1]
            shape = [shape[p] for p in perm]
            nodes.append(helper.make_node("Transpose", [prev], [out], name=f"transpose{i}", perm=perm))
        prev = out
    return make_model(nodes, [vinfo("x", [1, 8, 4, 4])], [vinfo("y", shape)], inits)


# ----------------------------------------------------------------------------- big graph for perf
def big_model(blocks: int = 100, channels: int = 8, size: int = 8) -> onnx.ModelProto:
    """``blocks`` x 10 nodes: Conv -> Mul -> Add -> Relu -> Div -> Reshape -> Transpose -> Transpose -> Reshape ->
    Conv 1x1 (1,000 nodes for blocks=100). The very last Conv has strides (1, 2)."""
    inits: dict[str, np.ndarray] = {}
    nodes: list[onnx.NodeProto] = []
    prev = "x"
    inits["shape_flat"] = np.array([1, channels, size * size], np.int64)
    inits["shape_img"] = np.array([1, channels, size, size], np.int64)
    inits["kmul"] = rand(1, channels, 1, 1, seed=60, low=0.5, high=1.5)
    inits["kadd"] = rand(1, channels, 1, 1, seed=61)
    inits["kdiv"] = np.array(2.0, np.float32)
    for b in range(blocks):
        inits[f"w{b}a"] = rand(channels, channels, 3, 3, seed=b) * 0.2
        inits[f"w{b}b"] = rand(channels, channels, 1, 1, seed=b + 1000) * 0.2
        p = f"b{b}_"
        last = b == blocks - 1
        out = "y" if last else p + "o"
        nodes += [
            conv_node(prev, f"w{b}a", None, p + "c", pads=(1, 1, 1, 1), name=p + "conv"),
            helper.make_node("Mul", [p + "c", "kmul"], [p + "m"], name=p + "mul"),
            helper.make_node("Add", [p + "m", "kadd"], [p + "a"], name=p + "add"),
            helper.make_node("Relu", [p + "a"], [p + "r"], name=p + "relu"),
            helper.make_node("Div", [p + "r", "kdiv"], [p + "d"], name=p + "div"),
            helper.make_node("Reshape", [p + "d", "shape_flat"], [p + "f"], name=p + "reshape1"),
            helper.make_node("Transpose", [p + "f"], [p + "t1"], name=p + "transpose1", perm=[0, 2, 1]),
            helper.make_node("Transpose", [p + "t1"], [p + "t2"], name=p + "transpose2", perm=[0, 2, 1]),
            helper.make_node("Reshape", [p + "t2", "shape_img"], [p + "i"], name=p + "reshape2"),
            conv_node(p + "i", f"w{b}b", None, out, strides=(1, 2) if last else (1, 1), name=p + "conv2"),
        ]
        prev = out
    return make_model(
        nodes, [vinfo("x", [1, channels, size, size])], [vinfo("y", [1, channels, size, size // 2])], inits
    )


def concat_model(rank: int, inputs: int = 2) -> onnx.ModelProto:
    """``inputs`` tensors of rank ``rank`` (each through a Sigmoid, as a decode's scores) joined on the last axis."""
    shape = [1, 3, 13, 13, 4][:rank] if rank <= 5 else [1, 3, 13, 13, 2, 4]
    names = [f"x{i}" for i in range(inputs)]
    nodes = [helper.make_node("Sigmoid", [n], [f"{n}_s"], name=f"sigmoid_{i}") for i, n in enumerate(names)]
    nodes.append(helper.make_node("Concat", [f"{n}_s" for n in names], ["y"], name="concat", axis=-1))
    out_shape = [*shape[:-1], shape[-1] * inputs]
    return make_model(nodes, [vinfo(n, shape) for n in names], [vinfo("y", out_shape)])
