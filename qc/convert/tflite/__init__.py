"""Convert a float TFLite flatbuffer to ONNX with numpy, the ``flatbuffers`` runtime and onnx only.

The reader (:func:`read_tflite`) decodes the few TFLite schema tables a float model needs (Model, SubGraph,
Tensor, Buffer, Operator, OperatorCode, QuantizationParameters and the builtin options of the supported
operators) straight from the flatbuffer with ``flatbuffers.table.Table``: no generated schema code.

Layout: TFLite activations are NHWC; the ONNX graph keeps every rank-4 activation in NCHW (ONNX's native
layout, what Conv/Pool/Resize expect), with kernels permuted at conversion time. Operators whose meaning
depends on the memory order (RESHAPE, FULLY_CONNECTED, SOFTMAX, MEAN, rank-changing elementwise ops) see their
input transposed back to NHWC first and their rank-4 result transposed to NCHW again, so that values are
exactly those of TFLite. The graph input is NCHW by default (``input_layout="NHWC"`` keeps TFLite's shape);
rank-4 graph outputs are NCHW by default (``output_layout="NHWC"`` keeps TFLite's shapes). Names of graph
inputs and outputs are the TFLite ones.

Constant weights stored as float16 or as int8/uint8 with quantization parameters (DEQUANTIZE of a constant) are
folded to float32 initializers. Models with quantized activations and custom operators are rejected with a
:class:`qc.errors.ModelError` naming the operator.

Rooms: :mod:`.reader` (flatbuffer -> :class:`TfliteModel`), :mod:`.converter` (operators -> ONNX nodes); the entry
points are here.
"""

from __future__ import annotations

from pathlib import Path

import onnx

from qc.convert.tflite.converter import Converter, Layout
from qc.convert.tflite.reader import (
    BUILTIN_NAMES,
    FbTable,
    TfliteModel,
    TfliteOperator,
    TfliteTensor,
    read_tflite,
)
from qc.errors import ModelError

__all__ = [
    "BUILTIN_NAMES",
    "FbTable",
    "Layout",
    "TfliteModel",
    "TfliteOperator",
    "TfliteTensor",
    "convert_tflite",
    "read_tflite",
    "tflite_to_onnx",
]


def tflite_to_onnx(
    model: TfliteModel, *, input_layout: Layout = "NCHW", output_layout: Layout = "NCHW"
) -> onnx.ModelProto:
    """The ONNX model of a parsed TFLite model (see the module docstring for layouts and names)."""
    for layout, what in ((input_layout, "input_layout"), (output_layout, "output_layout")):
        if layout not in ("NCHW", "NHWC"):
            raise ModelError(f"tflite_to_onnx: {what} must be 'NCHW' or 'NHWC', got {layout!r}.")
    if not model.operators:
        raise ModelError(f"{model.path}: the subgraph has no operator.")
    return Converter(model, input_layout, output_layout).run(Path(model.path).stem or "tflite")


def convert_tflite(
    tflite_path: Path, out_path: Path, *, input_layout: Layout = "NCHW", output_layout: Layout = "NCHW"
) -> onnx.ModelProto:
    """Convert the TFLite file ``tflite_path`` to an ONNX file at ``out_path``; returns the ONNX model."""
    model = tflite_to_onnx(read_tflite(tflite_path), input_layout=input_layout, output_layout=output_layout)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out_path))
    return model
