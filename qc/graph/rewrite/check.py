"""onnxruntime helpers that verify a rewrite: sessions, runs, random check inputs, output comparison."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx
from onnx import helper

from qc.errors import ModelError


def ort_session(model: onnx.ModelProto, *, optimize: bool = False, threads: int = 1) -> object:
    """An onnxruntime CPU session for ``model`` (graph optimizations off unless ``optimize``)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def run_onnx(
    model: onnx.ModelProto, feeds: Sequence[Mapping[str, np.ndarray]], *, optimize: bool = False
) -> list[dict[str, np.ndarray]]:
    """Run ``model`` on onnxruntime (CPU, one thread) for every feed dict; outputs by name."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    results: list[dict[str, np.ndarray]] = []
    for f in feeds:
        values = sess.run(None, dict(f))
        results.append({n: np.asarray(v) for n, v in zip(names, values, strict=True)})
    return results


def runtime_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """The graph inputs a caller feeds (initializers listed as inputs excluded)."""
    inits = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits]


def random_inputs(model: onnx.ModelProto, *, count: int = 2, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """``count`` random feeds matching the model's inputs (symbolic dims: 1 on axis 0, else 16).

    Floats are standard normal, integers 0..1, booleans random.
    """
    rng = np.random.default_rng(seed)
    specs: list[tuple[str, np.dtype[np.generic], tuple[int, ...]]] = []
    for vi in runtime_inputs(model):
        if not vi.type.HasField("tensor_type"):
            raise ModelError(f"Input {vi.name!r} is not a tensor; pass check_inputs explicitly.")
        tt = vi.type.tensor_type
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tt.elem_type))
        dims = tuple(
            int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else (1 if i == 0 else 16)
            for i, d in enumerate(tt.shape.dim)
        )
        specs.append((vi.name, dtype, dims))
    feeds: list[dict[str, np.ndarray]] = []
    for _ in range(count):
        feed: dict[str, np.ndarray] = {}
        for name, dtype, dims in specs:
            if dtype.kind == "f":
                feed[name] = rng.standard_normal(dims).astype(dtype)
            elif dtype.kind == "b":
                feed[name] = rng.integers(0, 2, dims).astype(bool)
            else:
                feed[name] = rng.integers(0, 2, dims).astype(dtype)
        feeds.append(feed)
    return feeds


def compare_outputs(
    ref: Sequence[Mapping[str, np.ndarray]], got: Sequence[Mapping[str, np.ndarray]], rtol: float, atol: float
) -> tuple[bool, float, str]:
    """(all outputs within ``atol + rtol * |ref|``, largest difference, first failure or "") of ``got`` vs ``ref``."""
    worst = 0.0
    bad = ""
    for r, g in zip(ref, got, strict=True):
        for name, a in r.items():
            if name not in g:
                return False, float("inf"), f"output {name!r} is missing from the rewritten model"
            b = g[name]
            if a.shape != b.shape:
                return False, float("inf"), f"output {name!r} changed shape {a.shape} -> {b.shape}"
            if a.dtype.kind in "fc":
                a64 = a.astype(np.float64)
                b64 = b.astype(np.float64)
                both_nan = np.isnan(a64) & np.isnan(b64)
                diff = np.where(both_nan, 0.0, np.abs(a64 - b64))
                diff = np.where(np.isnan(diff), np.inf, diff)
                tol = atol + rtol * np.abs(np.where(np.isnan(a64), 0.0, a64))
            else:
                diff = (a != b).astype(np.float64)
                tol = np.zeros_like(diff)
            d = float(diff.max()) if diff.size else 0.0
            worst = max(worst, d)
            if diff.size and bool(np.any(diff > tol)) and not bad:
                bad = f"output {name!r} differs by up to {d:.3g} (rtol {rtol:g}, atol {atol:g})"
    return (not bad), worst, bad
