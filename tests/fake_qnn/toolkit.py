"""A fake QNN toolkit: ``qnn-net-run``, ``qnn-profile-viewer`` and ``qnn-context-binary-utility``.

Standalone on purpose (numpy, onnx, onnxruntime; nothing of qc), so qc's QNN device code is tested against an
independent implementation of the tools' command lines and formats. Console and file formats come from the
hand-written templates of one version, ``tests/fake_qnn/formats/<version>/templates/`` (``FAKE_QNN_VERSION``,
default ``qairt-2.4x``).

The context binary is the fake one of :mod:`tests.fake_qnn.context` (a zip with the source model and the I/O table):
the fake cannot run a real HTP context, so it computes with onnxruntime (CPU) on the model the context was prepared
from, a QDQ model whose quantization arithmetic is the same up to rounding.

Behaviours reproduced (flags are checked; an unknown flag is an error; ``--flag=value`` is accepted):

* ``qnn-net-run``: ``--retrieve_context`` xor ``--model`` (required), ``--backend`` (must load: only
  ``libQnnHtp.so`` here), ``--input_list`` (required), ``--output_dir`` (default ``./output``), ``--debug`` (refused
  with ``--retrieve_context``, as documented), ``--use_native_input_files``, ``--use_native_output_files``,
  ``--profiling_level basic|detailed|client|backend``, ``--perf_profile``, plus accepted-and-ignored options.
  Input list: bare paths (one-input graph) or ``name:=path`` items, the context's tensor names; input files must have
  exactly dims x type bytes (float32, or the native type). Outputs: ``Result_<i>/<name>.raw`` float32 or
  ``<name>_native.raw`` native (fixed point quantized with the tensor's scale/offset), ``<name>`` a C identifier;
  profiling writes ``<output_dir>/qnn-profiling-data_0.log`` (a JSON stand-in for the binary log).
* ``qnn-profile-viewer --input_log <log> [--output <file>.csv]``: the text of the version (per-execution blocks in
  ``qnn-2.1x``; Average/Min/Max sections and ``NetRun IPS`` in ``qairt-2.4x``), or the CSV (documented columns).
* ``qnn-context-binary-utility --context_binary <bin> --json_file <json>``: the tensor table in the version's JSON
  style (``scaleOffsetEncoding`` vs ``scaleOffset``, tensor record versions).

Error messages are this fake's own wording (real ones were not found in public captures); tests match on the
facts they carry (the path, the tensor), not on the wording.

``FAKE_QNN_LOG``: every call appends a JSON line (tool, argv, cwd). ``FAKE_QNN_FAULT`` (comma separated):
``oom`` (net-run killed by SIGKILL), ``missing_output`` / ``short_output`` (first output of ``Result_0`` absent /
truncated), ``no_csv`` (the viewer cannot write CSV). ``FAKE_QNN_OP_NAMES=identifier``: profiled ops are named
in identifier form (``_stem_Conv``), as in a context made by QNN's converters.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
import zipfile
from collections.abc import Sequence
from typing import Any

import numpy as np

FORMATS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "formats")
DEFAULT_VERSION = "qairt-2.4x"
PERF_PROFILES = {
    "low_balanced",
    "balanced",
    "default",
    "high_performance",
    "sustained_high_performance",
    "burst",
    "low_power_saver",
    "power_saver",
    "high_power_saver",
    "extreme_power_saver",
    "system_settings",
}
NP_TYPES: dict[str, np.dtype[Any]] = {
    "QNN_DATATYPE_FLOAT_32": np.dtype("<f4"),
    "QNN_DATATYPE_FLOAT_16": np.dtype("<f2"),
    "QNN_DATATYPE_UFIXED_POINT_8": np.dtype("u1"),
    "QNN_DATATYPE_UFIXED_POINT_16": np.dtype("<u2"),
    "QNN_DATATYPE_SFIXED_POINT_8": np.dtype("i1"),
    "QNN_DATATYPE_SFIXED_POINT_16": np.dtype("<i2"),
}


class ToolError(Exception):
    """Printed as ``ERROR: <message>`` on stderr; exit status 1."""


def version() -> str:
    name = os.environ.get("FAKE_QNN_VERSION", DEFAULT_VERSION)
    if not os.path.isdir(os.path.join(FORMATS, name, "templates")):
        raise ToolError(f"FAKE_QNN_VERSION={name!r}: no templates (known: {sorted(os.listdir(FORMATS))})")
    return name


def template(name: str) -> str | None:
    path = os.path.join(FORMATS, version(), "templates", name)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as fh:
        return fh.read()


def render(part: str, /, **values: Any) -> str:
    text = template(part + ".tmpl")
    if text is None:
        raise ToolError(f"fake QNN toolkit: version {version()} has no template {part}.tmpl")
    return text.format(**values)


def style(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(template(name) or "{}")
    return loaded


def faults() -> set[str]:
    return {f.strip() for f in os.environ.get("FAKE_QNN_FAULT", "").split(",") if f.strip()}


def parse_args(tool: str, argv: Sequence[str], spec: dict[str, int]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    i = 0
    while i < len(argv):
        item = argv[i]
        flag, eq, inline = item.partition("=")
        if flag not in spec:
            raise ToolError(f"{tool}: unknown option '{flag}'. See '{tool} --help'.")
        if spec[flag] == 0:
            if eq:
                raise ToolError(f"{tool}: option '{flag}' takes no value.")
            out[flag] = None
            i += 1
            continue
        if eq:
            out[flag] = inline
            i += 1
            continue
        if i + 1 >= len(argv) or argv[i + 1].startswith("--"):
            raise ToolError(f"{tool}: option '{flag}' needs a value.")
        out[flag] = argv[i + 1]
        i += 2
    return out


def c_identifier(name: str) -> str:
    ident = re.sub(r"[^A-Za-z0-9_]", "_", name)
    return "_" + ident if not ident or ident[0].isdigit() else ident


class Context:
    def __init__(self, path: str) -> None:
        try:
            with zipfile.ZipFile(path) as z:
                self.table: dict[str, Any] = json.loads(z.read("io.json"))
                self.model_bytes = z.read("model.onnx")
        except (OSError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
            raise ToolError(f"Failed to read the context binary {path}: {exc}") from None
        self.graph: str = self.table["graph"]
        self.inputs: list[dict[str, Any]] = self.table["inputs"]
        self.outputs: list[dict[str, Any]] = self.table["outputs"]

    def session(self) -> Any:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.intra_op_num_threads = 1
        return ort.InferenceSession(self.model_bytes, opts, providers=["CPUExecutionProvider"])

    def ops(self) -> list[tuple[str, int]]:
        """(name, OpId) of the prepared graph's ops: each non-Q/DQ node, an inserted layout Transpose when NHWC."""
        import onnx

        model = onnx.load_from_string(self.model_bytes)
        ops = []
        if any(t["nhwc"] for t in self.inputs):
            ops.append(("Transpose", 17))
        for k, node in enumerate(model.graph.node):
            if node.op_type in ("QuantizeLinear", "DequantizeLinear", "Constant"):
                continue
            name = node.name or f"{node.op_type}_{k}"
            if os.environ.get("FAKE_QNN_OP_NAMES") == "identifier":  # as a converter-made context names its ops
                name = c_identifier(name)
            ops.append((name, 2 * k + 18))
        return ops


def _native_type(t: dict[str, Any]) -> np.dtype[Any]:
    if t["dtype"] not in NP_TYPES:
        raise ToolError(f"tensor {t['name']}: data type {t['dtype']} is not supported by this backend")
    dtype: np.dtype[Any] = NP_TYPES[t["dtype"]]
    return dtype


def read_input_list(path: str, ctx: Context) -> list[dict[str, str]]:
    try:
        with open(path, encoding="utf-8") as fh:
            lines = [line.strip() for line in fh if line.strip()]
    except OSError as exc:
        raise ToolError(f"qnn-net-run: could not open the input list {path}: {exc.strerror}") from None
    names = [t["name"] for t in ctx.inputs]
    items = []
    for n, line in enumerate(lines, 1):
        if line[0] in "#%":
            continue
        entry: dict[str, str] = {}
        for token in line.split():
            if ":=" in token:
                name, _, file = token.partition(":=")
                if name not in names:
                    raise ToolError(f"qnn-net-run: input list line {n}: '{name}' is not an input of graph {ctx.graph}")
                entry[name] = file
            elif len(names) == 1 and not entry:
                entry[names[0]] = token
            else:
                raise ToolError(f"qnn-net-run: input list line {n}: expected name:=path for a multi-input graph")
        missing = [x for x in names if x not in entry]
        if missing:
            raise ToolError(f"qnn-net-run: input list line {n} lacks input(s) {missing}")
        items.append(entry)
    return items


def load_input(t: dict[str, Any], path: str, native: bool) -> np.ndarray:
    dtype = _native_type(t) if native else np.dtype("<f4")
    expected = int(np.prod(t["dims"])) * dtype.itemsize
    try:
        size = os.path.getsize(path)
    except OSError:
        raise ToolError(f"qnn-net-run: input file {path} does not exist") from None
    if size != expected:
        raise ToolError(
            f"qnn-net-run: input file {path} has {size} bytes; tensor '{t['name']}' {t['dims']} as {dtype.name} "
            f"needs {expected}"
        )
    data = np.fromfile(path, dtype=dtype).reshape(t["dims"])
    if native and "FIXED" in t["dtype"]:
        data = (t["scale"] * (data.astype(np.float64) + t["offset"])).astype(np.float32)
    data = data.astype(np.float32)
    return np.ascontiguousarray(np.transpose(data, (0, 3, 1, 2))) if t["nhwc"] else data


def write_output(t: dict[str, Any], folder: str, value: np.ndarray, native: bool, truncate: bool) -> None:
    data = np.asarray(value, np.float32)
    if t["nhwc"]:
        data = np.ascontiguousarray(np.transpose(data, (0, 2, 3, 1)))
    name = c_identifier(t["name"])
    if native:
        dtype = _native_type(t)
        if "FIXED" in t["dtype"]:
            q = np.round(data.astype(np.float64) / t["scale"] - t["offset"])
            info = np.iinfo(dtype)
            data = np.clip(q, info.min, info.max).astype(dtype)
        else:
            data = data.astype(dtype)
        path = os.path.join(folder, name + "_native.raw")
    else:
        path = os.path.join(folder, name + ".raw")
    blob = data.astype(data.dtype.newbyteorder("<")).tobytes()
    with open(path, "wb") as fh:
        fh.write(blob[: len(blob) // 2] if truncate else blob)


def net_run(argv: Sequence[str]) -> int:
    spec = {
        "--retrieve_context": 1,
        "--model": 1,
        "--backend": 1,
        "--input_list": 1,
        "--output_dir": 1,
        "--debug": 0,
        "--use_native_input_files": 0,
        "--use_native_output_files": 0,
        "--native_input_tensor_names": 1,
        "--profiling_level": 1,
        "--perf_profile": 1,
        "--log_level": 1,
        "--config_file": 1,
        "--num_inferences": 1,
        "--keep_num_outputs": 1,
        "--synchronous": 0,
        "--shared_buffer": 0,
        "--system_library": 1,
    }
    args = parse_args("qnn-net-run", argv, spec)
    context, model = args.get("--retrieve_context"), args.get("--model")
    if (context is None) == (model is None):
        raise ToolError("qnn-net-run: --retrieve_context and --model are mutually exclusive; exactly one is required.")
    if model is not None:
        raise ToolError("qnn-net-run: this fake runs context binaries only (--retrieve_context).")
    assert context is not None
    if "--debug" in args:
        raise ToolError("qnn-net-run: --debug can not be used when loading a saved context through --retrieve_context.")
    backend = args.get("--backend")
    if backend is None or not backend.endswith("libQnnHtp.so"):
        raise ToolError(f"qnn-net-run: unable to load backend {backend!r}: only libQnnHtp.so is present.")
    input_list = args.get("--input_list")
    if input_list is None:
        raise ToolError("qnn-net-run: --input_list is required.")
    level = args.get("--profiling_level")
    if level is not None and level not in ("basic", "detailed", "client", "backend"):
        raise ToolError(f"qnn-net-run: invalid profiling level '{level}'")
    perf = args.get("--perf_profile")
    if perf is not None and perf not in PERF_PROFILES:
        raise ToolError(f"qnn-net-run: invalid perf profile '{perf}'")
    if not os.path.isfile(context):
        raise ToolError(f"qnn-net-run: could not open the context binary {context}")
    if "oom" in faults():
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    ctx = Context(context)
    items = read_input_list(input_list, ctx)
    native_in, native_out = "--use_native_input_files" in args, "--use_native_output_files" in args
    out_dir = args.get("--output_dir") or "output"
    os.makedirs(out_dir, exist_ok=True)
    session = ctx.session()
    onnx_inputs = {t["name"]: t["onnx"] for t in ctx.inputs}
    by_onnx = {t["onnx"]: t for t in ctx.outputs}
    ops = ctx.ops()
    runs = []
    print(render("net_run", pid=os.getpid()), end="")
    for i, entry in enumerate(items):
        feed = {
            onnx_inputs[name]: load_input(next(t for t in ctx.inputs if t["name"] == name), path, native_in)
            for name, path in entry.items()
        }
        start = time.perf_counter()
        values = dict(zip([o.name for o in session.get_outputs()], session.run(None, feed), strict=True))
        elapsed_us = (time.perf_counter() - start) * 1e6
        folder = os.path.join(out_dir, f"Result_{i}")
        os.makedirs(folder, exist_ok=True)
        for k, (onnx_name, t) in enumerate(by_onnx.items()):
            if i == 0 and k == 0 and "missing_output" in faults():
                continue
            truncate = i == 0 and k == 0 and "short_output" in faults()
            write_output(t, folder, values[onnx_name], native_out, truncate)
        op_rows = [[name, opid, 1000 * (len(name) % 7 + 1) + 10 * opid + i] for name, opid in ops]
        runs.append(
            {
                "netrun_us": round(elapsed_us + 400),
                "accel_us": round(elapsed_us),
                "ops": op_rows if level == "detailed" else [],
                "input_cycles": 2000 + 10 * i,
                "output_cycles": 9000 + 10 * i,
            }
        )
    if level is not None:
        with open(os.path.join(out_dir, "qnn-profiling-data_0.log"), "w", encoding="utf-8") as fh:
            json.dump({"format": "fake-qnn-profile/1", "graph": ctx.graph, "level": level, "runs": runs}, fh)
    return 0


def _mean(runs: list[dict[str, Any]], key: str) -> int:
    return round(sum(float(r[key]) for r in runs) / max(len(runs), 1))


def profile_viewer(argv: Sequence[str]) -> int:
    spec = {"--input_log": 1, "--output": 1, "--reader": 1, "--schematic": 1, "--config": 1}
    args = parse_args("qnn-profile-viewer", argv, spec)
    path = args.get("--input_log")
    if path is None:
        raise ToolError("qnn-profile-viewer: --input_log is required.")
    try:
        with open(path, encoding="utf-8") as fh:
            log = json.load(fh)
    except (OSError, json.JSONDecodeError) as exc:
        raise ToolError(f"qnn-profile-viewer: could not read the log {path}: {exc}") from None
    runs: list[dict[str, Any]] = log["runs"]
    output = args.get("--output")
    if output is not None:
        if "no_csv" in faults():
            raise ToolError(f"qnn-profile-viewer: no reader for output format of {output}")
        lines = ["Msg Timestamp,Message,Time,Unit of Measurement,Timing Source,Event Level,Event Identifier"]
        for k, run in enumerate(runs):
            lines.append(f"{k},BACKEND,{run['accel_us']},US,BACKEND,ROOT,QNN accelerator (execute) time")
            if run["ops"]:
                lines.append(f"{k},NODE,{run['input_cycles']},CYCLES,BACKEND,SUB-EVENT,Input OpId_2 (cycles)")
                for name, opid, cycles in run["ops"]:
                    lines.append(f'{k},NODE,{cycles},CYCLES,BACKEND,SUB-EVENT,"{name}:OpId_{opid} (cycles)"')
                lines.append(f"{k},NODE,{run['output_cycles']},CYCLES,BACKEND,SUB-EVENT,Output OpId_3 (cycles)")
            lines.append(f"{k},EXECUTE,{run['netrun_us'] - 30},US,BACKEND,ROOT,QNN (execute) time")
        with open(output, "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
        return 0
    layout = style("viewer.json")
    head = {"log": path, "version": (template("version.txt") or "").strip(), "init_us": 54828, "deinit_us": 20126}
    parts = [render("viewer.header", **head)]

    if layout.get("layout") == "per-execution":
        for k, run in enumerate(runs, 1):
            parts.append(_block(run, "viewer.exec", k=k))
        parts.append(render("viewer.footer", ips=0.0, **head))
    else:
        total_s = sum(r["netrun_us"] for r in runs) / 1e6
        for section in layout.get("sections", ["Average"]):
            agg = _aggregate(runs, section)
            parts.append(render("viewer.section", section=section, graph=log["graph"], netrun_us=agg["netrun_us"]))
            parts.append(_block(agg, "viewer.exec", k=0))
        parts.append(render("viewer.footer", ips=len(runs) / total_s if total_s > 0 else 0.0, **head))
    print("".join(parts), end="")
    return 0


def _aggregate(runs: list[dict[str, Any]], section: str) -> dict[str, Any]:
    def how(values: list[int]) -> int:
        if section == "Min":
            return min(values)
        if section == "Max":
            return max(values)
        return round(sum(values) / len(values))

    ops = []
    if runs[0]["ops"]:
        for j, (name, opid, _) in enumerate(runs[0]["ops"]):
            ops.append([name, opid, how([r["ops"][j][2] for r in runs])])
    return {
        "netrun_us": how([r["netrun_us"] for r in runs]),
        "accel_us": how([r["accel_us"] for r in runs]),
        "input_cycles": how([r["input_cycles"] for r in runs]),
        "output_cycles": how([r["output_cycles"] for r in runs]),
        "ops": ops,
    }


def _block(run: dict[str, Any], part: str, k: int) -> str:
    ops = run["ops"]
    cycles = sum(c for _, _, c in ops) + (run["input_cycles"] + run["output_cycles"] if ops else 0)
    text = render(part, k=k, rpc_us=run["accel_us"] + 25, accel_us=run["accel_us"], cycles=cycles)
    if ops:
        text += render("viewer.io", kind="Input", opid=2, value=run["input_cycles"])
        for name, opid, value in ops:
            text += render("viewer.op", name=name, opid=opid, value=value)
        text += render("viewer.io", kind="Output", opid=3, value=run["output_cycles"])
    return text + render("viewer.exec_end", accel_us=run["accel_us"], qnn_us=run["netrun_us"] - 30)


def context_utility(argv: Sequence[str]) -> int:
    args = parse_args("qnn-context-binary-utility", argv, {"--context_binary": 1, "--json_file": 1})
    binary, out = args.get("--context_binary"), args.get("--json_file")
    if binary is None or out is None:
        raise ToolError("qnn-context-binary-utility: --context_binary and --json_file are required.")
    if not os.path.isfile(binary):
        raise ToolError(f"qnn-context-binary-utility: could not open {binary}")
    ctx = Context(binary)
    st = style("context_style.json")

    def tensor(t: dict[str, Any], k: int, kind: str) -> dict[str, Any]:
        quant: dict[str, Any]
        if "FIXED" in t["dtype"]:
            quant = {
                "definition": "QNN_DEFINITION_DEFINED",
                "quantizationEncoding": "QNN_QUANTIZATION_ENCODING_SCALE_OFFSET",
                st["quant_key"]: {"scale": t["scale"], "offset": t["offset"]},
            }
        else:
            quant = {
                "definition": "QNN_DEFINITION_UNDEFINED",
                "quantizationEncoding": "QNN_QUANTIZATION_ENCODING_UNDEFINED",
            }
            if st.get("float_scale_offset"):
                quant[st["quant_key"]] = {"scale": 0.0, "offset": 0}
        return {
            "version": st["tensor_version"],
            "info": {
                "id": k,
                "name": t["name"],
                "type": kind,
                "dataFormat": st["data_format"],
                "dataType": t["dtype"],
                "quantizeParams": quant,
                "rank": len(t["dims"]),
                "dimensions": t["dims"],
                "memType": "QNN_TENSORMEMTYPE_RAW",
            },
        }

    graph = {
        "graphName": ctx.graph,
        "numGraphInputs": len(ctx.inputs),
        "graphInputs": [tensor(t, k + 1, "QNN_TENSOR_TYPE_APP_WRITE") for k, t in enumerate(ctx.inputs)],
        "numGraphOutputs": len(ctx.outputs),
        "graphOutputs": [tensor(t, k + 100, "QNN_TENSOR_TYPE_APP_READ") for k, t in enumerate(ctx.outputs)],
    }
    doc = {
        "info": {
            "backendId": 6,
            "buildId": st["build_id"],
            "numGraphs": 1,
            "graphs": [{"version": st["graph_version"], "info": graph}],
        }
    }
    with open(out, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=2)
    return 0


TOOLS = {"qnn-net-run": net_run, "qnn-profile-viewer": profile_viewer, "qnn-context-binary-utility": context_utility}


def main(tool: str, argv: Sequence[str]) -> int:
    if tool not in TOOLS:
        print(f"ERROR: unknown fake QNN tool {tool}", file=sys.stderr)
        return 2
    log_path = os.environ.get("FAKE_QNN_LOG")
    if log_path:
        with open(log_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"tool": tool, "argv": list(argv), "cwd": os.getcwd()}) + "\n")
    try:
        return TOOLS[tool](argv)
    except ToolError as exc:
        sys.stdout.flush()
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(os.path.basename(sys.argv[0]), sys.argv[1:]))
