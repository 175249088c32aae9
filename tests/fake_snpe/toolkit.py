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

With ``FAKE_SNPE_LOG`` set, every call appends a JSON line (tool, argv, cwd, number of inputs) to that file.

Faults for tests, from the environment variable ``FAKE_SNPE_FAULT`` (comma separated): ``oom`` (net-run is killed
by SIGKILL: exit status 137 through the shell), ``missing_output`` / ``short_output`` (first graph output of
``Result_0`` absent / truncated, non-debug runs), ``bad_throughput``, ``bad_dlcinfo``, ``bad_diagview``,
``old_diagview`` (no ``--csv_format_version``), ``perturb=<tensor>`` (the "device" multiplies that encoded tensor by
0.8 after its fake quantization, as a runtime bug would: later layers compute on the perturbed value).
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

VERSION = "2.26.0.240828101016_fake"
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
    "Relu": "Relu",
    "Sigmoid": "Sigmoid",
    "Tanh": "Tanh",
    "LeakyRelu": "Prelu",
    "Add": "Eltwise_Binary",
    "Sub": "Eltwise_Binary",
    "Mul": "Eltwise_Binary",
    "Div": "Eltwise_Binary",
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
ELTWISE_CODES = {"Add": 0, "Div": 2, "Mul": 13, "Sub": 18}


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
        return f"uFxp_{enc['bitwidth']}" if enc else "Float_32"

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
                    "type": QNN_TYPES.get(node.op_type, node.op_type),
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
            zp = int(np.clip(round(-enc["offset"]), 0, 255))
            extra_inits.append(numpy_helper.from_array(np.array(enc["scale"], np.float32), f"{dst}__qc_s"))
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
            lo, hi = min(float(ch0.min()), 0.0), max(float(ch0.max()), 0.0)
            scale = (hi - lo) / 255 or 1e-8
            enc = {"bitwidth": 8, "min": lo, "max": hi, "scale": scale, "offset": -128.0}
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
    elif node.op_type in ELTWISE_CODES:
        lines.append(f"operation: {ELTWISE_CODES[node.op_type]}")
        macs = int(np.prod(dlc.shapes[layer["outputs"][0]]))
    elif node.op_type == "Concat":
        axis = int(_attr(node, "axis", 0))
        rank = len(dlc.shapes[layer["outputs"][0]])
        axis = axis % rank
        lines.append(f"axis: {(0, 3, 1, 2)[axis] if rank == 4 else axis}")
    return lines, params, macs


def tensor_cell(dlc: Dlc, name: str, kind: str) -> str:
    if kind == "STATIC":
        from onnx import numpy_helper

        w = numpy_helper.to_array(dlc.initializers[name])
        wdims = list(w.shape)
        if w.ndim == 4:  # OIHW -> HWIO
            wdims = [wdims[2], wdims[3], wdims[1], wdims[0]]
        dtype = "sFxp_32" if w.ndim == 1 and w.size > 1 else "uFxp_8"
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
    preamble = [
        f"DLC info of: {os.path.abspath(dlc.path)}",
        "Model Version: N/A",
        "Model Copyright:N/A",
        "Converter command: snpe-onnx-to-dlc adjust_nms_features_dims=True perform_axes_to_spatial_first_order=True "
        f"input_dim=[['{dlc.inputs[0]}', '{','.join(map(str, dlc.shapes[dlc.inputs[0]]))}']]",
        "Quantizer command: snpe-dlc-quant input_list=[calibration_list.txt] act_bitwidth=[8] weights_bitwidth=[8] "
        "use_per_channel_quantization=[true] act_quantizer=[tf]",
        f"DLC created with converter version: {VERSION}",
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
        "Note: The supported runtimes column assumes a processor target of Snapdragon 855",
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


def load_input(dlc: Dlc, name: str, path: str, native: bool) -> np.ndarray:
    dims = dlc.dims(name)
    enc = dlc.encodings.get(name)
    dtype: np.dtype[Any] = np.dtype("<f4")
    if native and enc is not None:
        dtype = np.dtype(np.uint8) if int(enc["bitwidth"]) == 8 else np.dtype("<u2")
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
        data = np.clip(q, 0, 255).astype(np.uint8)
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
    print("-" * 79)
    print("Model String: N/A")
    print(f"SNPE v{VERSION}")
    print("-" * 79)
    print("Processing DNN input(s):")
    os.makedirs(out_dir, exist_ok=True)
    executions = []
    ok = True
    for i, entry in enumerate(items):
        feed = {dlc.feed_name(n): load_input(dlc, n, p, native_in) for n, p in entry.items()}
        print(" ".join(entry.values()))
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
        executions.append(
            {
                "total_us": round(elapsed_us + 250),
                "forward_us": round(elapsed_us + 180),
                "accel_us": round(elapsed_us),
                "layers": layers,
            }
        )
    with open(os.path.join(out_dir, "SNPEDiag.log"), "w", encoding="utf-8") as fh:
        json.dump(
            {
                "format": "fake-snpe-diag/1",
                "version": VERSION,
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
    print("-" * 79)
    print("Model String: N/A")
    print(f"SNPE v{VERSION}")
    print("-" * 79)
    print("Processing DNN input(s):")
    print("Using random input")
    print(f"[INFO] Running for {duration:g} seconds")
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
        print(
            f"[Thread {thread} - {runtime[1]}] {fps:.2f} infs/sec - Number of images processed: {count} - Build time: "
            f"{build_us} microseconds - Elapsed time: {elapsed_us} microseconds - Real time: {elapsed_us - 900} "
            f"microseconds - Teardown time: 8047 microseconds - Batch : 1"
        )
    if "bad_throughput" in faults():
        print("Total throughput: fast infs/sec")
    else:
        print(f"Total throughput: {total:.2f} infs/sec")
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
    if output is not None:
        version = one(args, "--csv_format_version", "1")
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        if version == "2":
            writer.writerow(["Layer Id", "Layer Name", "Time", "Unit of Measurement", "Message"])
            for run in runs:
                writer.writerow(["", "Total Inference Time", run["total_us"], "us", ""])
                writer.writerow(["", "Forward Propagate Time", run["forward_us"], "us", ""])
                writer.writerow(["", "Accelerator Time", run["accel_us"], "us", ""])
                for index, name, value in run["layers"]:
                    shown = value if "bad_diagview" not in faults() or index != 1 else "lots"
                    writer.writerow([index, f"{name}:OpId_{index} ({unit})", shown, unit, ""])
        else:
            writer.writerow(["Execution", "Total Inference Time (us)"])
            for k, run in enumerate(runs):
                writer.writerow([k, run["total_us"]])
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(buf.getvalue())
        return 0
    lines = [
        "Log File Created: Tue Oct 22 10:11:12 2024",
        "Time Scale: 1e-06",
        "Epoch Timestamp: 1729591872000000 Steady Clock Timestamp: 1029384756",
        f"Software library version: {diag.get('version', VERSION)}",
        "",
        "Dnn Runtime Load/Deserialize/Create Statistics:",
        "--------------------------------------------------------",
        "Load: 51230 us",
        "Deserialize: 21337 us",
        "Create: 301122 us",
        "",
        "Average SNPE Statistics:",
        "------------------------------",
        f"Total Inference Time: {mean('total_us')} us",
        f"Forward Propagate Time: {mean('forward_us')} us",
        f"Accelerator Time: {mean('accel_us')} us",
    ]
    if runs and runs[0]["layers"]:
        lines.append("Layer Times:")
        for k, (index, _name, _value) in enumerate(runs[0]["layers"]):
            value = sum(r["layers"][k][2] for r in runs) / len(runs)
            shown = f"{value:g}" if "bad_diagview" not in faults() or index != 1 else "lots"
            lines.append(f"{index}: {shown} {unit} : {diag['runtime']}")
    print("\n".join(lines))
    return 0


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
        print(f"{tool} (fake SNPE toolkit {VERSION}); see tests/fake_snpe/toolkit.py")
        return 0
    try:
        return TOOLS[tool](argv)
    except ToolError as exc:
        sys.stdout.flush()
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(os.path.basename(sys.argv[0]), sys.argv[1:]))
