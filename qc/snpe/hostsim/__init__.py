"""Host simulation of a DLC: the reference ONNX quantized with exactly the DLC's encodings, and the error split.

:func:`build_host_simulation` quantizes the FP32 reference with onnxruntime's ``quantize_static`` (QDQ) and passes
every activation encoding that ``snpe-dlc-info`` printed as a ``TensorQuantOverrides`` entry
(``{"quant_type": QUInt8|QUInt16, "scale": float32, "zero_point": -offset}``; SNPE's ``real = scale * (q + offset)``
is ONNX's ``real = scale * (q - zero_point)``). DLC tensor names are mapped to ONNX names with the runner's tensor
map (exact or normalised names), falling back on the same name rules for tensors whose layout was undecided (an
encoding is per tensor, the layout does not matter for it). What each tensor becomes:

* ``exact``: a DLC encoding, used as is (activations; weights with a per-tensor encoding, or per-channel
  encodings for *every* channel, i.e. ``snpe-dlc-info -d``). The pair is inserted by qc when onnxruntime does not
  quantize that tensor itself (an op it does not quantize, read only by such ops).
* ``default``: quantized by onnxruntime's defaults: weights whose dlc-info shows only channel 0 of a per-channel
  encoding (symmetric int8 per channel, the same scheme as ``--use_per_channel_quantization``), int32 biases
  (scale = input scale x weight scale), activations the DLC quantizes with an encoding qc could not use.
* ``float``: left in float: tensors the DLC keeps in float (their producing node is excluded from quantization)
  and ONNX tensors absent from the DLC (fused or folded by the converter, e.g. a Conv output before its Relu: the
  device never rounds it), whose Q/DQ pair is removed again after quantization.

The built model is checked afterwards: every ``exact`` tensor's scale and zero point are read back from the QDQ
model's initializers and must equal the DLC's (float32 rounding of the printed scale), and no ``float`` tensor may
carry a Q/DQ pair; a difference is a :class:`qc.errors.ModelError` naming the tensor, expected and found.

:func:`split_error` streams each image once through the FP32 reference, the host simulation and the device and
accumulates, per tensor, the **quantization error** (host simulation vs FP32) and the **runtime error** (device vs
host simulation), with running sums only (:class:`qc.compare.metrics.MetricAccumulator`).

The module is split by step: :mod:`.plan` (what each tensor becomes), :mod:`.insert` (``quantize_static`` and the
graph surgery), :mod:`.verify` (read back and compare), :mod:`.split` (the error split), :mod:`.stage` (the cached
pipeline stage).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from qc.compare.matching import TensorMatch
from qc.snpe.hostsim.insert import apply_surgery, quantize
from qc.snpe.hostsim.plan import EncodingPlan, EncodingRow, HostSimResult, plan_encodings
from qc.snpe.hostsim.split import (
    ERROR_SPLIT_COLUMNS,
    ErrorSplit,
    HostSimRunner,
    SplitRow,
    split_error,
    write_error_split,
)
from qc.snpe.hostsim.stage import HostSimStage, host_simulation_stage
from qc.snpe.hostsim.verify import verify
from qc.snpe.parsers import DlcInfo

__all__ = [
    "ERROR_SPLIT_COLUMNS",
    "EncodingPlan",
    "EncodingRow",
    "ErrorSplit",
    "HostSimResult",
    "HostSimRunner",
    "HostSimStage",
    "SplitRow",
    "build_host_simulation",
    "host_simulation_stage",
    "split_error",
    "write_error_split",
]


def build_host_simulation(
    reference_onnx: Path,
    info: DlcInfo,
    tensor_map: Sequence[TensorMatch] | None,
    calibration: Iterable[Mapping[str, np.ndarray]] | None,
    out: Path,
    entry: str,
    *,
    quantize_weights: bool = True,
) -> HostSimResult:
    """Quantize ``reference_onnx`` into a QDQ model at ``out`` that uses the DLC's own encodings (see the module):
    plan, quantize and insert, verify, save.

    ``tensor_map``: the runner's reference -> DLC matches (:meth:`qc.snpe.runner.SnpeRunner.tensor_map`); None maps
    by name only. ``calibration``: feeds for onnxruntime's calibration pass, which only decides tensors without a
    usable DLC encoding (None: one all-zeros feed). ``quantize_weights=False`` keeps every weight in float (a
    runtime that quantizes activations only, such as the test toolkit's fake device).
    """
    import onnx

    from qc.errors import ModelError
    from qc.runners.ort import load_checked
    from qc.runners.quantize import rename_clashing_initializers

    model = load_checked(reference_onnx, entry)
    renamed = dict(rename_clashing_initializers(model))
    original_name = {new: old for old, new in renamed.items()}
    plan = plan_encodings(
        model, info, tensor_map, entry, quantize_weights=quantize_weights, original_name=original_name
    )
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    contrib = plan.sixteen and opset < 21
    result = HostSimResult(entry=entry, model=out, rows=list(plan.rows))
    sim = quantize(model, plan, calibration, out, entry, reference_onnx, contrib=contrib)
    result.excluded_nodes = sorted(plan.exclude)
    apply_surgery(sim, model, plan, result, contrib=contrib)
    verify(entry, sim, model, result, plan.exact_act, plan.exact_weights, plan.float_tensors)
    try:
        onnx.checker.check_model(sim)
    except Exception as exc:
        raise ModelError(f"{entry}: the host simulation model fails onnx.checker: {exc}") from None
    onnx.save(sim, str(out))
    result.notes.append(
        f"{len(result.names('exact', 'activation'))} activation(s) with the DLC's exact encoding "
        f"({len(result.inserted)} Q/DQ pairs inserted by qc), {len(result.names('default', 'activation'))} with "
        f"onnxruntime defaults, {len(result.names('float', 'activation'))} left float; weights: "
        f"{len(result.names('exact', 'weight'))} exact, {len(result.names('default', 'weight'))} default, "
        f"{len(result.names('float', 'weight'))} float."
    )
    return result
