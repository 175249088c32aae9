"""A fake SNPE toolkit: ``snpe-net-run``, ``snpe-throughput-net-run``, ``snpe-dlc-info`` and ``snpe-diagview``.

Standalone on purpose (numpy, onnx and onnxruntime only; nothing of qc), so qc's parsers and runner are tested
against an independent implementation of the formats in ``/work/shared/reference/snpe-tools.md``.

A fake ``.dlc`` is a zip (see :mod:`tests.fake_snpe.dlc`): ``model.onnx`` (FP32), ``encodings.json`` (per-tensor
``bitwidth/min/max/scale/offset`` from calibration), ``tensors.json`` (every float tensor's ONNX shape). The fake
"quantized runtime" runs the model with a QuantizeLinear/DequantizeLinear pair after every encoded tensor (inputs,
every layer output), so its values carry a real 8-bit activation quantization error.

Behaviours reproduced (flags are checked; an unknown flag is an error, as in the real tools):

* DLC layout: 4-D tensors are NHWC in the DLC (dims, raw files); other ranks keep the ONNX order.
* ``snpe-net-run``: ``--container --input_list --output_dir [--debug] [--use_dsp|--use_gpu|--use_gpu_fp16|--use_aip|
  --use_cpu] [--perf_profile P] [--profiling_level L] [--use_native_input_files] [--use_native_output_files]
  [--userbuffer_*]``; the native flags need a ``--userbuffer_*`` flag; input lists with bare paths (one input) or
  ``name:=path``, optional ``#``/``%`` first line; input files must have exactly the DLC size; results in
  ``<out>/Result_<i>/<tensor>.raw`` (a leading ``/`` dropped); with ``--debug`` every layer output, and a name with
  ``/`` needs its folder to exist: otherwise ``Failed to write data to: <path>`` on stderr, the tensor is skipped and
  the exit status is 1; ``SNPEDiag.log`` in the output folder (per-layer times only with
  ``--profiling_level detailed``).
* ``snpe-throughput-net-run --container --duration [--perf_profile] [runtime flag]``: thread line + total line.
* ``snpe-dlc-info -i <dlc> [-s csv] [-m] [-d]``: the padded ``| Id | Name | Type | ...`` table with continuation rows,
  encodings (per-channel weights with ``axis-quant``), I/O tables, unconsumed tensors, totals.
* ``snpe-diagview --input_log <log> [--csv_format_version 2 --output <csv>]``: CSV v2 or the text form.

Console output is rendered from the hand-written templates of one SDK version,
``tests/fake_snpe/formats/<version>/templates/`` (``FAKE_SNPE_VERSION``, default ``qairt-2.37``): never from qc's
parsers. The versions differ as the real tools do: SNPE 2.9 prints name-less ``Layer Times:`` rows under a dashed
rule; QAIRT 2.37 prints ``Per-Layer Execution Times:`` with HTP pseudo-layers ``Input OpId_n``/``Output OpId_n``
on the DSP and ``_``-prefixed names without OpId on the CPU; dlc-info names activations ``ElementWiseNeuron`` with an
``operation:`` code; QAIRT writes symmetric ``sFxp_8`` weights.

With ``FAKE_SNPE_LOG`` set, every call appends a JSON line (tool, argv, cwd, number of inputs) to that file.

Faults for tests, from the environment variable ``FAKE_SNPE_FAULT`` (comma separated): ``oom`` (net-run is killed
by SIGKILL: exit status 137 through the shell), ``missing_output`` / ``short_output`` (first graph output of
``Result_0`` absent / truncated, non-debug runs), ``bad_throughput``, ``bad_dlcinfo``, ``bad_diagview``,
``old_diagview`` (no ``--csv_format_version``), ``repeat_inputs`` (net-run prints every input file twice, as
when a native input file holds two tensors' worth of data), ``perturb=<tensor>`` (the "device" multiplies that
encoded tensor by 0.8 after its fake quantization, as a runtime bug would: later layers compute on the perturbed
value).
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import sys
import time
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


# ------------------------------------------------------------------------------------------------- formats


def encoding_text(enc: dict[str, float]) -> str:
    return (
        f"bitwidth {int(enc['bitwidth'])}, min {enc['min']:.12f}, max {enc['max']:.12f}, "
        f"scale {enc['scale']:.12f}, offset {enc['offset']:.12f}"
    )


def si(n: int) -> str:
    if n >= 1_000_000:
        return f"{n // 1_000_000}M"
    if n >= 1000:
        return f"{n // 1000}k"
    return str(n)


def _attr(node: Any, name: str, default: Any) -> Any:
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def layer_params(dlc: Dlc, layer: dict[str, Any], first: bool) -> tuple[list[str], int, int]:
    """Parameter lines, parameter count and MACs of one layer."""
    from onnx import numpy_helper

    node = layer["node"]
    lines: list[str] = []
    params = 0
    macs = 0
    if first:
        for name in dlc.inputs:
            if name in layer["inputs"] and name in dlc.encodings:
                lines.append(f"{name} encoding : {encoding_text(dlc.encodings[name])}")
    for name in layer["inputs"]:
        init = dlc.initializers.get(name)
        if init is None:
            continue
        w = numpy_helper.to_array(init)
        if w.dtype.kind != "f":
            continue
        params += int(w.size)
        if node.op_type == "Conv" and w.ndim == 4 and name == layer["inputs"][1]:
            ch0 = w[0]
            offset = float(dlc_style().get("weight_offset", -128.0))
            if offset == 0.0:  # symmetric (sFxp_8): [-127, 127] steps around 0
                bound = float(np.abs(ch0).max()) or 1e-8
                scale = bound / 127
                lo, hi = -128 * scale, bound
            else:
                lo, hi = min(float(ch0.min()), 0.0), max(float(ch0.max()), 0.0)
                scale = (hi - lo) / 255 or 1e-8
            enc = {"bitwidth": 8, "min": lo, "max": hi, "scale": scale, "offset": offset}
            lines.append(f"{name} encoding for channel_0: {encoding_text(enc)}")
            lines.append(
                f"axis-quant: axis: 3, num_elements: {w.shape[0]} (above encoding is only for the first "
                f"(channel_0) of {w.shape[0]} channels)"
            )
        elif node.op_type == "Conv" and w.ndim == 1:
            bound = float(np.abs(w).max()) or 1.0
            enc = {"bitwidth": 32, "min": -bound, "max": bound, "scale": bound / 2**31, "offset": -(2.0**31)}
            lines.append(f"{name} encoding : {encoding_text(enc)}")
        elif w.size == 1:
            v = float(w.reshape(-1)[0])
            lo, hi = min(v, 0.0), max(v, 0.0)
            enc = {"bitwidth": 8, "min": lo, "max": hi, "scale": (hi - lo) / 255 or 1e-8, "offset": 0.0}
            lines.append(f"{name} encoding : {encoding_text(enc)}")
    for out in layer["outputs"]:
        if out in dlc.encodings:
            lines.append(f"{out} encoding : {encoding_text(dlc.encodings[out])}")
    if node.op_type == "Conv":
        w = numpy_helper.to_array(dlc.initializers[layer["inputs"][1]])
        out_shape = dlc.shapes[layer["outputs"][0]]
        group = int(_attr(node, "group", 1))
        macs = int(np.prod(out_shape)) * int(w.shape[1]) * int(w.shape[2]) * int(w.shape[3])
        pads = list(_attr(node, "pads", [0, 0, 0, 0]))
        lines += [
            f"dilation: {list(_attr(node, 'dilations', [1, 1]))}",
            f"group: {group}",
            f"pad_amount: [[{pads[0]}, {pads[2]}], [{pads[1]}, {pads[3]}]]",
            f"stride: {list(_attr(node, 'strides', [1, 1]))}",
        ]
    elif node.op_type in dlc_style().get("binary_codes", {}):
        lines.append(f"operation: {dlc_style()['binary_codes'][node.op_type]}")
        macs = int(np.prod(dlc.shapes[layer["outputs"][0]]))
    elif node.op_type in dlc_style().get("neuron_codes", {}):
        lines.append(f"operation: {dlc_style()['neuron_codes'][node.op_type]}")
    elif node.op_type == "Concat":
        axis = int(_attr(node, "axis", 0))
        rank = len(dlc.shapes[layer["outputs"][0]])
        axis = axis % rank
        lines.append(f"axis: {(0, 3, 1, 2)[axis] if rank == 4 else axis}")
    if dlc_style().get("package_line"):
        lines.append(str(dlc_style()["package_line"]))
    return lines, params, macs


def tensor_cell(dlc: Dlc, name: str, kind: str) -> str:
    if kind == "STATIC":
        from onnx import numpy_helper

        w = numpy_helper.to_array(dlc.initializers[name])
        wdims = list(w.shape)
        if w.ndim == 4:  # OIHW -> HWIO
            wdims = [wdims[2], wdims[3], wdims[1], wdims[0]]
        dtype = "sFxp_32" if w.ndim == 1 and w.size > 1 else str(dlc_style().get("weight_dtype", "uFxp_8"))
        return f"{name} (data type: {dtype}; tensor dimension: [{','.join(map(str, wdims))}]; tensor type: STATIC)"
    dims = ",".join(map(str, dlc.dims(name)))
    cell = f"{name} (data type: {dlc.dtype(name)}; tensor dimension: [{dims}]; tensor type: {kind})"
    if "bad_dlcinfo" in faults() and kind == "APP_READ":
        cell = f"{name} (data type: {dlc.dtype(name)}; tensor dimension: [1,x,{dims}]; tensor type: {kind})"
    return cell + (" [NW Input]" if kind == "APP_WRITE" else "")


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def fmt(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "-" * len(fmt(header))
    return [rule, fmt(header), rule, *(fmt(r) for r in rows), rule]


def dlc_info_tables(dlc: Dlc) -> tuple[list[str], list[list[str]], list[list[list[str]]], list[str]]:
    """(preamble lines, layer rows, I/O tables, totals lines)."""
    layers = dlc.layers()
    consumed = {i for layer in layers for i in layer["inputs"]}
    total_params = 0
    total_macs = 0
    rows: list[list[str]] = []
    per_layer = []
    for layer in layers:
        params, count, macs = layer_params(
            dlc, layer, first=layer["id"] == 0 or any(i in dlc.inputs for i in layer["inputs"])
        )
        total_params += count
        total_macs += macs
        per_layer.append((layer, params, count, macs))
    for layer, params, count, macs in per_layer:
        if count:
            params.append(f"param count: {si(count)} ({100 * count / max(total_params, 1):.3g}%)")
        if macs:
            params.append(f"MACs per inference: {si(macs)} ({100 * macs / max(total_macs, 1):.3g}%)")
        ins = []
        for name in layer["inputs"]:
            if name in dlc.initializers:
                if name in dlc.initializers and dlc.initializers[name].data_type == 1:
                    ins.append(tensor_cell(dlc, name, "STATIC"))
            elif name in dlc.shapes:
                ins.append(tensor_cell(dlc, name, "APP_WRITE" if name in dlc.inputs else "NATIVE"))
        outs = [tensor_cell(dlc, o, "APP_READ" if o in dlc.outputs else "NATIVE") for o in layer["outputs"]]
        out_dims = ["x".join(map(str, dlc.dims(o))) for o in layer["outputs"]]
        height = max(len(ins), len(outs), len(params), 1)
        for k in range(height):
            rows.append(
                [
                    str(layer["id"]) if k == 0 else "",
                    layer["name"] if k == 0 else "",
                    layer["type"] if k == 0 else "",
                    ins[k] if k < len(ins) else "",
                    outs[k] if k < len(outs) else "",
                    out_dims[k] if k < len(out_dims) else "",
                    "A D G C" if k == 0 else "",
                    params[k] if k < len(params) else "",
                ]
            )

    def io_rows(names: list[str]) -> list[list[str]]:
        return [
            [
                n,
                ",".join(map(str, dlc.dims(n))),
                dlc.dtype(n),
                encoding_text(dlc.encodings[n]) if n in dlc.encodings else "No encoding info for this tensor",
            ]
            for n in names
        ]

    unconsumed = [o for layer in layers for o in layer["outputs"] if o not in consumed and o not in dlc.outputs]
    io_tables = [
        [["Input Name", "Dimensions", "Type", "Encoding Info"], *io_rows(dlc.inputs)],
        [["Output Name", "Dimensions", "Type", "Encoding Info"], *io_rows(dlc.outputs)],
    ]
    if unconsumed:
        io_tables.append([["Unconsumed Tensor Name", "Dimensions", "Type", "Encoding Info"], *io_rows(unconsumed)])
    ops = sorted({layer["type"] for layer in layers})
    style = dlc_style()
    preamble = [
        f"DLC info of: {os.path.abspath(dlc.path)}",
        "Model Version: N/A",
        "Model Copyright:N/A",
        str(style["converter_line"]).format(onnx="model.onnx"),
        str(style["quantizer_line"]),
        f"DLC created with converter version: {sdk_version()}",
    ]
    totals = [
        f"Total parameters: {total_params} ({total_params * 4 // 1048576} MB assuming single precision float. This "
        "does not represent the actual memory requirement for the model. It provides a rough estimate of the "
        "contribution from the parameters 4xNo of Params in bytes)",
        f"Total MACs per inference: {si(total_macs)} (100%)",
        f"Ops used by Graph: {', '.join(ops)}",
        "Est. Steady-State Memory Needed to Run: 1.2 MiB",
    ]
    return preamble, rows, io_tables, totals


LAYER_HEADER = ["Id", "Name", "Type", "Inputs", "Outputs", "Out Dims", "Runtimes", "Parameters"]


def dlc_info(argv: Sequence[str]) -> int:
    args = parse_args(
        "snpe-dlc-info", argv, {"-i": 1, "--input_dlc": 1, "-s": 1, "-m": 0, "-d": 0, "--display_all_encodings": 0}
    )
    path = one(args, "-i") or one(args, "--input_dlc")
    if path is None:
        raise ToolError("snpe-dlc-info: missing the -i <dlc> option.")
    dlc = Dlc(path)
    preamble, rows, io_tables, totals = dlc_info_tables(dlc)
    lines = [*preamble, "=" * 120, f"Info of graph: {dlc.graph_name}", *table(LAYER_HEADER, rows)]
    lines += [
        str(dlc_style()["runtimes_note"]),
        "Key : A:AIP",
        "      D:DSP",
        "      G:GPU",
        "      C:CPU",
        "",
    ]
    for t in io_tables:
        lines += table(t[0], t[1:])
    lines += totals
    print("\n".join(lines))
    csv_path = one(args, "-s")
    if csv_path is not None:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        for line in preamble:
            writer.writerow([line])
        writer.writerow([f"Info of graph: {dlc.graph_name}"])
        writer.writerow(LAYER_HEADER)
        writer.writerows(rows)
        for t in io_tables:
            writer.writerows(t)
        for line in totals:
            writer.writerow([line])
        with open(csv_path, "w", encoding="utf-8") as fh:
            fh.write(buf.getvalue())
    return 0


# ------------------------------------------------------------------------------------------------- net-run


def read_input_list(path: str, dlc: Dlc) -> tuple[list[dict[str, str]], list[str] | None]:
    try:
        with open(path, encoding="utf-8") as fh:
            raw = [line.strip() for line in fh]
    except OSError as exc:
        raise ToolError(f"snpe-net-run: cannot read the input list {path}: {exc.strerror}") from None
    lines = [line for line in raw if line]
    selection = None
    if lines and lines[0][0] in "#%":
        selection = lines[0][1:].split()
        lines = lines[1:]
    items = []
    for n, line in enumerate(lines, 1):
        entry: dict[str, str] = {}
        for token in line.split():
            if ":=" in token:
                name, _, file = token.partition(":=")
                if name not in dlc.inputs:
                    raise ToolError(f"snpe-net-run: input list line {n}: '{name}' is not an input of the network")
                entry[name] = file
            elif len(dlc.inputs) == 1 and not entry:
                entry[dlc.inputs[0]] = token
            else:
                raise ToolError(f"snpe-net-run: input list line {n}: expected name:=path for a multi-input network")
        missing = [i for i in dlc.inputs if i not in entry]
        if missing:
            raise ToolError(f"snpe-net-run: input list line {n} lacks input(s) {missing}")
        items.append(entry)
    return items, selection


def native_type(enc: dict[str, Any]) -> Any:
    """The numpy type of a native file: ``uFxp_8`` uint8, ``uFxp_16`` uint16, ``sFxp_8`` int8, ``sFxp_16`` int16."""
    bits = int(enc["bitwidth"])
    if enc.get("signed"):
        return np.int8 if bits == 8 else np.dtype("<i2")
    return np.uint8 if bits == 8 else np.dtype("<u2")


def load_input(dlc: Dlc, name: str, path: str, native: bool) -> np.ndarray:
    dims = dlc.dims(name)
    enc = dlc.encodings.get(name)
    dtype: np.dtype[Any] = np.dtype("<f4")
    if native and enc is not None:
        dtype = np.dtype(native_type(enc))
    expected = int(np.prod(dims)) * dtype.itemsize
    try:
        size = os.path.getsize(path)
    except OSError:
        raise ToolError(f"snpe-net-run: input file {path} does not exist") from None
    if size != expected:
        raise ToolError(
            f"snpe-net-run: input file {path} has {size} bytes; input '{name}' [{','.join(map(str, dims))}] "
            f"needs {expected}"
        )
    data = np.fromfile(path, dtype=dtype).reshape(dims)
    if native and enc is not None:
        data = (enc["scale"] * (data.astype(np.float64) + enc["offset"])).astype(np.float32)
    return array_from_dlc(data.astype(np.float32))


def write_tensor(dlc: Dlc, result_dir: str, name: str, value: np.ndarray, native: bool, truncate: bool) -> bool:
    path = os.path.join(result_dir, name.lstrip("/") + ".raw")
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        print(f"Failed to write data to: {os.path.abspath(path)}", file=sys.stderr)
        return False
    data = array_to_dlc(np.asarray(value, np.float32))
    enc = dlc.encodings.get(name)
    if native and enc is not None:
        q = np.round(data.astype(np.float64) / enc["scale"] - enc["offset"])
        info = np.iinfo(native_type(enc))
        data = np.clip(q, info.min, info.max).astype(native_type(enc))
    blob = data.astype(data.dtype.newbyteorder("<")).tobytes()
    if truncate:
        blob = blob[: len(blob) // 2]
    with open(path, "wb") as fh:
        fh.write(blob)
    return True


def layer_cost(dlc: Dlc, layer: dict[str, Any], unit: str) -> float:
    _, _, macs = layer_params(dlc, layer, first=False)
    elems = int(np.prod(dlc.shapes[layer["outputs"][0]]))
    if unit == "cycles":
        return float(macs // 16 + elems // 8 + 40)
    return round(macs / 2000 + elems / 20000 + 1, 1)


def net_run(argv: Sequence[str]) -> int:
    spec = {
        "--container": 1,
        "--input_list": 1,
        "--output_dir": 1,
        "--debug": 0,
        "--perf_profile": 1,
        "--profiling_level": 1,
        "--use_native_input_files": 0,
        "--use_native_output_files": 0,
        "--userbuffer_auto": 0,
        "--userbuffer_tf8": 0,
        "--userbuffer_float": 0,
        "--userbuffer_tfN": 1,
        "--userbuffer_floatN_output": 1,
        **{flag: 0 for flag in RUNTIMES},
    }
    args = parse_args("snpe-net-run", argv, spec)
    container, input_list = one(args, "--container"), one(args, "--input_list")
    if container is None or input_list is None:
        raise ToolError("snpe-net-run: --container and --input_list are required.")
    native_in, native_out = "--use_native_input_files" in args, "--use_native_output_files" in args
    if (native_in or native_out) and not any(f.startswith("--userbuffer") for f in args):
        raise ToolError(
            "snpe-net-run: --use_native_input_files/--use_native_output_files need a --userbuffer_* option."
        )
    runtime = next((RUNTIMES[f] for f in RUNTIMES if f in args), RUNTIMES["--use_cpu"])
    perf = one(args, "--perf_profile", "balanced")
    level = one(args, "--profiling_level", "basic")
    if perf not in (
        "balanced",
        "default",
        "high_performance",
        "burst",
        "power_saver",
        "sustained_high_performance",
        "low_balanced",
        "low_power_saver",
        "high_power_saver",
        "extreme_power_saver",
        "system_settings",
    ):
        raise ToolError(f"snpe-net-run: invalid perf profile '{perf}'")
    if "oom" in faults():
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    dlc = Dlc(container)
    out_dir = one(args, "--output_dir", "output") or "output"
    items, selection = read_input_list(input_list, dlc)
    debug = "--debug" in args
    session = dlc.session(expose_all=debug)
    names = [o.name for o in session.get_outputs()]
    if selection and not debug:
        names = [n for n in names if n in selection] or names
    print(render("net_run.header", version=sdk_version(), graph=dlc.graph_name), end="")
    os.makedirs(out_dir, exist_ok=True)
    executions = []
    ok = True
    for i, entry in enumerate(items):
        feed = {dlc.feed_name(n): load_input(dlc, n, p, native_in) for n, p in entry.items()}
        paths = " ".join(entry.values())
        for _ in range(2 if "repeat_inputs" in faults() else 1):
            print(render("net_run.execution", paths=paths), end="")
        start = time.perf_counter()
        values = dict(zip([o.name for o in session.get_outputs()], session.run(None, feed), strict=True))
        elapsed_us = (time.perf_counter() - start) * 1e6
        result_dir = os.path.join(out_dir, f"Result_{i}")
        os.makedirs(result_dir, exist_ok=True)
        for name in names:
            if name not in dlc.shapes:
                continue
            if i == 0 and not debug and name == dlc.outputs[0] and "missing_output" in faults():
                continue
            truncate = i == 0 and not debug and name == dlc.outputs[0] and "short_output" in faults()
            ok = write_tensor(dlc, result_dir, name, values[name], native_out, truncate) and ok
        layers = []
        if level == "detailed":
            layers = [[layer["id"], layer["name"], layer_cost(dlc, layer, runtime[2])] for layer in dlc.layers()]
        transfers = {
            "input": sum(int(np.prod(dlc.shapes[n])) for n in dlc.inputs) // 16 + 100,
            "output": sum(int(np.prod(dlc.shapes[n])) for n in dlc.outputs) * 40 + 300,
        }
        executions.append(
            {
                "total_us": round(elapsed_us + 250),
                "forward_us": round(elapsed_us + 180),
                "accel_us": round(elapsed_us),
                "layers": layers,
                "transfers": transfers,
            }
        )
    if ok:
        print(render("net_run.footer", graph=dlc.graph_name), end="")
    with open(os.path.join(out_dir, "SNPEDiag.log"), "w", encoding="utf-8") as fh:
        json.dump(
            {
                "format": "fake-snpe-diag/1",
                "version": sdk_version(),
                "runtime": runtime[0],
                "unit": runtime[2],
                "profiling_level": level,
                "executions": executions,
            },
            fh,
        )
    return 0 if ok else 1


# ------------------------------------------------------------------------------------------------- throughput


def throughput(argv: Sequence[str]) -> int:
    spec = {
        "--container": 1,
        "--duration": 1,
        "--perf_profile": 1,
        "--input_raw": 1,
        "--userbuffer_auto": 0,
        "--userbuffer_tf8": 0,
        "--userbuffer_float": 0,
        **{flag: 0 for flag in RUNTIMES},
    }
    args = parse_args("snpe-throughput-net-run", argv, spec)
    containers = [v[0] for v in args.get("--container", [])]
    duration_text = one(args, "--duration")
    if not containers or duration_text is None:
        raise ToolError("snpe-throughput-net-run: --container and --duration are required.")
    duration = float(duration_text)
    runtime = next((RUNTIMES[f] for f in RUNTIMES if f in args), RUNTIMES["--use_cpu"])
    print(render("throughput.header", version=sdk_version(), duration=duration), end="")
    rng = np.random.default_rng(0)
    total = 0.0
    for thread, path in enumerate(containers):
        t0 = time.perf_counter()
        dlc = Dlc(path)
        session = dlc.session(expose_all=False)
        feed = {dlc.feed_name(n): rng.random(dlc.shapes[n], dtype=np.float32) for n in dlc.inputs}
        build_us = int((time.perf_counter() - t0) * 1e6)
        count = 0
        start = time.perf_counter()
        while time.perf_counter() - start < duration:
            session.run(None, feed)
            count += 1
        elapsed_us = int((time.perf_counter() - start) * 1e6)
        fps = count / (elapsed_us / 1e6)
        total += fps
        values = {"build_us": build_us, "elapsed_us": elapsed_us, "real_us": elapsed_us - 900, "count": count}
        print(render("throughput.thread", thread=thread, runtime_kind=runtime[1], fps=fps, **values), end="")
    if "bad_throughput" in faults():
        print("Total throughput: fast infs/sec")
    else:
        print(render("throughput.total", total=total), end="")
    return 0


# ------------------------------------------------------------------------------------------------- diagview


def diagview(argv: Sequence[str]) -> int:
    spec = {"--input_log": 1, "--output": 1, "--csv_format_version": 1}
    if "old_diagview" in faults():
        del spec["--csv_format_version"]
    args = parse_args("snpe-diagview", argv, spec)
    path = one(args, "--input_log")
    if path is None:
        raise ToolError("snpe-diagview: --input_log is required.")
    try:
        with open(path, encoding="utf-8") as fh:
            diag = json.load(fh)
    except (OSError, json.JSONDecodeError) as exc:
        raise ToolError(f"snpe-diagview: cannot read {path}: {exc}") from None
    runs = diag["executions"]
    unit = diag["unit"]

    def mean(key: str) -> int:
        return round(sum(float(r[key]) for r in runs) / max(len(runs), 1))

    output = one(args, "--output")
    rows = diag_rows(diag)
    means = {"total_us": mean("total_us"), "forward_us": mean("forward_us"), "accel_us": mean("accel_us")}
    runtime = diag["runtime"]
    if output is not None:
        version = one(args, "--csv_format_version", "1")
        if version == "2":
            parts = [render("diagview_csv.header", **means)]
            for run in runs:  # one block per execution, as the real tool writes
                for row in diag_rows({**diag, "executions": [run]}):
                    name = "diagview_csv." + row["part"]
                    parts.append(render(name, unit=unit, runtime=runtime, **row))
            text = "".join(parts)
        else:
            buf = io.StringIO()
            writer = csv.writer(buf, lineterminator="\n")
            writer.writerow(["Execution", "Total Inference Time (us)"])
            for k, run in enumerate(runs):
                writer.writerow([k, run["total_us"]])
            text = buf.getvalue()
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(text)
        return 0
    parts = [render("diagview.header", version=diag.get("version", sdk_version()), **means)]
    if rows:
        subnet = f"{sum(r['time'] for r in rows):g}"
        parts.append(render("diagview.section", runtime=runtime, unit=unit, subnet=subnet))
        for row in rows:
            part = "diagview." + row["part"]
            if row["part"] == "layer" and runtime == "CPU":
                part = "diagview.layer_cpu"
            parts.append(render(part, unit=unit, runtime=runtime, **row))
    print("".join(parts), end="")
    return 0


def diag_rows(diag: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows diagview prints, averaged over the executions: on the DSP of a version with HTP transfer rows, an
    ``Input OpId_n`` row first and an ``Output OpId_n`` row last; each row's diagview index is its position (not
    the dlc-info layer id) and its OpId a number of the prepared graph."""
    runs = diag["executions"]
    if not runs or not runs[0]["layers"]:
        return []
    transfers = diag["runtime"] == "DSP" and template("diagview.input.tmpl") is not None
    rows: list[dict[str, Any]] = []

    def row(part: str, opid: int, pick: Any, **extra: Any) -> dict[str, Any]:
        time = sum(pick(r) for r in runs) / len(runs)
        return {"part": part, "opid": opid, "time": time, "value": f"{time:g}", **extra}

    if transfers:
        rows.append(row("input", 2, lambda r: r["transfers"]["input"]))
    for k, (layer_id, name, _cost) in enumerate(runs[0]["layers"]):
        rows.append(row("layer", 2 * layer_id + 18, lambda r, k=k: r["layers"][k][2], name=name, bare=name.lstrip("/")))
        if "bad_diagview" in faults() and k == 1:
            rows[-1]["value"] = "lots"
    if transfers:
        rows.append(row("output", 3, lambda r: r["transfers"]["output"]))
    for index, item in enumerate(rows):
        item["index"] = index
    return rows


TOOLS = {
    "snpe-net-run": net_run,
    "snpe-throughput-net-run": throughput,
    "snpe-dlc-info": dlc_info,
    "snpe-diagview": diagview,
}


def main(tool: str, argv: Sequence[str]) -> int:
    if tool not in TOOLS:
        print(f"ERROR: unknown fake SNPE tool {tool}", file=sys.stderr)
        return 2
    log_path = os.environ.get("FAKE_SNPE_LOG")
    if log_path:
        entry: dict[str, Any] = {"tool": tool, "argv": list(argv), "cwd": os.getcwd()}
        if tool == "snpe-net-run" and "--input_list" in argv:
            with open(argv[list(argv).index("--input_list") + 1], encoding="utf-8") as fh:
                entry["inputs"] = sum(1 for line in fh if line.strip() and line.strip()[0] not in "#%")
        with open(log_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry) + "\n")
    if "--help" in argv or "-h" in argv:
        print(f"{tool} (fake SNPE toolkit, formats of {format_version()}); see tests/fake_snpe/toolkit.py")
        return 0
    try:
        return TOOLS[tool](argv)
    except ToolError as exc:
        sys.stdout.flush()
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(os.path.basename(sys.argv[0]), sys.argv[1:]))
