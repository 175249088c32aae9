"""qc.convert.darknet on tiny synthetic cfg + weights files, checked against a plain numpy reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
import pytest

from qc.convert.darknet import DarknetModel, convert_darknet, parse_cfg
from qc.errors import ModelError

Array = npt.NDArray[np.float64]

# Input 16 wide, 11 high: not square, and the 8x6 head has different x and y strides (2 and 11/6).
TWO_CONV_CFG = """\
[net]
# comments, blank lines and training keys are ignored
batch=1
width = 16
height = 11
channels=3

[convolutional]
batch_normalize=1
filters=4
size=3
stride=2
pad=1
activation=leaky

[convolutional]
size=1
stride=1
pad=1
filters=14
activation=linear

[yolo]
mask = 1,2
anchors = 1,2, 3,4, 5,6
classes=2
num=3
"""

# Every other layer type: the stride-1 maxpool needs asymmetric padding, the route mixes both index styles.
ALL_LAYERS_CFG = """\
[net]
width=8
height=8
channels=3

[convolutional]
batch_normalize=1
filters=4
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=1

[maxpool]
size=2
stride=2

[upsample]
stride=2

[route]
layers = -1, 0

[convolutional]
size=1
stride=1
pad=1
filters=7
activation=linear

[yolo]
mask = 0
anchors = 2,3
classes=2
"""


def _sigmoid(x: Array) -> Array:
    return 1.0 / (1.0 + np.exp(-x))


def _conv(x: Array, kernel: Array, stride: int, pad: int) -> Array:
    """Cross-correlation of one (C, H, W) image with zero padding, no bias."""
    size = kernel.shape[-1]
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    h = (padded.shape[1] - size) // stride + 1
    w = (padded.shape[2] - size) // stride + 1
    out = np.zeros((kernel.shape[0], h, w))
    for i in range(size):
        for j in range(size):
            patch = padded[:, i : i + stride * h : stride, j : j + stride * w : stride]
            out += np.einsum("fc,chw->fhw", kernel[:, :, i, j], patch)
    return out


def _maxpool(x: Array, size: int, stride: int) -> Array:
    """Darknet maxpool: size-1 padding in total, (size-1)//2 before and the rest after."""
    before, after = (size - 1) // 2, size - 1 - (size - 1) // 2
    padded = np.pad(x, ((0, 0), (before, after), (before, after)), constant_values=-np.inf)
    h = (padded.shape[1] - size) // stride + 1
    w = (padded.shape[2] - size) // stride + 1
    out = np.full((x.shape[0], h, w), -np.inf)
    for i in range(size):
        for j in range(size):
            out = np.maximum(out, padded[:, i : i + stride * h : stride, j : j + stride * w : stride])
    return out


class _Weights:
    """Random darknet conv parameters, kept both as the file's float order and for the numpy reference."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.floats: list[Array] = []

    def conv(self, x: Array, filters: int, size: int, stride: int, *, bn: bool, leaky: bool) -> Array:
        bias = self.rng.normal(size=filters)
        kernel = self.rng.normal(scale=0.5, size=(filters, x.shape[0], size, size))
        y = _conv(x, kernel, stride, size // 2)
        if bn:
            gamma = self.rng.uniform(0.5, 2.0, filters)
            mean = self.rng.normal(size=filters)
            variance = self.rng.uniform(0.05, 2.0, filters)
            self.floats += [bias, gamma, mean, variance, kernel.ravel()]
            y = (y - mean[:, None, None]) / np.sqrt(variance[:, None, None] + 1e-5) * gamma[:, None, None]
        else:
            self.floats += [bias, kernel.ravel()]
        y += bias[:, None, None]
        return np.where(y > 0, y, 0.1 * y) if leaky else y

    def write(self, path: Path, *, major: int = 0, minor: int = 2, extra: int = 0) -> int:
        """Write a darknet file with ``extra`` floats too many (too few if negative); return the cfg count."""
        values = np.concatenate(self.floats).astype("<f4")
        count = values.size
        values = np.concatenate([values, np.ones(max(extra, 0), "<f4")])[: count + extra]
        seen = np.array([1234], "<i8" if major * 10 + minor >= 2 else "<i4")
        path.write_bytes(np.array([major, minor, 5], "<i4").tobytes() + seen.tobytes() + values.tobytes())
        return count


def _decode(head: Array, anchors: Array, stride_x: float, stride_y: float) -> Array:
    """The yolo decode written out per field: rows anchor-major, then y, then x."""
    a, (c, h, w) = len(anchors), head.shape
    t = head.reshape(a, c // a, h, w).transpose(0, 2, 3, 1)  # (A, H, W, K)
    grid_y, grid_x = np.mgrid[0:h, 0:w]
    out = np.empty_like(t)
    out[..., 0] = (_sigmoid(t[..., 0]) + grid_x) * stride_x
    out[..., 1] = (_sigmoid(t[..., 1]) + grid_y) * stride_y
    out[..., 2] = np.exp(t[..., 2]) * anchors[:, 0, None, None]
    out[..., 3] = np.exp(t[..., 3]) * anchors[:, 1, None, None]
    out[..., 4:] = _sigmoid(t[..., 4:])
    return out.reshape(-1, c // a)


def _run(model_path: Path, image: Array) -> dict[str, npt.NDArray[np.float32]]:
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {"images": image[None].astype(np.float32)}), strict=True))


def _convert(tmp_path: Path, cfg: str, weights: _Weights, **write: int) -> Path:
    (tmp_path / "net.cfg").write_text(cfg)
    weights.write(tmp_path / "net.weights", **write)
    convert_darknet(tmp_path / "net.cfg", tmp_path / "net.weights", tmp_path / "net.onnx")
    return tmp_path / "net.onnx"


def _two_conv_reference(seed: int) -> tuple[Array, _Weights, Array]:
    """Input image, weights and the numpy head of TWO_CONV_CFG."""
    weights = _Weights(seed)
    image = weights.rng.uniform(0, 1, (3, 11, 16))
    x = weights.conv(image, 4, 3, 2, bn=True, leaky=True)
    return image, weights, weights.conv(x, 14, 1, 1, bn=False, leaky=False)


def test_parse_cfg_keeps_section_order_and_strips_comments() -> None:
    sections = parse_cfg(TWO_CONV_CFG)
    assert [s["type"] for s in sections] == ["net", "convolutional", "convolutional", "yolo"]
    assert sections[0] == {"type": "net", "batch": "1", "width": "16", "height": "11", "channels": "3"}
    assert sections[3]["mask"] == "1,2"
    assert sections[3]["anchors"] == "1,2, 3,4, 5,6"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("width=3\n[net]\n", "neither"),
        ("[net]\nwidth=3\nwidth=4\n", "repeated"),
        ("[net]\nwidth\n", "neither"),
    ],
)
def test_parse_cfg_rejects_malformed_lines(text: str, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        parse_cfg(text)


def test_model_infers_shapes_anchors_and_float_count() -> None:
    model = DarknetModel.from_cfg(ALL_LAYERS_CFG)
    assert [layer.shape for layer in model.layers] == [
        (4, 8, 8), (4, 8, 8), (4, 4, 4), (4, 8, 8), (8, 8, 8), (7, 8, 8), (7, 8, 8),
    ]  # fmt: skip
    assert model.layers[4].sources == (3, 0)
    assert model.heads == (6,)
    assert model.anchors == (((2.0, 3.0),),)
    assert model.classes == 2
    assert model.float_count == (4 * 4 + 4 * 3 * 9) + (7 + 7 * 8)


def test_conv_bn_leaky_and_decode_match_numpy(tmp_path: Path) -> None:
    image, weights, head = _two_conv_reference(seed=0)
    outputs = _run(_convert(tmp_path, TWO_CONV_CFG, weights), image)

    assert list(outputs) == ["head_6", "yolo_decoded"]
    np.testing.assert_allclose(outputs["head_6"][0], head, rtol=1e-4, atol=1e-4)
    anchors = np.array([[3.0, 4.0], [5.0, 6.0]])  # mask 1,2
    expected = _decode(head, anchors, stride_x=16 / 8, stride_y=11 / 6)
    assert outputs["yolo_decoded"].shape == (1, 2 * 6 * 8, 7)
    np.testing.assert_allclose(outputs["yolo_decoded"][0], expected, rtol=1e-4, atol=1e-4)


def _all_layers_reference(seed: int) -> tuple[Array, _Weights, Array]:
    """Input image, weights and the numpy head of ALL_LAYERS_CFG."""
    weights = _Weights(seed)
    image = weights.rng.uniform(0, 1, (3, 8, 8))
    x0 = weights.conv(image, 4, 3, 1, bn=True, leaky=True)
    x2 = _maxpool(_maxpool(x0, 2, 1), 2, 2)
    x3 = x2.repeat(2, axis=1).repeat(2, axis=2)
    return image, weights, weights.conv(np.concatenate([x3, x0]), 7, 1, 1, bn=False, leaky=False)


def test_maxpool_route_upsample_match_numpy(tmp_path: Path) -> None:
    image, weights, head = _all_layers_reference(seed=1)
    outputs = _run(_convert(tmp_path, ALL_LAYERS_CFG, weights), image)

    np.testing.assert_allclose(outputs["head_8"][0], head, rtol=1e-4, atol=1e-4)
    expected = _decode(head, np.array([[2.0, 3.0]]), stride_x=1.0, stride_y=1.0)
    np.testing.assert_allclose(outputs["yolo_decoded"][0], expected, rtol=1e-4, atol=1e-4)


def test_maxpool_pads_follow_darknet(tmp_path: Path) -> None:
    _, weights, _ = _all_layers_reference(seed=1)
    graph = onnx.load(_convert(tmp_path, ALL_LAYERS_CFG, weights)).graph
    pools = {n.name: n for n in graph.node if n.op_type == "MaxPool"}
    attrs = {name: {a.name: list(a.ints) for a in node.attribute} for name, node in pools.items()}
    assert attrs["maxpool_1"] == {"kernel_shape": [2, 2], "strides": [1, 1], "pads": [0, 0, 1, 1]}
    assert attrs["maxpool_2"] == {"kernel_shape": [2, 2], "strides": [2, 2], "pads": [0, 0, 1, 1]}


def test_graph_names_and_doc_string(tmp_path: Path) -> None:
    _, weights, _ = _two_conv_reference(seed=0)
    model = onnx.load(_convert(tmp_path, TWO_CONV_CFG, weights))
    names = [node.name for node in model.graph.node]
    assert len(set(names)) == len(names)
    assert names[:3] == ["conv_0", "leaky_0", "conv_1"]
    assert all(name.startswith("decode/") for name in names[3:])
    assert [o.name for o in model.graph.output] == ["head_6", "yolo_decoded"]
    assert model.graph.input[0].name == "images"
    assert {i.name for i in model.graph.initializer} >= {"conv_0.weight", "conv_0.bias", "conv_1.weight"}
    assert "net.cfg" in model.graph.doc_string
    assert "net.weights" in model.graph.doc_string


@pytest.mark.parametrize(("major", "minor"), [(0, 1), (0, 2), (1, 0)])
def test_header_seen_is_int32_before_format_0_2(tmp_path: Path, major: int, minor: int) -> None:
    image, weights, head = _two_conv_reference(seed=0)
    outputs = _run(_convert(tmp_path, TWO_CONV_CFG, weights, major=major, minor=minor), image)
    np.testing.assert_allclose(outputs["head_6"][0], head, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("extra", [1, -1, -100])
def test_weight_count_mismatch_names_both_counts(tmp_path: Path, extra: int) -> None:
    _, weights, _ = _two_conv_reference(seed=0)
    (tmp_path / "net.cfg").write_text(TWO_CONV_CFG)
    count = weights.write(tmp_path / "net.weights", extra=extra)
    with pytest.raises(ModelError, match=rf"holds {count + extra} floats .* consumes {count}\."):
        convert_darknet(tmp_path / "net.cfg", tmp_path / "net.weights", tmp_path / "net.onnx")
    assert not (tmp_path / "net.onnx").exists()


def test_header_with_wrong_seen_width_is_a_count_mismatch(tmp_path: Path) -> None:
    """A 0.2 header declares an int64 `seen`; a file that wrote int32 is one float short."""
    _, weights, _ = _two_conv_reference(seed=0)
    (tmp_path / "net.cfg").write_text(TWO_CONV_CFG)
    count = weights.write(tmp_path / "net.weights", major=0, minor=1)
    data = (tmp_path / "net.weights").read_bytes()
    (tmp_path / "net.weights").write_bytes(np.array([0, 2, 0], "<i4").tobytes() + data[12:])
    with pytest.raises(ModelError, match=rf"holds {count - 1} floats .* consumes {count}\."):
        convert_darknet(tmp_path / "net.cfg", tmp_path / "net.weights", tmp_path / "net.onnx")


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("[yolo]", "[shortcut]\nfrom=-1\n\n[yolo]", r"layer 2 \[shortcut\]: this section type is not"),
        ("stride=2\n", "stride=2\ngroups=2\n", r"layer 0 \[convolutional\]: unsupported keys groups"),
        ("activation=leaky", "activation=mish", "activation=mish"),
        ("width = 16", "width = 16\nresize=1.5", r"\[net\] section: unsupported keys resize"),
        ("mask = 1,2", "mask = 1,3", "does not fit the anchors"),
        ("filters=14", "filters=13", "13 input channels do not fit mask"),
        ("classes=2", "", "lacks the key 'classes'"),
    ],
)
def test_unsupported_or_inconsistent_cfg_raises(tmp_path: Path, old: str, new: str, message: str) -> None:
    assert old in TWO_CONV_CFG
    with pytest.raises(ModelError, match=message):
        DarknetModel.from_cfg(TWO_CONV_CFG.replace(old, new))


def test_route_sources_must_be_earlier_layers() -> None:
    with pytest.raises(ModelError, match=r"route sources \(5,\) must be earlier"):
        DarknetModel.from_cfg(ALL_LAYERS_CFG.replace("layers = -1, 0", "layers = 5"))


def test_opset_below_13_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="opset 11"):
        convert_darknet(tmp_path / "a.cfg", tmp_path / "a.weights", tmp_path / "a.onnx", opset=11)
