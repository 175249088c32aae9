"""The fake ``snpe-dlc-info``: the padded layer table, encodings, I/O tables and totals, named as the chosen SDK
version names things (``formats/<version>/templates/dlc_info.json``)."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from tests.fake_snpe.common import Dlc, ToolError, dlc_style, faults, one, parse_args, sdk_version


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
