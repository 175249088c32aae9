"""QNN/SNPE layer types and parameters in ONNX's words, so a DLC adapter builds a :class:`~qc.graph.view.GraphView`.

:func:`canonical_op` maps a type name as printed by ``snpe-dlc-info`` (and the ``operation`` code of
``Eltwise_Binary``, ``ElementWiseUnary`` and ``ElementWiseNeuron``) to an ONNX op type; :func:`canonical_attrs` maps
the usual QNN parameters (``stride``, ``pad_amount``, ``group``...) to ONNX attribute names. Both are re-exported by
:mod:`qc.graph.view`.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping

__all__ = ["canonical_attrs", "canonical_op"]

_BINARY_CODES: dict[int, str] = {
    0: "Add",
    1: "And",
    2: "Div",
    3: "Equal",
    4: "FloorDiv",
    5: "Mod",  # FMOD (ONNX Mod with fmod=1)
    6: "Greater",
    7: "GreaterOrEqual",
    8: "Less",
    9: "LessOrEqual",
    10: "Max",
    11: "Min",
    12: "Mod",
    13: "Mul",
    14: "NotEqual",
    15: "Or",
    16: "Pow",
    17: "SquaredDifference",
    18: "Sub",
    19: "Xor",
}
_UNARY_CODES: dict[int, str] = {
    0: "Abs",
    1: "Asin",
    2: "Atan",
    3: "Ceil",
    4: "Cos",
    5: "Exp",
    6: "Floor",
    7: "Log",
    8: "Neg",
    9: "Not",
    10: "Reciprocal",
    11: "Round",
    12: "Rsqrt",
    13: "Sign",
    14: "Sin",
    15: "Sqrt",
}
_NEURON_CODES: dict[int, str] = {
    0: "Elu",
    1: "Gelu",
    2: "HardSigmoid",
    3: "HardSwish",
    4: "Relu",
    5: "Clip",
    6: "Sigmoid",
    7: "Softplus",
    8: "Tanh",
}
# Words that can appear instead of the numeric code (e.g. "ElementWiseDivide", "DIVIDE").
_BINARY_WORDS: dict[str, str] = {
    "add": "Add",
    "and": "And",
    "divide": "Div",
    "div": "Div",
    "equal": "Equal",
    "floordiv": "FloorDiv",
    "fmod": "Mod",
    "greater": "Greater",
    "greaterequal": "GreaterOrEqual",
    "less": "Less",
    "lessequal": "LessOrEqual",
    "maximum": "Max",
    "minimum": "Min",
    "mod": "Mod",
    "multiply": "Mul",
    "mul": "Mul",
    "notequal": "NotEqual",
    "or": "Or",
    "power": "Pow",
    "pow": "Pow",
    "squareddifference": "SquaredDifference",
    "subtract": "Sub",
    "sub": "Sub",
    "xor": "Xor",
}

# Keys are lower case without "_": "Conv2d", "conv_2d" and "CONV2D" all match.
_QNN_TO_ONNX: dict[str, str] = {
    "conv2d": "Conv",
    "conv3d": "Conv",
    "conv1d": "Conv",
    "convolution": "Conv",
    "depthwiseconv2d": "Conv",
    "depthwiseconvolution": "Conv",
    "transposeconv2d": "ConvTranspose",
    "transposeconv3d": "ConvTranspose",
    "deconvolution": "ConvTranspose",
    "fullyconnected": "Gemm",
    "matmul": "MatMul",
    "batchmatmul": "MatMul",
    "concat": "Concat",
    "concatenation": "Concat",
    "stridedslice": "Slice",
    "slice": "Slice",
    "split": "Split",
    "reshape": "Reshape",
    "expanddims": "Unsqueeze",
    "squeeze": "Squeeze",
    "flatten": "Flatten",
    "transpose": "Transpose",
    "permute": "Transpose",
    "gather": "Gather",
    "gatherelements": "GatherElements",
    "gathernd": "GatherND",
    "softmax": "Softmax",
    "logsoftmax": "LogSoftmax",
    "relu": "Relu",
    "relu6": "Clip",
    "reluminmax": "Clip",
    "sigmoid": "Sigmoid",
    "tanh": "Tanh",
    "gelu": "Gelu",
    "elu": "Elu",
    "hardswish": "HardSwish",
    "prelu": "PRelu",
    "poolmax2d": "MaxPool",
    "poolavg2d": "AveragePool",
    "poolmax3d": "MaxPool",
    "poolavg3d": "AveragePool",
    "pad": "Pad",
    "resize": "Resize",
    "resizebilinear": "Resize",
    "resizenearestneighbor": "Resize",
    "batchnorm": "BatchNormalization",
    "layernorm": "LayerNormalization",
    "instancenorm": "InstanceNormalization",
    "groupnorm": "GroupNormalization",
    "reducemean": "ReduceMean",
    "reducemax": "ReduceMax",
    "reducemin": "ReduceMin",
    "reducesum": "ReduceSum",
    "reduceprod": "ReduceProd",
    "argmax": "ArgMax",
    "argmin": "ArgMin",
    "cast": "Cast",
    "convert": "Cast",
    "quantize": "QuantizeLinear",
    "dequantize": "DequantizeLinear",
    "tile": "Tile",
    "topk": "TopK",
    "depthtospace": "DepthToSpace",
    "spacetodepth": "SpaceToDepth",
    "pack": "Concat",
    "unpack": "Split",
    "elementwiseadd": "Add",
    "elementwisesubtract": "Sub",
    "elementwisemultiply": "Mul",
    "elementwisedivide": "Div",
    "elementwisepower": "Pow",
    "elementwisemaximum": "Max",
    "elementwiseminimum": "Min",
    "elementwiseabs": "Abs",
    "elementwiseexp": "Exp",
    "elementwiselog": "Log",
    "elementwiseneg": "Neg",
    "elementwisesquareroot": "Sqrt",
    "elementwisersqrt": "Rsqrt",
    "elementwisefloor": "Floor",
    "elementwiseceil": "Ceil",
    "elementwiseround": "Round",
    "elementwisesin": "Sin",
    "elementwisecos": "Cos",
    "elementwiseselect": "Where",
    "elementwiseequal": "Equal",
    "elementwisegreater": "Greater",
    "elementwiseless": "Less",
    "elementwisefloordiv": "FloorDiv",
}
_BINARY_TYPES = {"eltwisebinary", "elementwisebinary"}
_UNARY_TYPES = {"eltwiseunary", "elementwiseunary"}
_NEURON_TYPES = {"eltwiseneuron", "elementwiseneuron", "neuron"}


def _key(text: str) -> str:
    return re.sub(r"[\s_\-]", "", text).lower()


def _code_lookup(raw: str | None, codes: Mapping[int, str], words: Mapping[str, str]) -> str | None:
    if raw is None:
        return None
    text = raw.strip().strip("'\"")
    m = re.match(r"^-?\d+", text)
    if m:
        return codes.get(int(m.group(0)))
    k = _key(text)
    for prefix in ("elementwise", "eltwise", "qnnopelementwisebinaryoperation"):
        if k.startswith(prefix):
            k = k[len(prefix) :]
    if k in words:
        return words[k]
    lowered = {v.lower(): v for v in codes.values()}
    return lowered.get(k)


def canonical_op(qnn_type: str, params: Mapping[str, str] | None = None) -> str:
    """ONNX op type for a QNN/SNPE layer type (as printed by ``snpe-dlc-info``).

    ``Eltwise_Binary``/``ElementWiseBinary`` are resolved through their ``operation`` parameter (numeric code or
    name: 2 -> Div, 0 -> Add, 13 -> Mul, 18 -> Sub ...); likewise ``ElementWiseUnary`` and ``ElementWiseNeuron``.
    ``Conv2d``/``DepthWiseConv2d`` -> Conv, ``FullyConnected`` -> Gemm, ``StridedSlice`` -> Slice. Unknown types
    are returned unchanged (stripped), a binary op whose code is unknown becomes ``"Eltwise_Binary:<code>"`` and an
    activation whose code is unknown ``"ElementWiseNeuron(op=<code>)"``.
    """
    params = params or {}
    k = _key(qnn_type)
    op_param = None
    for pk, pv in params.items():
        if _key(pk) in ("operation", "eltwisetype", "op"):
            op_param = str(pv)
            break
    if k in _BINARY_TYPES:
        found = _code_lookup(op_param, _BINARY_CODES, _BINARY_WORDS)
        return found if found is not None else f"{qnn_type.strip()}:{op_param}"
    if k in _UNARY_TYPES:
        found = _code_lookup(op_param, _UNARY_CODES, {})
        return found if found is not None else f"{qnn_type.strip()}:{op_param}"
    if k in _NEURON_TYPES:  # an unknown activation code is reported, never guessed: ElementWiseNeuron(op=12)
        found = _code_lookup(op_param, _NEURON_CODES, {"relu6": "Clip", "reluminmax": "Clip"})
        return found if found is not None else f"{qnn_type.strip()}(op={op_param})"
    return _QNN_TO_ONNX.get(k, qnn_type.strip())


def _parse_value(text: str) -> object:
    text = text.strip()
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        pass
    # "[2, 2]" variants like "2x2" or space separated numbers
    if re.fullmatch(r"\d+(x\d+)+", text):
        return [int(t) for t in text.split("x")]
    return text


def _flatten_ints(value: object) -> list[int] | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return [value]
    if isinstance(value, (list, tuple)):
        out: list[int] = []
        for v in value:
            sub = _flatten_ints(v)
            if sub is None:
                return None
            out.extend(sub)
        return out
    return None


def canonical_attrs(qnn_type: str, params: Mapping[str, str]) -> dict[str, object]:
    """ONNX-style attributes from QNN parameter strings (values as printed, e.g. ``"[2, 2]"``).

    Maps ``stride`` -> ``strides``, ``dilation`` -> ``dilations``, ``group`` -> ``group``, ``pad_amount``
    (``[[top, bottom], [left, right]]``) -> ``pads`` (``[top, left, bottom, right]``), ``axis`` -> ``axis``,
    ``perm`` -> ``perm``. Unknown parameters are kept under their own name with the parsed value.
    """
    out: dict[str, object] = {}
    for raw_key, raw_value in params.items():
        key = raw_key.strip()
        value = _parse_value(str(raw_value))
        k = _key(key)
        if k == "stride":
            ints = _flatten_ints(value)
            out["strides"] = ints if ints is not None else value
        elif k == "dilation":
            ints = _flatten_ints(value)
            out["dilations"] = ints if ints is not None else value
        elif k == "group":
            out["group"] = value
        elif k == "padamount":
            ints = _flatten_ints(value)
            if ints is not None and len(ints) % 2 == 0:
                out["pads"] = ints[0::2] + ints[1::2]
            else:
                out["pads"] = value
        elif k == "perm":
            out["perm"] = value
        else:
            out[key] = value
    _ = qnn_type
    return out
