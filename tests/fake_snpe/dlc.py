"""Build a fake ``.dlc`` (a zip the fake toolkit reads) from an ONNX model and calibration inputs."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort


def tf_encoding(lo: float, hi: float, bitwidth: int = 8) -> dict[str, float]:
    """SNPE's ``tf`` quantizer: the range widened to hold 0, zero exactly representable."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    levels = 2**bitwidth - 1
    if hi - lo < 1e-8:
        hi = lo + 1e-8 * levels
    scale = (hi - lo) / levels
    offset = float(round(lo / scale))
    return {
        "bitwidth": bitwidth,
        "min": offset * scale,
        "max": (offset + levels) * scale,
        "scale": scale,
        "offset": offset,
    }


def symmetric_encoding(lo: float, hi: float, bitwidth: int = 8) -> dict[str, float]:
    """QAIRT's symmetric (``sFxp``) encoding: signed, offset 0, ``scale = max|x| / (2^(b-1) - 1)``."""
    bound = max(abs(lo), abs(hi), 1e-8)
    top = 2 ** (bitwidth - 1) - 1
    scale = bound / top
    return {
        "bitwidth": bitwidth,
        "min": -(top + 1) * scale,
        "max": top * scale,
        "scale": scale,
        "offset": 0.0,
        "signed": True,
    }


def _expose_all(onnx_path: Path) -> ort.InferenceSession:
    """A plain onnxruntime session of ``onnx_path`` whose outputs are every node output (intermediates added as
    graph outputs here, with the types shape inference gives; none of qc's code is used)."""
    model = onnx.shape_inference.infer_shapes(onnx.load(str(onnx_path)))
    graph = model.graph
    known = {v.name: v for v in [*graph.value_info, *graph.output]}
    present = {o.name for o in graph.output}
    for node in graph.node:
        for name in node.output:
            if name and name not in present:
                info = onnx.ValueInfoProto()
                info.CopyFrom(known.get(name, onnx.ValueInfoProto(name=name)))
                graph.output.append(info)
                present.add(name)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def build_dlc(
    onnx_path: Path,
    calibration: Iterable[Mapping[str, np.ndarray]],
    out: Path,
    *,
    float_tensors: Iterable[str] = (),
    symmetric: Iterable[str] = (),
    graph: str = "model",
) -> Path:
    """Run the FP32 model on the calibration inputs (every tensor exposed), record each float tensor's shape and
    min/max, and write ``out``: a zip with ``model.onnx``, ``encodings.json`` (8-bit tf encodings of every tensor
    except ``float_tensors``; signed symmetric ones, dlc-info ``sFxp_8``, for ``symmetric``) and ``tensors.json``
    (ONNX shapes)."""
    session = _expose_all(onnx_path)
    names = [o.name for o in session.get_outputs()]
    lo: dict[str, float] = {}
    hi: dict[str, float] = {}
    shapes: dict[str, list[int]] = {}
    count = 0
    for feed in calibration:
        count += 1
        outs = session.run(names, {k: np.asarray(v) for k, v in feed.items()})
        values = {**{k: np.asarray(v) for k, v in feed.items()}, **dict(zip(names, map(np.asarray, outs), strict=True))}
        for name, value in values.items():
            if value.dtype.kind != "f":
                continue
            shapes[name] = list(value.shape)
            lo[name] = min(lo.get(name, np.inf), float(value.min()))
            hi[name] = max(hi.get(name, -np.inf), float(value.max()))
    if count == 0:
        raise ValueError("build_dlc needs at least one calibration input")
    skip, signed = set(float_tensors), set(symmetric)
    encodings = {
        n: symmetric_encoding(lo[n], hi[n]) if n in signed else tf_encoding(lo[n], hi[n])
        for n in shapes
        if n not in skip
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.write(onnx_path, "model.onnx")
        z.writestr("encodings.json", json.dumps(encodings, indent=1, sort_keys=True))
        z.writestr("tensors.json", json.dumps({"graph": graph, "shapes": shapes}, indent=1))
    return out
