"""The embedded default target: static QDQ quantization with onnxruntime, settings named after SNPE's."""

from __future__ import annotations

import logging
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from qc import progress
from qc.config import QuantSettings
from qc.errors import ConfigError, ModelError

log = logging.getLogger(__name__)


def float_node_names(model: Any, settings: QuantSettings, entry: str) -> list[str]:
    """Nodes kept in float: ``float_nodes`` plus every node downstream of a ``float_downstream_of`` tensor."""
    graph = model.graph
    by_name = {n.name for n in graph.node}
    produced = {o for n in graph.node for o in n.output} | {i.name for i in graph.input}
    problems = [
        f"{entry}: target.float_nodes: no node named {n!r} in the model."
        for n in settings.float_nodes
        if n not in by_name
    ]
    problems += [
        f"{entry}: target.float_downstream_of: no tensor named {t!r} in the model."
        for t in settings.float_downstream_of
        if t not in produced
    ]
    problems += [
        f"{entry}: target.int16_tensors: no tensor named {t!r} in the model."
        for t in settings.int16_tensors
        if t not in produced
    ]
    op_types = {n.op_type for n in graph.node}
    problems += [
        f"{entry}: target.float_op_types: op type {t!r} does not occur in the model "
        f"(it has {', '.join(sorted(op_types))})."
        for t in settings.float_op_types
        if t not in op_types
    ]
    if problems:
        raise ConfigError("\n".join(problems))
    keep = set(settings.float_nodes)
    frontier = set(settings.float_downstream_of)
    for node in graph.node:  # nodes are in topological order
        if any(i in frontier for i in node.input):
            keep.add(node.name)
            frontier.update(o for o in node.output if o)
    return sorted(keep)


@contextmanager
def quantizer_messages_to_log(entry: str) -> Iterator[None]:
    """Route onnxruntime's quantizer warnings (root-logger records, ``warnings.warn``) into qc's log at DEBUG.

    The quantizer logs through the root logger, so without this every CLI command and every worker prints them.
    """

    def keep(record: logging.LogRecord) -> bool:
        if "onnxruntime" in record.pathname.replace("\\", "/").split("/"):
            log.debug("%s: onnxruntime quantizer: %s", entry, record.getMessage())
            return False
        return True

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
        for w in caught:
            log.debug("%s: onnxruntime quantizer warning: %s", entry, w.message)
    finally:
        root.removeFilter(keep)


def preprocess_for_quantizer(model: Any, entry: str) -> tuple[Any, str | None]:
    """The quantizer's pre-processing (ONNX shape inference; onnxruntime asks for it), when it keeps the graph intact.

    Only shape inference runs (``quant_pre_process`` with optimization and symbolic inference off): fusions would
    rename or remove the tensors qc compares layer by layer. The result is used only when every node keeps its name
    and op type; the returned note says what was done (for the run's settings), or None when it was not applied.
    """
    import onnx
    from onnxruntime.quantization import quant_pre_process

    before = [(n.name, n.op_type, tuple(n.output)) for n in model.graph.node]
    with tempfile.TemporaryDirectory(prefix="qc-preprocess-") as tmp:
        out = Path(tmp) / "pre.onnx"
        try:
            with quantizer_messages_to_log(entry):
                quant_pre_process(model, str(out), skip_optimization=True, skip_symbolic_shape=True)
            done = onnx.load(str(out))
        except Exception as exc:  # shape inference can fail on exotic graphs; quantization still works without it
            log.info("%s: quantization pre-processing skipped: %s", entry, exc)
            return model, None
    after = [(n.name, n.op_type, tuple(n.output)) for n in done.graph.node]
    if after != before:
        log.info("%s: quantization pre-processing would change the graph; quantizing the model as it is", entry)
        return model, None
    return done, "pre-processed for quantization: ONNX shape inference (onnxruntime quant_pre_process, no fusions)"


def requantize_biases(model: Any, bits: int) -> list[str]:
    """Re-quantize the int32 biases of a QDQ model to ``bits``-bit symmetric integers with their own scale; in place.

    onnxruntime's quantizer stores a Conv/Gemm bias as int32 at scale input_scale x weight_scale. SNPE's
    ``--bias_bitwidth 8`` gives the bias its own 8-bit encoding instead; this reproduces that rounding: each bias
    DequantizeLinear gets int8 data and one per-tensor scale (max |bias| / 127). Returns the biases changed.
    """
    import onnx
    from onnx import numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    producers = {o: n for n in graph.node for o in n.output}
    qmax = float(2 ** (bits - 1) - 1)
    np_type = {8: np.int8, 16: np.int16}[bits]
    changed: list[str] = []
    for node in graph.node:
        if node.op_type not in ("Conv", "ConvTranspose", "Gemm") or len(node.input) < 3 or not node.input[2]:
            continue
        dq = producers.get(node.input[2])
        if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in inits:
            continue
        q = numpy_helper.to_array(inits[dq.input[0]])
        if q.dtype != np.int32:
            continue
        scale = numpy_helper.to_array(inits[dq.input[1]]).astype(np.float64)
        zero = numpy_helper.to_array(inits[dq.input[2]]).astype(np.float64) if len(dq.input) > 2 and dq.input[2] else 0
        bias = (q.astype(np.float64) - zero) * scale
        peak = float(np.max(np.abs(bias))) if bias.size else 0.0
        new_scale = peak / qmax if peak > 0 else 1.0
        values = np.clip(np.round(bias / new_scale), -qmax, qmax).astype(np_type)
        base = f"{dq.input[0]}_b{bits}"
        graph.initializer.extend(
            [
                numpy_helper.from_array(values, base),
                numpy_helper.from_array(np.array(new_scale, dtype=np.float32), f"{base}_scale"),
                numpy_helper.from_array(np.array(0, dtype=np_type), f"{base}_zero_point"),
            ]
        )
        del dq.input[:]
        dq.input.extend([base, f"{base}_scale", f"{base}_zero_point"])
        for attr in list(dq.attribute):
            if attr.name == "axis":
                dq.attribute.remove(attr)
        changed.append(node.input[2])
    onnx.checker.check_model(model)
    return changed


class _Reader:
    """onnxruntime CalibrationDataReader over a stream of feeds; reports the stage ``calibrate`` (n/N) of ``entry``."""

    def __init__(self, feeds: Iterable[dict[str, np.ndarray]], entry: str = "", total: int | None = None) -> None:
        self._it: Iterator[dict[str, np.ndarray]] = iter(feeds)
        self.count = 0
        self._entry, self._total = entry, total
        self._progress: progress.Task | None = None
        self.exhausted = False

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.exhausted:
            return None
        if self._progress is None:
            self._progress = progress.start(self._entry, "calibrate", self._total)
        elif self.count:
            self._progress.advance()  # onnxruntime asks for the next input once it has run the previous one
        item = next(self._it, None)
        if item is not None:
            self.count += 1
        else:
            self.exhausted = True
            self.close()
        return item

    def close(self) -> None:
        """End the ``calibrate`` stage (after the last input, or when quantization failed)."""
        if self._progress is not None:
            self._progress.finish()

    def rewind(self) -> None:  # onnxruntime calls it for some calibrators; one pass is enough here
        return None


# Names onnxruntime's quantizer derives from a tensor name t: an initializer already called so is silently
# clobbered (for example a constant "box_scale" beside a quantized tensor "box"), corrupting the model.
_DERIVED = ("_scale", "_zero_point", "_quantized", "_QuantizeLinear_Output", "_DequantizeLinear_Output")


def rename_clashing_initializers(model: Any) -> list[tuple[str, str]]:
    """Rename initializers and Constant outputs whose names onnxruntime's quantizer would generate; in place."""
    graph = model.graph
    tensors = {o for n in graph.node for o in n.output if o} | {i.name for i in graph.input}
    reserved = {t + suffix for t in tensors for suffix in _DERIVED}
    taken = tensors | {i.name for i in graph.initializer}
    renames: dict[str, str] = {}
    constants = {n.output[0] for n in graph.node if n.op_type == "Constant"}
    for name in sorted(({i.name for i in graph.initializer} | constants) & reserved):
        new, k = f"{name}__qc", 1
        while new in taken or new in reserved:
            new, k = f"{name}__qc{k}", k + 1
        renames[name] = new
        taken.add(new)
    if not renames:
        return []
    for init in graph.initializer:
        init.name = renames.get(init.name, init.name)
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in renames:
                node.input[i] = renames[name]
        if node.op_type == "Constant" and node.output[0] in renames:
            node.output[0] = renames[node.output[0]]
    for out in graph.output:
        if out.name in renames:  # a graph output must keep its name: leave it, and the clash, alone
            raise ModelError(f"graph output {out.name!r} clashes with a name onnxruntime's quantizer generates.")
    return sorted(renames.items())


def model_opset(model: Any) -> int:
    """The default-domain (ai.onnx) opset a model imports; 0 when it imports none."""
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)


def required_opset(settings: QuantSettings) -> int:
    """The lowest default-domain opset the QDQ quantization of ``settings`` is valid in.

    Per-channel weights need DequantizeLinear's ``axis`` (opset 13); per-tensor QDQ needs QuantizeLinear (10).
    onnxruntime does not upgrade for the per-channel case by itself: it writes ``axis`` into an opset-11 graph,
    which no runtime then loads.
    """
    return 13 if settings.per_channel else 10


def upgrade_opset(model: Any, settings: QuantSettings, entry: str) -> tuple[Any, str | None]:
    """Convert ``model`` with onnx.version_converter when its opset is below what quantization needs.

    Returns the model to quantize and a note for the run's settings (None when nothing was changed).
    """
    import onnx
    from onnx import version_converter

    have, need = model_opset(model), required_opset(settings)
    if have >= need:
        return model, None
    try:
        converted = version_converter.convert_version(model, need)
        onnx.checker.check_model(converted)
    except Exception as exc:
        raise ModelError(
            f"{entry}: the reference imports opset {have}, below the {need} that "
            f"{'per-channel ' if settings.per_channel else ''}quantization needs, and onnx.version_converter "
            f"cannot convert it: {exc}"
        ) from None
    note = (
        f"reference converted from opset {have} to {need} with onnx.version_converter before quantization "
        f"({'per-channel weights need DequantizeLinear axis' if settings.per_channel else 'QDQ needs opset 10'})"
    )
    return converted, note


def quantize_int8(
    reference: Path,
    settings: QuantSettings,
    calibration: Iterable[dict[str, np.ndarray]],
    out: Path,
    entry: str,
    notes: list[str] | None = None,
    *,
    extra_options: Mapping[str, Any] | None = None,
    calibration_total: int | None = None,
) -> int:
    """Quantize ``reference`` to a QDQ model at ``out``; returns the number of calibration inputs used.

    Progress: the stages ``quantize`` (prepared, calibrated, written) and ``calibrate`` (n of
    ``calibration_total`` inputs, when the caller knows it) of ``entry``; they change nothing in the result.

    ``notes`` receives one line per transformation applied on the way (pre-processing, bias bit width), for the
    run's settings. ``extra_options`` are merged last into onnxruntime's ``extra_options`` (a backend's own
    overrides, for example the QNN EP's, computed from the same settings). A reference whose opset is below what the
    settings need is converted first (``upgrade_opset``); the note saying so is appended to ``notes`` and logged.
    """
    with progress.task(entry, "quantize", 3) as stage:
        return _quantize_int8(
            reference, settings, calibration, out, entry, notes, extra_options, calibration_total, stage
        )


def _quantize_int8(
    reference: Path,
    settings: QuantSettings,
    calibration: Iterable[dict[str, np.ndarray]],
    out: Path,
    entry: str,
    notes: list[str] | None,
    extra_options: Mapping[str, Any] | None,
    calibration_total: int | None,
    stage: progress.Task,
) -> int:
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    model = onnx.load(str(reference))
    model, note = upgrade_opset(model, settings, entry)
    if note is not None:
        log.info("%s: %s", entry, note)
        if notes is not None:
            notes.append(note)
    exclude = float_node_names(model, settings, entry)
    renamed = rename_clashing_initializers(model)
    if renamed:
        log.warning("%s: renamed %s before quantizing (onnxruntime would clobber them)", entry, renamed)
    model, pre = preprocess_for_quantizer(model, entry)
    applied = [pre] if pre else []
    op_types = sorted({n.op_type for n in model.graph.node} - set(settings.float_op_types) - {"Constant"})
    method = CalibrationMethod.Percentile if settings.activation_quantizer == "enhanced" else CalibrationMethod.MinMax
    opset = model_opset(model)
    extra: dict[str, Any] = {
        "ActivationSymmetric": settings.activation_quantizer == "symmetric",
        "WeightSymmetric": True,
        "CalibPercentile": 99.999,
    }
    if settings.int16_tensors:  # per-tensor 16-bit activations (SNPE: quantization overrides)
        extra["TensorQuantOverrides"] = {t: [{"quant_type": QuantType.QUInt16}] for t in settings.int16_tensors}
    if (settings.activation_bitwidth == 16 or settings.int16_tensors) and opset < 21:
        extra["UseQDQContribOps"] = True
    extra.update(extra_options or {})
    reader = _Reader(calibration, entry, calibration_total)
    stage.advance(note="prepared")

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def get_next(self) -> dict[str, np.ndarray] | None:
            was_exhausted = reader.exhausted
            item = reader.get_next()
            if reader.exhausted and not was_exhausted:
                stage.advance(note="calibrated")
            return item

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.onnx")
    log.info("quantizing %s (%d nodes kept in float) -> %s", reference, len(exclude), out)
    # onnxruntime writes "<input>-inferred.onnx" next to its input and deletes it afterwards: quantize a private
    # copy so that concurrent quantizations of one model (xdist workers, variants) never collide.
    workdir = tempfile.TemporaryDirectory(prefix="qc-quantize-", dir=out.parent)
    source = Path(workdir.name) / "model.onnx"
    onnx.save(model, str(source))
    try:
        with quantizer_messages_to_log(entry):
            quantize_static(
                str(source),
                str(tmp),
                Reader(),
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=op_types,
                per_channel=settings.per_channel,
                activation_type=QuantType.QUInt16 if settings.activation_bitwidth == 16 else QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=exclude,
                calibrate_method=method,
                extra_options=extra,
            )
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        raise ModelError(f"{entry}: onnxruntime quantize_static failed on {reference}: {exc}") from None
    finally:
        reader.close()
        workdir.cleanup()
    if reader.count == 0:
        tmp.unlink(missing_ok=True)
        raise ModelError(f"{entry}: the calibration set produced no inputs; quantization needs at least one image.")
    if settings.bias_bitwidth != 32:
        quantized = onnx.load(str(tmp))
        changed = requantize_biases(quantized, settings.bias_bitwidth)
        onnx.save(quantized, str(tmp))
        applied.append(
            f"bias_bitwidth {settings.bias_bitwidth}: {len(changed)} biases re-quantized with their own scale"
        )
    tmp.replace(out)
    stage.advance(note="written")
    if notes is not None:
        notes.extend(applied)
    return reader.count
