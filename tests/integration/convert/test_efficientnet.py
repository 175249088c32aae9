"""qc's EfficientNet-Lite0 conversion (checkpoint read without torch) checked two independent ways: the published
accuracy on the 20 labelled ImageNet photos, and one block recomputed in plain numpy from the raw checkpoint."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
import pytest

from qc.assets import TaskAssetPaths
from qc.config import Preprocess
from qc.convert.efficientnet import block_specs, build_efficientnet, same_pads
from qc.convert.torch_checkpoint import load_state_dict
from qc.data.images import read_rgb
from qc.data.preprocess import preprocess
from qc.eval.classification import label_from_name

F32 = npt.NDArray[np.float32]
SPEC = Preprocess(size=(224, 224), mode="resize", scale=1.0, mean=(127.0, 127.0, 127.0), std=(128.0, 128.0, 128.0))


def _session(model: onnx.ModelProto, extra_outputs: tuple[str, ...] = ()) -> ort.InferenceSession:
    m = onnx.ModelProto.FromString(model.SerializeToString())
    for name in extra_outputs:
        m.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])


def test_published_accuracy_on_the_foolbox_imagenet_photos(task_assets: TaskAssetPaths) -> None:
    """The checkpoint's published result on these 20 photos: 17/20 top-1, 20/20 top-5 (224x224 photos)."""
    photos = sorted(task_assets.imagenet_images.glob("imagenet_*.jpg"))
    assert len(photos) == 20
    session = ort.InferenceSession(str(task_assets.efficientnet), providers=["CPUExecutionProvider"])
    top1 = top5 = 0
    for photo in photos:
        x, _ = preprocess(read_rgb(photo), SPEC, (224, 224))
        logits = session.run(None, {"input": x})[0][0]
        label = label_from_name(photo.name, r"_(\d+)\.\w+$")
        best = np.argsort(-logits)[:5]
        top1 += int(best[0] == label)
        top5 += int(label in best)
    assert (top1, top5) == (17, 20)


def _conv(x: F32, w: F32, stride: int, pads: tuple[int, int], groups: int) -> F32:
    """A direct (slow, obvious) 2-D convolution: x (C, H, W), w (O, C/groups, k, k), same pads on both axes."""
    _, h, wd = x.shape
    o, cg, k, _ = w.shape
    xp = np.pad(x, ((0, 0), (pads[0], pads[1]), (pads[0], pads[1])))
    oh = (h + pads[0] + pads[1] - k) // stride + 1
    ow = (wd + pads[0] + pads[1] - k) // stride + 1
    out = np.zeros((o, oh, ow), np.float64)
    per_group = o // groups
    for oc in range(o):
        g = oc // per_group
        src = xp[g * cg : (g + 1) * cg]
        for i in range(k):
            for j in range(k):
                patch = src[:, i : i + stride * oh : stride, j : j + stride * ow : stride]
                out[oc] += np.tensordot(w[oc, :, i, j], patch, axes=(0, 0))
    return out.astype(np.float32)


def _bn(x: F32, sd: dict[str, np.ndarray], prefix: str, eps: float = 1e-3) -> F32:
    shape = (-1, 1, 1)
    gamma, beta = sd[prefix + ".weight"].reshape(shape), sd[prefix + ".bias"].reshape(shape)
    mean, var = sd[prefix + ".running_mean"].reshape(shape), sd[prefix + ".running_var"].reshape(shape)
    out: F32 = ((x - mean) / np.sqrt(var + eps) * gamma + beta).astype(np.float32)
    return out


def test_a_stride_two_block_matches_a_plain_numpy_implementation(task_assets: TaskAssetPaths) -> None:
    """Block 3 (expand 1x1, depthwise 5x5 stride 2 with TF SAME padding, project 1x1), batch norm NOT folded."""
    sd = load_state_dict(task_assets.efficientnet_checkpoint)
    spec = block_specs(sd)[3]
    assert (spec.kernel, spec.stride, spec.expand, spec.skip) == (5, 2, True, False)
    model = build_efficientnet(sd)
    photo = sorted(task_assets.imagenet_images.glob("*.jpg"))[0]
    x, _ = preprocess(read_rgb(photo), SPEC, (224, 224))
    block_in, block_out = _session(model, ("block2", "block3")).run(["block2", "block3"], {"input": x})
    a = block_in[0]
    p = "_blocks.3."
    h = np.clip(_bn(_conv(a, sd[p + "_expand_conv.weight"], 1, (0, 0), 1), sd, p + "_bn0"), 0, 6)
    h = np.clip(_bn(_conv(h, sd[p + "_depthwise_conv.weight"], 2, same_pads(56, 5, 2), 144), sd, p + "_bn1"), 0, 6)
    expected = _bn(_conv(h, sd[p + "_project_conv.weight"], 1, (0, 0), 1), sd, p + "_bn2")
    assert block_out[0].shape == expected.shape == (40, 28, 28)
    scale = float(np.abs(expected).max())
    assert np.abs(block_out[0] - expected).max() < 1e-4 * max(scale, 1.0)


def test_every_checkpoint_tensor_is_used_and_symmetric_padding_is_worse(task_assets: TaskAssetPaths) -> None:
    """The converter refuses leftovers; PyTorch-style symmetric padding (the wrong choice here) loses accuracy."""
    sd = load_state_dict(task_assets.efficientnet_checkpoint)
    assert (
        sum(v.size for k, v in sd.items() if not k.endswith("num_batches_tracked")) == 4_694_024
    )  # parameters and BN statistics
    sd_extra = dict(sd)
    sd_extra["_extra.weight"] = np.zeros(3, np.float32)
    with pytest.raises(Exception, match="did not use 1 checkpoint tensors"):
        build_efficientnet(sd_extra)
    same = _session(build_efficientnet(sd, padding="same"))
    sym = _session(build_efficientnet(sd, padding="symmetric"))
    photo = sorted(task_assets.imagenet_images.glob("*.jpg"))[1]
    x, _ = preprocess(read_rgb(photo), SPEC, (224, 224))
    a, b = same.run(None, {"input": x})[0], sym.run(None, {"input": x})[0]
    assert np.abs(a - b).max() > 0.1  # the padding choice is visible, so the published-accuracy test can tell
