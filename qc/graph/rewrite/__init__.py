"""ONNX rewrites that remove DSP-slow patterns found by :mod:`qc.graph.lint`, each verified on onnxruntime.

:func:`fix_model` applies, in this order, ``div`` (constant Div -> Mul by the reciprocal), ``foldable-eltwise``
(Add/Sub/Mul folded into the neighbouring Conv), ``input-channel-swap`` (input Split/Concat reorder moved into the
first Conv's weights, or removed and left to the caller) and ``conv-stride`` (odd stride -> fast stride + Slice).
After each rule the rewritten model is run on onnxruntime (CPU, graph optimizations off) on the check inputs and
every output is compared with the original model's; a rule whose result differs beyond the tolerance is retried
instance by instance, and the instances that still differ are rolled back and reported in ``unsafe``.

Rooms: :mod:`.common` (types), :mod:`.check` (onnxruntime runs and output comparison), :mod:`.editor` (the
model editor), one module per rule (:mod:`.div`, :mod:`.fold`, :mod:`.swap`, :mod:`.stride`); the driver is
here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import onnx

from qc import jsonio
from qc.errors import ConfigError, DataError, ModelError
from qc.graph.lint import RULES
from qc.graph.rewrite.check import compare_outputs, ort_session, random_inputs, run_onnx, runtime_inputs
from qc.graph.rewrite.common import (
    REWRITABLE_RULES,
    AppliedRewrite,
    ChannelSwapMode,
    InputPermutation,
    Options,
    Rewriter,
    RewriteResult,
    named_copy,
)
from qc.graph.rewrite.div import rewrite_div
from qc.graph.rewrite.fold import rewrite_fold
from qc.graph.rewrite.stride import rewrite_stride
from qc.graph.rewrite.swap import rewrite_swap

__all__ = [
    "REWRITABLE_RULES",
    "AppliedRewrite",
    "InputPermutation",
    "RewriteResult",
    "fix_model",
    "ort_session",
    "random_inputs",
    "run_onnx",
    "save_fixed",
]

_REWRITERS: dict[str, Rewriter] = {
    "div": rewrite_div,
    "foldable-eltwise": rewrite_fold,
    "input-channel-swap": rewrite_swap,
    "conv-stride": rewrite_stride,
}


def _check_feeds(model: onnx.ModelProto, feeds: Sequence[Mapping[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    names = [i.name for i in runtime_inputs(model)]
    out: list[dict[str, np.ndarray]] = []
    for k, f in enumerate(feeds):
        missing = [n for n in names if n not in f]
        if missing:
            raise DataError(f"check_inputs[{k}] lacks model input(s) {missing}; the model wants {names}.")
        out.append({n: np.asarray(f[n]) for n in names})
    if not out:
        raise DataError("check_inputs is empty; pass None to use random inputs.")
    return out


def _verify(
    candidate: onnx.ModelProto,
    feeds: Sequence[Mapping[str, np.ndarray]],
    perms: Sequence[InputPermutation],
    reference: Sequence[Mapping[str, np.ndarray]],
    *,
    rtol: float,
    atol: float,
) -> tuple[bool, float, str]:
    try:
        onnx.checker.check_model(candidate)
    except Exception as exc:
        return False, float("inf"), f"the rewritten model is invalid ONNX ({exc})"
    fed: list[dict[str, np.ndarray]] = []
    for f in feeds:
        g = dict(f)
        for p in perms:
            g[p.input] = p.apply(g[p.input])
        fed.append(g)
    try:
        got = run_onnx(candidate, fed)
    except Exception as exc:
        return False, float("inf"), f"onnxruntime cannot run the rewritten model ({exc})"
    return compare_outputs(reference, got, rtol, atol)


def fix_model(
    model: onnx.ModelProto,
    rules: Sequence[str] | None = None,
    *,
    check_inputs: Sequence[Mapping[str, np.ndarray]] | None = None,
    rtol: float = 1e-4,
    atol: float = 1e-4,
    channel_swap: ChannelSwapMode = "weights",
    seed: int = 0,
) -> RewriteResult:
    """Rewrite ``model`` (not modified) to remove the patterns of ``rules`` (all rewritable rules when None).

    Every rule's result is checked on onnxruntime against the original with ``check_inputs`` (two random feeds of
    the declared shapes when None): elementwise ``|new - old| <= atol + rtol * |old|`` on every output. Lint-only
    rules (``matmul``, ...) are listed in ``unsafe`` as having no rewrite; unknown ids raise ConfigError.

    ``channel_swap``: ``"weights"`` moves an input channel reorder into the first Conv's weights (input contract
    unchanged); ``"input"`` just deletes the reorder, and the caller must then feed the other channel order
    (see :attr:`AppliedRewrite.input_permutation` and :meth:`RewriteResult.feed`).
    """
    if not isinstance(model, onnx.ModelProto):
        raise ModelError(f"fix_model needs an onnx.ModelProto, got {type(model).__name__}.")
    if channel_swap not in ("weights", "input"):
        raise ConfigError(f"channel_swap must be 'weights' or 'input', got {channel_swap!r}.")
    requested = list(REWRITABLE_RULES) if rules is None else list(rules)
    unknown = [r for r in requested if r not in RULES]
    if unknown:
        raise ConfigError(f"Unknown rule(s) {unknown}; known rules are {sorted(RULES)}.")
    opts = Options(channel_swap)
    result = RewriteResult(model=named_copy(model))
    for r in requested:
        if r not in REWRITABLE_RULES:
            result.unsafe.append((r, f"no automatic rewrite exists for rule {r!r}; fix the model by hand"))
    todo = [r for r in REWRITABLE_RULES if r in requested]
    if not todo:
        return result

    feeds = _check_feeds(model, check_inputs) if check_inputs is not None else random_inputs(model, seed=seed)
    try:
        reference = run_onnx(model, feeds)
    except Exception as exc:
        raise ModelError(f"onnxruntime cannot run the original model, so no rewrite can be verified ({exc}).") from exc

    perms: list[InputPermutation] = []
    current = result.model
    for rule in todo:
        rewriter = _REWRITERS[rule]
        outcome = rewriter(current, None, opts)
        result.unsafe.extend((rule, f"{r.node}: {r.reason}") for r in outcome.refused)
        if not outcome.applied:
            continue
        new_perms = [a.input_permutation for a in outcome.applied if a.input_permutation is not None]
        ok, diff, msg = _verify(outcome.model, feeds, perms + new_perms, reference, rtol=rtol, atol=atol)
        if ok:
            current = outcome.model
            result.applied.extend(outcome.applied)
            perms.extend(new_perms)
            result.max_abs_diff[rule] = diff
            continue
        # Something in the batch is wrong: retry one instance at a time, keep the ones that verify.
        for app in outcome.applied:
            single = rewriter(current, {app.node}, opts)
            if not single.applied:
                result.unsafe.append((rule, f"{app.node}: rolled back (could not be re-applied alone; batch: {msg})"))
                continue
            one_perms = [a.input_permutation for a in single.applied if a.input_permutation is not None]
            ok1, d1, m1 = _verify(single.model, feeds, perms + one_perms, reference, rtol=rtol, atol=atol)
            if ok1:
                current = single.model
                result.applied.extend(single.applied)
                perms.extend(one_perms)
                result.max_abs_diff[rule] = max(result.max_abs_diff.get(rule, 0.0), d1)
            else:
                result.unsafe.append((rule, f"{app.node}: rolled back: {m1}"))
    result.model = current
    return result


def save_fixed(result: RewriteResult, path: str | Path, *, sidecar: bool = True) -> Path:
    """Write the fixed model to ``path`` and, with ``sidecar``, ``<path>.rewrites.json`` describing the rewrites.

    Models over ~1.8 GB are written with external data next to the file.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    big = result.model.ByteSize() > 1_800_000_000
    onnx.save_model(
        result.model,
        str(target),
        save_as_external_data=big,
        all_tensors_to_one_file=True,
        location=f"{target.name}.data" if big else None,
    )
    if sidecar:
        info = {
            "applied": [asdict(a) for a in result.applied],
            "unsafe": [{"rule": r, "reason": why} for r, why in result.unsafe],
            "max_abs_diff": result.max_abs_diff,
        }
        Path(f"{target}.rewrites.json").write_text(jsonio.dumps(info, indent=2, default=list) + "\n")
    return target
