"""onnxruntime runners: the FP32 reference and any ONNX target (QDQ int8/int16), with every intermediate tensor."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from qc import progress
from qc.errors import ModelError
from qc.runners.base import GraphTensors, TensorDict, TensorInfo
from qc.speed import LatencyStats, LayerProfile, parse_ort_profile

FLOAT_TYPES = {1: "float32", 10: "float16", 11: "float64", 16: "bfloat16"}


def load_checked(path: Path, what: str) -> Any:
    """Load an ONNX model and run onnx.checker on it; a failure is a one-line ModelError naming the file."""
    import onnx

    if not path.is_file():
        raise ModelError(f"{what}: file not found: {path}.")
    try:
        onnx.checker.check_model(str(path))
        return onnx.load(str(path))
    except Exception as exc:  # onnx raises several unrelated types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{what}: {path} fails onnx.checker: {first}") from None


def _dims(value_info: Any) -> tuple[int | str, ...] | None:
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return None
    return tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim)


def describe(model: Any) -> tuple[GraphTensors, dict[str, Any]]:
    """Shape-infer ``model`` and list its tensors in topological order; also return name -> ValueInfoProto."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception:  # shape inference is best effort: fall back on what the file declares
        inferred = model
    graph = inferred.graph
    infos: dict[str, Any] = {}
    for vi in [*graph.value_info, *graph.output, *graph.input]:
        infos[vi.name] = vi
    for node in graph.node:  # com.microsoft Q/DQ (16-bit) are unknown to onnx shape inference
        if node.op_type == "DequantizeLinear" and node.output[0] not in infos:
            infos[node.output[0]] = onnx.helper.make_tensor_value_info(node.output[0], onnx.TensorProto.FLOAT, None)
    initializers = {i.name for i in graph.initializer}
    inputs = {i.name: _dims(i) or () for i in graph.input if i.name not in initializers}
    tensors: list[TensorInfo] = []
    for name, dims in inputs.items():
        vi = infos[name]
        tensors.append(
            TensorInfo(len(tensors), name, "Input", "", dims, FLOAT_TYPES.get(vi.type.tensor_type.elem_type))
        )
    q_out = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "QuantizeLinear"}
    dequantized: dict[str, str] = {}
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in q_out:
            dequantized.setdefault(q_out[node.input[0]], node.output[0])
    for node in graph.node:
        if node.op_type == "Constant":
            continue
        for out in node.output:
            if not out:
                continue
            vi = infos.get(out)
            elem = vi.type.tensor_type.elem_type if vi is not None else 0
            tensors.append(
                TensorInfo(
                    index=len(tensors),
                    name=out,
                    op_type=node.op_type,
                    node=node.name,
                    shape=_dims(vi) if vi is not None else None,
                    dtype=FLOAT_TYPES.get(elem, onnx.helper.tensor_dtype_to_np_dtype(elem).name if elem else None),
                )
            )
    return GraphTensors(inputs, tuple(o.name for o in graph.output), tuple(tensors), dequantized), infos


def expose_all(model: Any, infos: dict[str, Any], names: list[str]) -> Any:
    """A copy of ``model`` whose graph outputs also include ``names`` (typed from shape inference)."""
    import onnx

    debug = onnx.ModelProto()
    debug.CopyFrom(model)
    existing = {o.name for o in debug.graph.output}
    for name in names:
        if name in existing or name not in infos:
            continue
        debug.graph.output.append(infos[name])
    return debug


class OrtRunner:
    """Runs an ONNX file on onnxruntime's CPU provider.

    ``run`` uses the model as it is (int8 kernels for a QDQ model). ``run_all`` uses a copy that exposes every
    float intermediate tensor; exposing a tensor keeps onnxruntime from fusing through it, so on a QDQ model the
    intermediates are the fake-quantized values the next layer reads (as ``snpe-net-run --debug`` dumps them).
    """

    batch_size = 1
    """One image per call: :meth:`run_batch` and :meth:`run_all_batch` just loop."""

    def __init__(self, name: str, path: Path, *, threads: int = 0) -> None:
        self.name = name
        self._path = path
        self._threads = threads
        self._model: Any = None
        self._graph: GraphTensors | None = None
        self._infos: dict[str, Any] = {}
        self._session: Any = None
        self._debug_session: Any = None
        self._debug_outputs: list[str] = []

    def model_path(self) -> Path:
        return self._path

    def prepare(self) -> None:
        if self._model is None:
            self._model = load_checked(self._path, self.name)
            self._graph, self._infos = describe(self._model)

    def graph(self) -> GraphTensors:
        self.prepare()
        assert self._graph is not None
        return self._graph

    def _options(self) -> Any:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if self._threads:
            opts.intra_op_num_threads = self._threads
        return opts

    def _new_session(self, model_bytes: bytes) -> Any:
        import onnxruntime as ort

        try:
            return ort.InferenceSession(model_bytes, self._options(), providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ModelError(f"{self.name}: onnxruntime cannot load {self._path}: {exc}") from None

    def run(self, feeds: Mapping[str, np.ndarray]) -> TensorDict:
        if self._session is None:
            self.prepare()
            self._session = self._new_session(self._path.read_bytes())
        outs = self._guarded(self._session, feeds)
        return {o.name: np.asarray(v) for o, v in zip(self._session.get_outputs(), outs, strict=True)}

    def run_all(self, feeds: Mapping[str, np.ndarray]) -> TensorDict:
        if self._debug_session is None:
            graph = self.graph()
            floats = [t.name for t in graph.tensors if t.dtype in FLOAT_TYPES.values()]
            debug = expose_all(self._model, self._infos, floats)
            self._debug_session = self._new_session(debug.SerializeToString())
            self._debug_outputs = [o.name for o in self._debug_session.get_outputs()]
        outs = self._guarded(self._debug_session, feeds)
        return {n: np.asarray(v) for n, v in zip(self._debug_outputs, outs, strict=True)}

    def run_batch(self, feeds: Sequence[Mapping[str, np.ndarray]]) -> list[TensorDict]:
        return [self.run(f) for f in feeds]

    def run_all_batch(self, feeds: Sequence[Mapping[str, np.ndarray]]) -> list[TensorDict]:
        return [self.run_all(f) for f in feeds]

    def _guarded(self, session: Any, feeds: Mapping[str, np.ndarray]) -> list[Any]:
        try:
            return list(session.run(None, dict(feeds)))
        except Exception as exc:
            shapes = {k: list(v.shape) for k, v in feeds.items()}
            raise ModelError(f"{self.name}: onnxruntime failed to run {self._path} on inputs {shapes}: {exc}") from None

    def time_runs(self, feeds: Mapping[str, np.ndarray], *, rounds: int, warmup: int) -> list[float]:
        """Wall-clock seconds of ``rounds`` runs of :meth:`run` after ``warmup`` runs (progress: stage ``speed``)."""
        times = []
        with progress.task(self.name, "speed", warmup + rounds) as bar:
            for _ in range(warmup):
                self.run(feeds)
                bar.advance()
            for _ in range(rounds):
                t0 = time.perf_counter()
                self.run(feeds)
                times.append(time.perf_counter() - t0)
                bar.advance()  # outside the timed span
        return times

    def speed(self, feeds: Mapping[str, np.ndarray], *, rounds: int = 50, warmup: int = 5) -> LatencyStats:
        times = self.time_runs(feeds, rounds=rounds, warmup=warmup)
        return LatencyStats.from_seconds(times, "onnxruntime CPUExecutionProvider")

    def layer_times(self, feeds: Mapping[str, np.ndarray], *, runs: int = 10, optimized: bool = True) -> LayerProfile:
        """Per-node kernel time from onnxruntime's profiler, in a session of its own (never the timed one).

        ``optimized=False`` turns onnxruntime's graph fusions off so that layer names are the model's node names
        (for lint time shares); the default profiles the graph as it really runs.
        """
        import onnxruntime as ort

        self.prepare()
        with tempfile.TemporaryDirectory(prefix="qc-profile-") as tmp:
            opts = self._options()
            opts.enable_profiling = True
            if not optimized:
                opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            opts.profile_file_prefix = str(Path(tmp) / "ort")
            session = ort.InferenceSession(str(self._path), opts, providers=["CPUExecutionProvider"])
            with progress.task(self.name, "profile", runs + 1) as bar:
                for _ in range(runs + 1):  # the first run is a warm-up, left out by the parser
                    self._guarded(session, feeds)
                    bar.advance()
            return parse_ort_profile(Path(session.end_profiling()), skip_runs=1)
