"""QDQ models in the form the QNN HTP backend accepts, from the ``ort-int8`` target's SNPE-named settings.

The quantization itself is :func:`qc.runners.quantize.quantize_int8` (same calibration reader, same float-node
selection, same name-clash protection); this module adds the QNN EP's own tensor overrides, computed by
onnxruntime's ``get_qnn_qdq_config`` from the same settings: fixed output encodings HTP requires (Sigmoid, Tanh),
8-bit weights beside 16-bit activations for MatMul/LayerNormalization, and the type conversions mixed precision
(``int16_tensors``) needs around each 16-bit tensor.

onnxruntime's ``qnn_preprocess_model`` (Gelu/LpNormalization/LayerNormalization fusions) is opt-in
(``preprocess=True``): it runs onnxruntime's graph optimizer, which renames and folds nodes, so node names in the
settings and the per-layer match against the reference may no longer hold.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from qc.config import QuantSettings
from qc.errors import ConfigError, ModelError
from qc.runners.quantize import float_node_names, quantize_int8, rename_clashing_initializers

log = logging.getLogger(__name__)

# The keys of get_qnn_qdq_config's extra options that carry QNN requirements (the others, for example the
# calibration stride, stay as quantize_int8 sets them).
_QNN_KEYS = ("TensorQuantOverrides", "MinimumRealRange", "DedicatedQDQPair", "QDQKeepRemovableActivations")


def qnn_extra_options(model: Any, settings: QuantSettings, entry: str) -> dict[str, Any]:
    """onnxruntime quantizer ``extra_options`` that make the QDQ model of ``settings`` acceptable to QNN HTP.

    ``model`` is the ONNX ModelProto as it will be quantized (after :func:`rename_clashing_initializers`).
    """
    from onnxruntime.quantization import CalibrationMethod, QuantType
    from onnxruntime.quantization.execution_providers.qnn import get_qnn_qdq_config

    exclude = float_node_names(model, settings, entry)
    op_types = sorted({n.op_type for n in model.graph.node} - set(settings.float_op_types) - {"Constant"})
    init = {t: [{"quant_type": QuantType.QUInt16}] for t in settings.int16_tensors}
    try:
        config = get_qnn_qdq_config(
            model,
            None,  # the reader is only stored in the returned config; quantize_int8 brings its own
            calibrate_method=(
                CalibrationMethod.Percentile
                if settings.activation_quantizer == "enhanced"
                else CalibrationMethod.MinMax
            ),
            activation_type=QuantType.QUInt16 if settings.activation_bitwidth == 16 else QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=settings.per_channel,
            init_overrides=init or None,
            activation_symmetric=settings.activation_quantizer == "symmetric",
            weight_symmetric=True,
            op_types_to_quantize=op_types,
            nodes_to_exclude=exclude,
        )
    except Exception as exc:
        raise ModelError(f"{entry}: onnxruntime's get_qnn_qdq_config failed: {exc}") from None
    extra = {k: config.extra_options[k] for k in _QNN_KEYS if config.extra_options.get(k) is not None}
    if config.extra_options.get("UseQDQContribOps"):
        extra["UseQDQContribOps"] = True
    return extra


def quantize_htp(
    reference: Path,
    settings: QuantSettings,
    calibration: Iterable[dict[str, np.ndarray]],
    out: Path,
    entry: str,
    *,
    preprocess: bool = False,
    calibration_total: int | None = None,
) -> int:
    """Quantize ``reference`` to a QDQ model for the HTP at ``out``; returns the number of calibration inputs used.

    Progress (``quantize``, ``calibrate`` n of ``calibration_total``) is reported by :func:`quantize_int8`."""
    import onnx

    source = reference
    with tempfile.TemporaryDirectory(prefix="qc-qnn-quantize-", dir=out.parent if out.parent.is_dir() else None) as d:
        if preprocess:
            from onnxruntime.quantization.execution_providers.qnn import qnn_preprocess_model

            float_node_names(onnx.load(str(reference)), settings, entry)  # settings errors name the reference
            pre = Path(d) / "preprocessed.onnx"
            try:
                changed = qnn_preprocess_model(str(reference), str(pre))
            except Exception as exc:
                raise ModelError(f"{entry}: onnxruntime's qnn_preprocess_model failed on {reference}: {exc}") from None
            if changed:
                log.info("%s: QNN preprocessing rewrote %s", entry, reference)
                source = pre
        model = onnx.load(str(source))
        rename_clashing_initializers(model)  # as quantize_int8 will: the overrides must use the final names
        try:
            extra = qnn_extra_options(model, settings, entry)
        except ConfigError as exc:
            if source is reference:
                raise
            raise ConfigError(
                f"{exc}\n{entry}: QNN preprocessing (preprocess=True) fused or renamed these nodes; name them as "
                "they are after preprocessing, or turn preprocessing off."
            ) from None
        return quantize_int8(
            source, settings, calibration, out, entry, extra_options=extra, calibration_total=calibration_total
        )
