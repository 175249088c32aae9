"""Fake QNN context binaries for the fake toolkit.

A real context binary is an HTP program the fake cannot run, so the fake's "context binary" carries what it needs
instead: a zip holding the model the context was prepared from (``model.onnx``, usually the QDQ model) and the
context's graph I/O table (``io.json``: name, QNN data type, dimensions, scale/offset, and the ONNX tensor each one
is), so uploading the one file is enough (no sidecar). :func:`build_context` derives the table from a QDQ model the
way QNN's converter treats its graph I/O: a graph input consumed only by a QuantizeLinear becomes a fixed-point input
with that encoding, a graph output made by a DequantizeLinear a fixed-point output; everything else stays float32.
Tensor names become C identifiers (``identifiers=True``, as the converters do) or stay verbatim (as an
onnxruntime-exported context may keep them); 4-D tensors are NHWC (``layout="nhwc"``) or keep the ONNX layout.
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path
from typing import Any

import onnx
from onnx import numpy_helper

MAGIC = "fake-qnn-context/1"


def c_identifier(name: str) -> str:
    ident = re.sub(r"[^A-Za-z0-9_]", "_", name)
    return "_" + ident if not ident or ident[0].isdigit() else ident


def _encoding(model: onnx.ModelProto, node: onnx.NodeProto) -> tuple[str, float, int]:
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    scale = float(inits[node.input[1]].reshape(-1)[0])
    zp_arr = inits[node.input[2]] if len(node.input) > 2 and node.input[2] else None
    zero = int(zp_arr.reshape(-1)[0]) if zp_arr is not None else 0
    signed = zp_arr is not None and zp_arr.dtype.kind == "i"
    bits = zp_arr.dtype.itemsize * 8 if zp_arr is not None else 8
    return f"QNN_DATATYPE_{'S' if signed else 'U'}FIXED_POINT_{bits}", scale, -zero


def _dims(value: Any) -> list[int]:
    return [int(d.dim_value) for d in value.type.tensor_type.shape.dim]


def build_context(
    model_path: Path,
    out: Path,
    *,
    graph: str = "model",
    layout: str = "nhwc",
    identifiers: bool = True,
    quantized_io: bool = True,
) -> Path:
    """Write a fake context binary for ``model_path`` to ``out``."""
    model = onnx.load(str(model_path))
    consumers: dict[str, list[onnx.NodeProto]] = {}
    producers: dict[str, onnx.NodeProto] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
        for name in node.output:
            producers[name] = node
    inits = {i.name for i in model.graph.initializer}

    def entry(value: Any, node: onnx.NodeProto | None) -> dict[str, Any]:
        dims = _dims(value)
        nhwc = layout == "nhwc" and len(dims) == 4
        item: dict[str, Any] = {
            "onnx": value.name,
            "name": c_identifier(value.name) if identifiers else value.name,
            "dims": [dims[0], dims[2], dims[3], dims[1]] if nhwc else dims,
            "nhwc": nhwc,
            "dtype": "QNN_DATATYPE_FLOAT_32",
        }
        if quantized_io and node is not None:
            dtype, scale, offset = _encoding(model, node)
            item.update(dtype=dtype, scale=scale, offset=offset)
        return item

    inputs = []
    for value in model.graph.input:
        if value.name in inits:
            continue
        users = consumers.get(value.name, [])
        quant = users[0] if len(users) == 1 and users[0].op_type == "QuantizeLinear" else None
        inputs.append(entry(value, quant))
    outputs = []
    for value in model.graph.output:
        producer = producers.get(value.name)
        dq = producer if producer is not None and producer.op_type == "DequantizeLinear" else None
        outputs.append(entry(value, dq))
    table = {"format": MAGIC, "graph": graph, "inputs": inputs, "outputs": outputs}
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("io.json", json.dumps(table, indent=1))
        z.write(model_path, "model.onnx")
    return out
