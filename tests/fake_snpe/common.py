"""The fake SNPE toolkit's shared parts: version templates, faults, arguments, the fake DLC and its runtime."""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Sequence
from typing import Any

import numpy as np

FORMATS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "formats")
DEFAULT_FORMAT = "qairt-2.37"


def format_version() -> str:
    """The SDK version whose output formats this call prints (``FAKE_SNPE_VERSION``)."""
    version = os.environ.get("FAKE_SNPE_VERSION", DEFAULT_FORMAT)
    if not os.path.isdir(os.path.join(FORMATS, version, "templates")):
        known = sorted(os.listdir(FORMATS))
        raise ToolError(f"FAKE_SNPE_VERSION={version!r}: no templates (known: {', '.join(known)})")
    return version


def template(name: str) -> str | None:
    """``formats/<version>/templates/<name>`` (None when this version has no such part)."""
    path = os.path.join(FORMATS, format_version(), "templates", name)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as fh:
        return fh.read()


def render(part: str, /, **values: Any) -> str:
    text = template(part + ".tmpl")
    if text is None:
        raise ToolError(f"fake toolkit: version {format_version()} has no template {part}.tmpl")
    return text.format(**values)


def sdk_version() -> str:
    return (template("version.txt") or "").strip()


def dlc_style() -> dict[str, Any]:
    style: dict[str, Any] = json.loads(template("dlc_info.json") or "{}")
    return style


RUNTIMES = {
    "--use_dsp": ("DSP", "dsp_fixed8_tf", "cycles"),
    "--use_aip": ("AIP", "aip_fixed8_tf", "cycles"),
    "--use_gpu": ("GPU", "gpu_float32_16_hybrid", "us"),
    "--use_gpu_fp16": ("GPU", "gpu_float16", "us"),
    "--use_cpu": ("CPU", "cpu_float32", "us"),
}
QNN_TYPES = {
    "Conv": "Conv2d",
    "ConvTranspose": "TransposeConv2d",
    "LeakyRelu": "Prelu",
    "Concat": "Concat",
    "Slice": "StridedSlice",
    "MaxPool": "PoolMax2d",
    "AveragePool": "PoolAvg2d",
    "Resize": "ResizeNearestNeighbor",
    "Upsample": "ResizeNearestNeighbor",
    "Reshape": "Reshape",
    "Transpose": "Transpose",
    "MatMul": "MatMul",
    "Gemm": "FullyConnected",
    "ReduceMax": "ReduceMax",
    "Softmax": "Softmax",
}


def qnn_type(op_type: str) -> str:
    """The dlc-info type of an ONNX op in this version (activations and binary ops carry an operation code)."""
    style = dlc_style()
    if op_type in style.get("neuron_codes", {}):
        return str(style["neuron_type"])
    if op_type in style.get("binary_codes", {}):
        return str(style["binary_type"])
    return QNN_TYPES.get(op_type, op_type)


class ToolError(Exception):
    """Printed as ``ERROR: <message>`` on stderr; exit status 1."""


def faults() -> set[str]:
    return {f.strip() for f in os.environ.get("FAKE_SNPE_FAULT", "").split(",") if f.strip()}


def perturbed() -> set[str]:
    """Tensors named by ``perturb=<tensor>`` faults."""
    return {f.partition("=")[2] for f in faults() if f.startswith("perturb=")}


# ------------------------------------------------------------------------------------------------- arguments


def parse_args(tool: str, argv: Sequence[str], spec: dict[str, int]) -> dict[str, list[list[str]]]:
    """``spec``: flag -> number of values. Every occurrence is kept (``--container`` may repeat)."""
    out: dict[str, list[list[str]]] = {}
    i = 0
    while i < len(argv):
        flag = argv[i]
        if flag not in spec:
            raise ToolError(f"{tool}: unknown option '{flag}'. See '{tool} --help'.")
        count = spec[flag]
        values = list(argv[i + 1 : i + 1 + count])
        if len(values) != count or any(v.startswith("--") for v in values):
            raise ToolError(f"{tool}: option '{flag}' needs {count} value(s).")
        out.setdefault(flag, []).append(values)
        i += 1 + count
    return out


def one(args: dict[str, list[list[str]]], flag: str, default: str | None = None) -> str | None:
    values = args.get(flag)
    return values[-1][0] if values else default


# ------------------------------------------------------------------------------------------------- the DLC


def to_dlc(shape: Sequence[int]) -> tuple[int, ...]:
    s = tuple(int(d) for d in shape)
    return (s[0], s[2], s[3], s[1]) if len(s) == 4 else s


def array_to_dlc(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(x, (0, 2, 3, 1))) if x.ndim == 4 else x


def array_from_dlc(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2))) if x.ndim == 4 else x


class Dlc:
    def __init__(self, path: str) -> None:
        self.path = path
        try:
            with zipfile.ZipFile(path) as z:
                self.model_bytes = z.read("model.onnx")
                self.encodings: dict[str, dict[str, float]] = json.loads(z.read("encodings.json"))
                meta = json.loads(z.read("tensors.json"))
        except (OSError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
            raise ToolError(f"Failed to open the container {path}: {exc}") from None
        self.shapes: dict[str, tuple[int, ...]] = {k: tuple(v) for k, v in meta["shapes"].items()}
        self.graph_name: str = meta.get("graph", "model")
        import onnx

        self.model = onnx.load_from_string(self.model_bytes)
        graph = self.model.graph
        inits = {i.name for i in graph.initializer}
        self.inputs = [i.name for i in graph.input if i.name not in inits]
        self.outputs = [o.name for o in graph.output]
        self.initializers = {i.name: i for i in graph.initializer}
        self._sessions: dict[bool, Any] = {}

    def dtype(self, tensor: str) -> str:
        enc = self.encodings.get(tensor)
        if not enc:
            return "Float_32"
        return f"{'s' if enc.get('signed') else 'u'}Fxp_{enc['bitwidth']}"

    def dims(self, tensor: str) -> tuple[int, ...]:
        return to_dlc(self.shapes[tensor])

    def layers(self) -> list[dict[str, Any]]:
        """One layer per ONNX node with a float output (Constant nodes fold away, as in the converter)."""
        layers: list[dict[str, Any]] = []
        for idx, node in enumerate(self.model.graph.node):
            if node.op_type == "Constant":
                continue
            outs = [o for o in node.output if o in self.shapes]
            if not outs:
                continue
            layers.append(
                {
                    "id": len(layers),
                    "name": node.name or f"{node.op_type}_{idx}",
                    "node": node,
                    "type": qnn_type(node.op_type),
                    "inputs": [i for i in node.input if i],
                    "outputs": outs,
                }
            )
        return layers

    def session(self, expose_all: bool) -> Any:
        if expose_all not in self._sessions:
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.log_severity_level = 3
            opts.intra_op_num_threads = 1
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            model = self.fake_quantized(expose_all)
            self._sessions[expose_all] = ort.InferenceSession(
                model.SerializeToString(), opts, providers=["CPUExecutionProvider"]
            )
        return self._sessions[expose_all]

    def fake_quantized(self, expose_all: bool) -> Any:
        """The FP32 model with Q/DQ after every encoded tensor: what a quantized runtime computes, in float."""
        import onnx
        from onnx import TensorProto, helper, numpy_helper

        model = onnx.ModelProto()
        model.CopyFrom(self.model)
        graph = model.graph
        nodes = []
        extra_inits = []

        def qdq(src: str, dst: str) -> None:
            enc = self.encodings[dst]
            if int(enc["bitwidth"]) != 8:
                raise ToolError(f"the fake runtime only runs 8-bit encodings ({dst}: {enc['bitwidth']})")
            extra_inits.append(numpy_helper.from_array(np.array(enc["scale"], np.float32), f"{dst}__qc_s"))
            if enc.get("signed"):
                zp = int(np.clip(round(-enc["offset"]), -128, 127))
                extra_inits.append(numpy_helper.from_array(np.array(zp, np.int8), f"{dst}__qc_z"))
            else:
                zp = int(np.clip(round(-enc["offset"]), 0, 255))
                extra_inits.append(numpy_helper.from_array(np.array(zp, np.uint8), f"{dst}__qc_z"))
            nodes.append(helper.make_node("QuantizeLinear", [src, f"{dst}__qc_s", f"{dst}__qc_z"], [f"{dst}__qc_q"]))
            dq_args = [f"{dst}__qc_q", f"{dst}__qc_s", f"{dst}__qc_z"]
            if dst not in perturbed():
                nodes.append(helper.make_node("DequantizeLinear", dq_args, [dst]))
                return
            dq_out = f"{dst}__qc_dq"
            nodes.append(helper.make_node("DequantizeLinear", dq_args, [dq_out]))
            extra_inits.append(numpy_helper.from_array(np.array(0.8, np.float32), f"{dst}__qc_fault"))
            nodes.append(helper.make_node("Mul", [dq_out, f"{dst}__qc_fault"], [dst]))

        for inp in graph.input:
            if inp.name in self.encodings:
                raw = inp.name + "__qc_raw"
                qdq(raw, inp.name)
                inp.name = raw
        for node in list(graph.node):
            new = onnx.NodeProto()
            new.CopyFrom(node)
            renamed = []
            for k, out in enumerate(new.output):
                if out in self.encodings:
                    new.output[k] = out + "__qc_f"
                    renamed.append(out)
            nodes.insert(len(nodes), new)
            for out in renamed:
                qdq(out + "__qc_f", out)
        del graph.node[:]
        graph.node.extend(nodes)
        graph.initializer.extend(extra_inits)
        if expose_all:
            existing = {o.name for o in graph.output}
            for name in self.shapes:
                if name not in existing and name not in self.inputs:
                    graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
        return model

    def feed_name(self, name: str) -> str:
        return name + "__qc_raw" if name in self.encodings else name
