"""Convert a darknet YOLOv3-tiny checkpoint (``.cfg`` + ``.weights``) to ONNX with numpy and onnx only.

Graph input ``images`` is ``(1, C, H, W)`` float32 RGB in [0, 1]. Outputs: one raw head per
``[yolo]`` section, named ``head_<grid height>`` (the yolo layer's input, e.g. ``head_13``), then
``yolo_decoded`` of shape ``(1, rows, 5 + classes)``: cx, cy, w, h in input pixels, objectness and class
probabilities (sigmoids; the class probabilities are not multiplied by objectness). Rows follow the heads in
cfg order, each one anchor-major, then y, then x. Every node behind the heads is named ``decode/...``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

from qc.errors import ModelError

FloatArray = npt.NDArray[np.float32]
Shape = tuple[int, int, int]  # (C, H, W)

_BN_EPS = 1e-5  # darknet folds batch norm with sqrt(variance + .00001)
_LEAKY_ALPHA = 0.1
_MIN_OPSET = 13  # Resize with an empty roi input

# Keys that only matter for training or post-processing: accepted and ignored.
_IGNORED_KEYS = {
    "net": {
        "batch", "subdivisions", "momentum", "decay", "angle", "saturation", "exposure", "hue",
        "learning_rate", "burn_in", "max_batches", "policy", "steps", "scales",
    },
    "yolo": {"num", "jitter", "ignore_thresh", "truth_thresh", "random", "thresh", "nms_threshold"},
}  # fmt: skip
_USED_KEYS = {
    "net": {"width", "height", "channels"},
    "convolutional": {"batch_normalize", "filters", "size", "stride", "pad", "padding", "activation"},
    "maxpool": {"size", "stride", "padding"},
    "route": {"layers"},
    "upsample": {"stride"},
    "yolo": {"mask", "anchors", "classes"},
}


def parse_cfg(text: str) -> list[dict[str, str]]:
    """Split darknet cfg text into its sections, in order; each dict has ``type`` plus the section's keys."""
    sections: list[dict[str, str]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].split(";", 1)[0].strip()
        if not line:
            continue
        header = re.fullmatch(r"\[\s*(\w+)\s*\]", line)
        if header:
            sections.append({"type": header.group(1)})
        elif "=" in line and sections:
            key, value = (part.strip() for part in line.split("=", 1))
            if key == "type" or key in sections[-1]:
                raise ModelError(f"cfg line {number}: the key {key!r} is repeated or reserved.")
            sections[-1][key] = value
        else:
            raise ModelError(f"cfg line {number} is neither [section] nor key=value: {raw.strip()!r}.")
    return sections


@dataclass(frozen=True)
class DarknetLayer:
    """One cfg section after ``[net]``, with defaults resolved and its output shape inferred."""

    kind: str  # convolutional, maxpool, route, upsample or yolo
    shape: Shape
    params: dict[str, int] = field(default_factory=dict)  # conv/maxpool/upsample settings, resolved
    sources: tuple[int, ...] = ()  # route inputs, absolute layer indexes
    floats: int = 0  # float32 values this layer takes from the weights file


@dataclass(frozen=True)
class DarknetModel:
    """A validated darknet cfg: input size, layers and the ``[yolo]`` heads."""

    width: int
    height: int
    channels: int
    layers: tuple[DarknetLayer, ...]
    heads: tuple[int, ...]  # indexes of the [yolo] layers
    anchors: tuple[tuple[tuple[float, float], ...], ...]  # per head: masked anchors (w, h), input pixels
    classes: int

    @property
    def float_count(self) -> int:
        """Number of float32 values the weights file must hold after its header."""
        return sum(layer.floats for layer in self.layers)

    @classmethod
    def from_cfg(cls, text: str) -> DarknetModel:
        """Validate cfg text and infer every layer's output shape."""
        sections = parse_cfg(text)
        if not sections or sections[0]["type"] != "net":
            raise ModelError("The cfg must start with a [net] section.")
        for index, section in enumerate(sections, start=-1):
            kind = section["type"]
            if kind not in _USED_KEYS:
                raise ModelError(f"{_where(section, index)}: this section type is not supported.")
            unknown = sorted(set(section) - {"type"} - _USED_KEYS[kind] - _IGNORED_KEYS.get(kind, set()))
            if unknown:
                raise ModelError(f"{_where(section, index)}: unsupported keys {', '.join(unknown)}.")
        net = sections[0]
        width, height = _int(net, -1, "width"), _int(net, -1, "height")
        channels = _int(net, -1, "channels", 3)
        layers: list[DarknetLayer] = []
        heads: list[int] = []
        anchors: list[tuple[tuple[float, float], ...]] = []
        classes: list[int] = []
        for index, section in enumerate(sections[1:]):
            previous = layers[-1].shape if layers else (channels, height, width)
            if section["type"] != "yolo":
                layers.append(_resolve(section, index, previous, layers))
                continue
            if not layers or layers[-1].kind != "convolutional":
                raise ModelError(f"{_where(section, index)}: it must follow a [convolutional] section.")
            pairs = _numbers(section, index, "anchors")
            mask = [int(m) for m in _numbers(section, index, "mask")]
            if len(pairs) % 2 or not all(0 <= m < len(pairs) // 2 for m in mask):
                raise ModelError(f"{_where(section, index)}: mask {mask} does not fit the anchors {pairs}.")
            classes.append(_int(section, index, "classes"))
            if previous[0] != len(mask) * (5 + classes[-1]):
                raise ModelError(f"{_where(section, index)}: {previous[0]} input channels do not fit mask {mask}.")
            heads.append(index)
            anchors.append(tuple((pairs[2 * m], pairs[2 * m + 1]) for m in mask))
            layers.append(DarknetLayer("yolo", previous))
        if not heads:
            raise ModelError("The cfg has no [yolo] section, so there is nothing to decode.")
        if len(set(classes)) > 1:
            raise ModelError(f"The [yolo] sections disagree on the number of classes: {classes}.")
        if len({layers[i].shape[1] for i in heads}) != len(heads):
            raise ModelError("Two [yolo] heads have the same grid height, so their output names would clash.")
        return cls(width, height, channels, tuple(layers), tuple(heads), tuple(anchors), classes[0])


def _where(section: dict[str, str], index: int) -> str:
    return "the [net] section" if index < 0 else f"cfg layer {index} [{section['type']}]"


def _int(section: dict[str, str], index: int, key: str, default: int | None = None) -> int:
    value = section.get(key)
    if value is None:
        if default is None:
            raise ModelError(f"{_where(section, index)} lacks the key {key!r}.")
        return default
    try:
        return int(value)
    except ValueError:
        raise ModelError(f"{_where(section, index)}: {key}={value!r} is not an integer.") from None


def _numbers(section: dict[str, str], index: int, key: str) -> list[float]:
    if key not in section:
        raise ModelError(f"{_where(section, index)} lacks the key {key!r}.")
    try:
        return [float(item) for item in section[key].split(",")]
    except ValueError:
        raise ModelError(f"{_where(section, index)}: {key} is not a list of numbers.") from None


def _resolve(section: dict[str, str], index: int, previous: Shape, layers: list[DarknetLayer]) -> DarknetLayer:
    """Resolve one convolutional, maxpool, upsample or route section that follows ``layers``."""
    kind = section["type"]
    c, h, w = previous
    if kind == "convolutional":
        filters, size = _int(section, index, "filters"), _int(section, index, "size")
        stride, bn = _int(section, index, "stride", 1), _int(section, index, "batch_normalize", 0)
        pad = size // 2 if _int(section, index, "pad", 0) else _int(section, index, "padding", 0)
        activation = section.get("activation", "linear")
        if activation not in ("leaky", "linear") or bn not in (0, 1):
            raise ModelError(f"cfg layer {index}: activation={activation}, batch_normalize={bn} unsupported.")
        params = {"size": size, "stride": stride, "pad": pad, "bn": bn, "leaky": int(activation == "leaky")}
        out = (filters, (h + 2 * pad - size) // stride + 1, (w + 2 * pad - size) // stride + 1)
        return DarknetLayer(kind, out, params, floats=filters * (1 + 3 * bn + c * size * size))
    if kind == "maxpool":
        size, stride = _int(section, index, "size", 2), _int(section, index, "stride", 2)
        padding = _int(section, index, "padding", size - 1)  # darknet: padding // 2 before, the rest after
        params = {"size": size, "stride": stride, "before": padding // 2, "after": padding - padding // 2}
        out = (c, (h + padding - size) // stride + 1, (w + padding - size) // stride + 1)
        return DarknetLayer(kind, out, params)
    if kind == "upsample":
        stride = _int(section, index, "stride", 2)
        if stride < 1:
            raise ModelError(f"cfg layer {index}: upsample stride {stride} (downsampling) is not supported.")
        return DarknetLayer(kind, (c, h * stride, w * stride), {"stride": stride})
    # route: negative indexes count back from the route itself
    sources = tuple(int(v) + index if v < 0 else int(v) for v in _numbers(section, index, "layers"))
    if not all(0 <= s < index and layers[s].kind != "yolo" for s in sources):
        raise ModelError(f"cfg layer {index}: route sources {sources} must be earlier, non-yolo layers.")
    if len({layers[s].shape[1:] for s in sources}) != 1:
        raise ModelError(f"cfg layer {index}: route joins layers {sources} of different sizes.")
    channels = sum(layers[s].shape[0] for s in sources)
    return DarknetLayer(kind, (channels, *layers[sources[0]].shape[1:]), sources=sources)


def _read_weights(path: Path) -> tuple[str, FloatArray]:
    """Return the header as ``major.minor.revision`` and the float32 values behind it."""
    data = path.read_bytes()
    if len(data) < 16:
        raise ModelError(f"Weights file {path} is too short for a darknet header.")
    major, minor, revision = (int(v) for v in np.frombuffer(data, dtype="<i4", count=3))
    if major > 1000 or minor > 1000:
        raise ModelError(f"Weights file {path} stores transposed weights, which are not supported.")
    offset = 12 + (8 if major * 10 + minor >= 2 else 4)  # `seen` is int64 from format 0.2 on
    if (len(data) - offset) % 4:
        raise ModelError(f"Weights file {path}: {len(data) - offset} bytes after the header are not float32s.")
    return f"{major}.{minor}.{revision}", np.frombuffer(data, dtype="<f4", offset=offset)


class _Graph:
    """Collects nodes and initializers for one ONNX graph."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def const(self, name: str, value: npt.ArrayLike, dtype: type[np.generic] = np.float32) -> str:
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def node(self, op: str, name: str, inputs: list[str], output: str = "", **attrs: Any) -> str:
        """Add a node; its output tensor takes the node's name unless ``output`` is given."""
        output = output or name
        self.nodes.append(helper.make_node(op, inputs, [output], name=name, **attrs))
        return output


def _conv(g: _Graph, i: int, layer: DarknetLayer, *, x: str, in_channels: int, floats: FloatArray, out: str) -> str:
    """Conv (batch norm folded in) plus LeakyRelu; darknet stores bias, [gamma, mean, variance,] kernel."""
    p, filters = layer.params, layer.shape[0]
    counts = [filters] * (1 + 3 * p["bn"]) + [filters * in_channels * p["size"] ** 2]
    parts = np.split(floats.astype(np.float64), np.cumsum(counts)[:-1])
    bias, kernel = parts[0], parts[-1].reshape(filters, in_channels, p["size"], p["size"])
    if p["bn"]:
        gamma, mean, variance = parts[1:4]
        scale = gamma / np.sqrt(variance + _BN_EPS)
        kernel, bias = kernel * scale[:, None, None, None], bias - mean * scale
    y = g.node(
        "Conv", f"conv_{i}", [x, g.const(f"conv_{i}.weight", kernel), g.const(f"conv_{i}.bias", bias)],
        "" if p["leaky"] else out,
        kernel_shape=[p["size"]] * 2, strides=[p["stride"]] * 2, pads=[p["pad"]] * 4,
    )  # fmt: skip
    return g.node("LeakyRelu", f"leaky_{i}", [y], out, alpha=_LEAKY_ALPHA) if p["leaky"] else y


def _decode(g: _Graph, head: str, shape: Shape, anchors: npt.NDArray[np.float64], stride: list[float]) -> str:
    """Decode one raw head into ``(1, anchors * H * W, 5 + classes)`` rows."""
    c, h, w = shape
    a, k = len(anchors), c // len(anchors)
    p = f"decode/{head}"
    x = g.node("Reshape", f"{p}/reshape", [head, g.const(f"{p}/shape_5d", [1, a, k, h, w], np.int64)])
    x = g.node("Transpose", f"{p}/transpose", [x], perm=[0, 1, 3, 4, 2])  # (1, A, H, W, K)
    axis = g.const(f"{p}/last_axis", [4], np.int64)

    def channels(name: str, start: int, end: int) -> str:
        bounds = [g.const(f"{p}/{name}_{label}", [v], np.int64) for label, v in (("start", start), ("end", end))]
        return g.node("Slice", f"{p}/slice_{name}", [x, *bounds, axis])

    grid = np.stack(np.meshgrid(np.arange(w), np.arange(h)), axis=-1)[None, None]  # (1, 1, H, W, [x, y])
    xy = g.node("Sigmoid", f"{p}/sigmoid_xy", [channels("xy", 0, 2)])
    xy = g.node("Add", f"{p}/add_grid", [xy, g.const(f"{p}/grid", grid)])
    xy = g.node("Mul", f"{p}/mul_stride", [xy, g.const(f"{p}/stride", stride)])
    wh = g.node("Exp", f"{p}/exp_wh", [channels("wh", 2, 4)])
    wh = g.node("Mul", f"{p}/mul_anchors", [wh, g.const(f"{p}/anchors", anchors.reshape(1, a, 1, 1, 2))])
    scores = g.node("Sigmoid", f"{p}/sigmoid_scores", [channels("scores", 4, k)])
    x = g.node("Concat", f"{p}/concat", [xy, wh, scores], axis=4)
    return g.node("Reshape", f"{p}/flatten", [x, g.const(f"{p}/shape_rows", [1, a * h * w, k], np.int64)])


def _layer_graph(g: _Graph, model: DarknetModel, floats: FloatArray) -> list[str]:
    """Add every layer's nodes and return the raw head tensors, named ``head_<grid height>``."""
    head_names = {i - 1: f"head_{model.layers[i].shape[1]}" for i in model.heads}
    outputs: list[str] = []
    offsets = np.cumsum([0] + [layer.floats for layer in model.layers])
    for i, layer in enumerate(model.layers):
        x, out, p = outputs[-1] if outputs else "images", head_names.get(i, f"{layer.kind}_{i}"), layer.params
        if layer.kind == "convolutional":
            in_channels = model.layers[i - 1].shape[0] if i else model.channels
            weights = floats[offsets[i] : offsets[i + 1]]
            outputs.append(_conv(g, i, layer, x=x, in_channels=in_channels, floats=weights, out=out))
        elif layer.kind == "maxpool":
            kernel, strides = [p["size"]] * 2, [p["stride"]] * 2
            pads = [p["before"], p["before"], p["after"], p["after"]]
            outputs.append(g.node("MaxPool", out, [x], kernel_shape=kernel, strides=strides, pads=pads))
        elif layer.kind == "upsample":
            scales = g.const(f"{out}.scales", [1, 1, p["stride"], p["stride"]])
            nearest = {
                "mode": "nearest",
                "coordinate_transformation_mode": "asymmetric",
                "nearest_mode": "floor",
            }
            outputs.append(g.node("Resize", out, [x, "", scales], **nearest))
        elif layer.kind == "route":
            sources = [outputs[s] for s in layer.sources]
            outputs.append(sources[0] if len(sources) == 1 else g.node("Concat", out, sources, axis=1))
        else:  # yolo: passes its raw input on
            outputs.append(x)
    return [outputs[i] for i in model.heads]


def convert_darknet(cfg_path: Path, weights_path: Path, out_path: Path, *, opset: int = 13) -> None:
    """Convert ``cfg_path`` + ``weights_path`` to a checked, shape-inferred ONNX model at ``out_path``."""
    if opset < _MIN_OPSET:
        raise ModelError(f"ONNX opset {opset} is not supported; the darknet converter needs {_MIN_OPSET}+.")
    model = DarknetModel.from_cfg(cfg_path.read_text())
    version, floats = _read_weights(weights_path)
    if floats.size != model.float_count:
        raise ModelError(
            f"Weights file {weights_path} holds {floats.size} floats after its header, "
            f"but {cfg_path} consumes {model.float_count}."
        )
    g = _Graph()
    heads = _layer_graph(g, model, floats)
    shapes = [model.layers[i].shape for i in model.heads]
    decoded = [
        _decode(g, head, (c, h, w), np.array(anchors), [model.width / w, model.height / h])
        for head, (c, h, w), anchors in zip(heads, shapes, model.anchors, strict=True)
    ]
    g.node("Concat", "decode/concat", decoded, "yolo_decoded", axis=1)

    rows = sum(len(anchors) * h * w for (_, h, w), anchors in zip(shapes, model.anchors, strict=True))
    value_info = helper.make_tensor_value_info
    graph = helper.make_graph(
        g.nodes,
        cfg_path.stem,
        [value_info("images", TensorProto.FLOAT, [1, model.channels, model.height, model.width])],
        [value_info(head, TensorProto.FLOAT, [1, *shape]) for head, shape in zip(heads, shapes, strict=True)]
        + [value_info("yolo_decoded", TensorProto.FLOAT, [1, rows, 5 + model.classes])],
        g.initializers,
        doc_string=(
            f"Converted by qc.convert.darknet from {cfg_path.name} + {weights_path.name} (darknet weights "
            f"format {version}, {floats.size} floats). Input: RGB in [0, 1], letterboxed with 0.5 gray."
        ),
    )
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="qc")
    onnx.checker.check_model(onnx_model, full_check=True)
    onnx_model = onnx.shape_inference.infer_shapes(onnx_model, check_type=True, strict_mode=True)
    onnx.save(onnx_model, out_path)
