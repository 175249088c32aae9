"""EfficientNet(-Lite) state dict (EfficientNet-PyTorch naming) -> ONNX, without torch.

The checkpoint is read by ``qc.convert.torch_checkpoint`` (restricted unpickler). The layer structure comes from
the tensors themselves: the stem, then ``_blocks.N`` (optional ``_expand_conv`` 1x1, a depthwise conv whose kernel
size is its weight's shape, optional squeeze-and-excite, ``_project_conv`` 1x1, each followed by batch norm), then
``_conv_head`` and ``_fc``. Only the strides are not in the tensors: they are the architecture's per-stage strides
(a stage starts where a block's input and output channel counts differ), B0's ``(1, 2, 2, 2, 1, 2, 1)`` by default.

Batch norm folds into the preceding convolution. ``padding="same"`` is TensorFlow's SAME padding for the given
input size (for stride 2 on an even size: one pixel less before than after), as the EfficientNet-PyTorch port
uses with a static image size; ``"symmetric"`` is PyTorch's ``kernel // 2`` on both sides. Lite models use ReLU6
and no squeeze-and-excite; full EfficientNets use swish and SE: both are built from what the checkpoint holds.
The graph's output is the classifier's logits ``(N, classes)``; the classifier is a 1x1 Conv on the pooled map.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from qc.convert.torch_checkpoint import load_state_dict
from qc.errors import ModelError

B0_STAGE_STRIDES = (1, 2, 2, 2, 1, 2, 1)
Padding = Literal["same", "symmetric"]


@dataclass(frozen=True)
class BlockSpec:
    index: int
    in_ch: int
    out_ch: int
    expand: bool
    kernel: int
    stride: int
    se: bool

    @property
    def skip(self) -> bool:
        return self.stride == 1 and self.in_ch == self.out_ch


def block_specs(sd: dict[str, np.ndarray], stage_strides: Sequence[int] = B0_STAGE_STRIDES) -> list[BlockSpec]:
    """The blocks of an EfficientNet state dict, with strides assigned per stage."""
    n = 0
    while f"_blocks.{n}._project_conv.weight" in sd:
        n += 1
    if n == 0:
        raise ModelError("the state dict has no _blocks.N._project_conv.weight: not an EfficientNet checkpoint.")
    specs: list[BlockSpec] = []
    stage = -1
    for i in range(n):
        p = f"_blocks.{i}."
        dw = sd[p + "_depthwise_conv.weight"]
        proj = sd[p + "_project_conv.weight"]
        expand = p + "_expand_conv.weight" in sd
        in_ch = int(sd[p + "_expand_conv.weight"].shape[1]) if expand else int(dw.shape[0])
        out_ch = int(proj.shape[0])
        first = i == 0 or in_ch != out_ch
        if first:
            stage += 1
        if stage >= len(stage_strides):
            raise ModelError(
                f"block {i} starts stage {stage + 1}, but only {len(stage_strides)} stage strides are given."
            )
        stride = stage_strides[stage] if first else 1
        specs.append(BlockSpec(i, in_ch, out_ch, expand, int(dw.shape[-1]), stride, p + "_se_reduce.weight" in sd))
    if stage + 1 != len(stage_strides):
        raise ModelError(f"the checkpoint has {stage + 1} stages, but {len(stage_strides)} stage strides are given.")
    return specs


def fold_bn(
    weight: np.ndarray, sd: dict[str, np.ndarray], bn: str, eps: float, bias: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Fold batch norm ``bn`` (weight, bias, running_mean, running_var) into a conv's weight and bias."""
    gamma, beta = sd[bn + ".weight"], sd[bn + ".bias"]
    mean, var = sd[bn + ".running_mean"], sd[bn + ".running_var"]
    k = (gamma / np.sqrt(var + eps)).astype(np.float64)
    w = (weight.astype(np.float64) * k.reshape(-1, *([1] * (weight.ndim - 1)))).astype(np.float32)
    b0 = np.zeros_like(mean) if bias is None else bias
    b = ((b0.astype(np.float64) - mean) * k + beta).astype(np.float32)
    return w, b


def same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow SAME padding (before, after) of one spatial axis."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class _Builder:
    def __init__(self, sd: dict[str, np.ndarray], eps: float, padding: Padding, lite: bool) -> None:
        from onnx import numpy_helper

        self.sd = sd
        self.eps = eps
        self.padding = padding
        self.act = "relu6" if lite else "swish"
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self._np = numpy_helper
        self.used: set[str] = set()

    def const(self, name: str, value: np.ndarray) -> str:
        self.inits.append(self._np.from_array(np.ascontiguousarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], output: str, name: str | None = None, **attrs: Any) -> str:
        from onnx import helper

        self.nodes.append(helper.make_node(op, inputs, [output], name=name or output, **attrs))
        return output

    def conv_bn(self, x: str, size: int, conv: str, bn: str, stride: int, group: int, out: str) -> tuple[str, int]:
        w = self.sd[conv + ".weight"]
        self.used.update({conv + ".weight", *(f"{bn}.{s}" for s in ("weight", "bias", "running_mean", "running_var"))})
        self.used.add(bn + ".num_batches_tracked")
        wf, bf = fold_bn(w, self.sd, bn, self.eps)
        k = int(w.shape[-1])
        if self.padding == "same":
            before, after = same_pads(size, k, stride)
        else:
            before = after = k // 2
        self.node(
            "Conv",
            [x, self.const(out + ".weight", wf), self.const(out + ".bias", bf)],
            out,
            kernel_shape=[k, k],
            strides=[stride, stride],
            pads=[before, before, after, after],
            group=group,
        )
        return out, (size + before + after - k) // stride + 1

    def activation(self, x: str, out: str) -> str:
        if self.act == "relu6":
            lo = self.const(out + ".min", np.array(0.0, np.float32))
            hi = self.const(out + ".max", np.array(6.0, np.float32))
            return self.node("Clip", [x, lo, hi], out)
        sig = self.node("Sigmoid", [x], out + ".sigmoid")
        return self.node("Mul", [x, sig], out)

    def se(self, x: str, prefix: str, out: str) -> str:
        pooled = self.node("GlobalAveragePool", [x], out + ".pool")
        names = {}
        for part in ("_se_reduce", "_se_expand"):
            self.used.update({f"{prefix}{part}.weight", f"{prefix}{part}.bias"})
            names[part] = (
                self.const(f"{out}{part}.weight", self.sd[f"{prefix}{part}.weight"]),
                self.const(f"{out}{part}.bias", self.sd[f"{prefix}{part}.bias"]),
            )
        r = self.node("Conv", [pooled, *names["_se_reduce"]], out + ".reduce", kernel_shape=[1, 1])
        r = self.activation(r, out + ".reduce_act")
        e = self.node("Conv", [r, *names["_se_expand"]], out + ".expand", kernel_shape=[1, 1])
        gate = self.node("Sigmoid", [e], out + ".gate")
        return self.node("Mul", [x, gate], out)


def build_efficientnet(
    sd: dict[str, np.ndarray],
    *,
    image_size: int = 224,
    stage_strides: Sequence[int] = B0_STAGE_STRIDES,
    padding: Padding = "same",
    bn_eps: float = 1e-3,
    input_name: str = "input",
    output_name: str = "logits",
) -> Any:
    """The ONNX model (opset 13) of an EfficientNet(-Lite) state dict; every tensor of the dict must be used."""
    import onnx
    from onnx import TensorProto, helper

    specs = block_specs(sd, stage_strides)
    lite = not any(s.se for s in specs)
    b = _Builder(sd, bn_eps, padding, lite)
    size = image_size
    x, size = b.conv_bn(input_name, size, "_conv_stem", "_bn0", 2, 1, "stem")
    x = b.activation(x, "stem_act")
    for s in specs:
        p, o = f"_blocks.{s.index}.", f"block{s.index}"
        inp = x
        if s.expand:
            x, size = b.conv_bn(x, size, p + "_expand_conv", p + "_bn0", 1, 1, o + ".expand")
            x = b.activation(x, o + ".expand_act")
        channels = int(sd[p + "_depthwise_conv.weight"].shape[0])
        x, size = b.conv_bn(x, size, p + "_depthwise_conv", p + "_bn1", s.stride, channels, o + ".dw")
        x = b.activation(x, o + ".dw_act")
        if s.se:
            x = b.se(x, p, o + ".se")
        x, size = b.conv_bn(x, size, p + "_project_conv", p + "_bn2", 1, 1, o + ".project")
        if s.skip:
            x = b.node("Add", [x, inp], o + ".add")
        b.node("Identity", [x], o)  # a stable name for each block's output
        x = o
    x, size = b.conv_bn(x, size, "_conv_head", "_bn1", 1, 1, "head")
    x = b.activation(x, "head_act")
    x = b.node("GlobalAveragePool", [x], "pool")
    fc_w, fc_b = sd["_fc.weight"], sd["_fc.bias"]
    b.used.update({"_fc.weight", "_fc.bias"})
    # the classifier as a 1x1 Conv on the pooled 1x1 map (accelerators run it as a conv; a Gemm is a MatMul)
    w4 = fc_w.reshape(*fc_w.shape, 1, 1)
    x = b.node("Conv", [x, b.const("fc.weight", w4), b.const("fc.bias", fc_b)], "fc", kernel_shape=[1, 1])
    b.node("Flatten", [x], output_name, name="flatten", axis=1)
    unused = sorted(set(sd) - b.used - {k for k in sd if k.endswith("num_batches_tracked")})
    if unused:
        raise ModelError(f"the converter did not use {len(unused)} checkpoint tensors: {unused[:5]}.")
    classes = int(fc_w.shape[0])
    graph = helper.make_graph(
        b.nodes,
        "efficientnet",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["N", 3, image_size, image_size])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["N", classes])],
        b.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="qc")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def convert_efficientnet(
    checkpoint: Path, out: Path, *, image_size: int = 224, padding: Padding = "same", bn_eps: float = 1e-3
) -> None:
    """Convert a PyTorch EfficientNet(-Lite) checkpoint to an ONNX file at ``out``."""
    import onnx

    model = build_efficientnet(load_state_dict(checkpoint), image_size=image_size, padding=padding, bn_eps=bn_eps)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))
