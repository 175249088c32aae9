"""A fake SNPE toolkit: ``snpe-net-run``, ``snpe-throughput-net-run``, ``snpe-dlc-info`` and ``snpe-diagview``.

Standalone on purpose (numpy, onnx and onnxruntime only; nothing of qc; shared parts in ``common.py``, dlc-info in
``dlcinfo.py``), so qc's parsers and runner are tested
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
from collections.abc import Sequence
from typing import Any

import numpy as np

from tests.fake_snpe.common import (
    RUNTIMES,
    Dlc,
    ToolError,
    array_from_dlc,
    array_to_dlc,
    faults,
    format_version,
    one,
    parse_args,
    render,
    sdk_version,
    template,
)
from tests.fake_snpe.dlcinfo import dlc_info, layer_params

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
