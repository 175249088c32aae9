"""The embedded default target: static QDQ quantization with onnxruntime, settings named after SNPE's."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

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


class _Reader:
    """onnxruntime CalibrationDataReader over a stream of feeds."""

    def __init__(self, feeds: Iterable[dict[str, np.ndarray]]) -> None:
        self._it: Iterator[dict[str, np.ndarray]] = iter(feeds)
        self.count = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        item = next(self._it, None)
        if item is not None:
            self.count += 1
        return item

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
) -> int:
    """Quantize ``reference`` to a QDQ model at ``out``; returns the number of calibration inputs used.

    A reference whose opset is below what the settings need is converted first (``upgrade_opset``); the note
    saying so is appended to ``notes`` (to record in the run's settings) and logged.
    """
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
    reader = _Reader(calibration)

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def get_next(self) -> dict[str, np.ndarray] | None:
            return reader.get_next()

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.onnx")
    log.info("quantizing %s (%d nodes kept in float) -> %s", reference, len(exclude), out)
    # onnxruntime writes "<input>-inferred.onnx" next to its input and deletes it afterwards: quantize a private
    # copy so that concurrent quantizations of one model (xdist workers, variants) never collide.
    workdir = tempfile.TemporaryDirectory(prefix="qc-quantize-", dir=out.parent)
    source = Path(workdir.name) / "model.onnx"
    onnx.save(model, str(source))
    try:
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
        workdir.cleanup()
    if reader.count == 0:
        tmp.unlink(missing_ok=True)
        raise ModelError(f"{entry}: the calibration set produced no inputs; quantization needs at least one image.")
    tmp.replace(out)
    return reader.count
