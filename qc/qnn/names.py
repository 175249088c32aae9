"""Tensor names as the QNN tools write them: C identifiers.

``qnn-net-run`` names its output files after the graph's tensor names, and QNN's converters make those names C
identifiers. The rule, from public captures of the tools:

* every character that is not an ASCII letter, digit or ``_`` becomes ``_`` (one for one, runs are not collapsed):
  ``/model/basenet/slice1/0/Conv_output_0`` -> ``_model_basenet_slice1_0_Conv_output_0`` (a ``--debug`` dump);
* a name that then starts with a digit gets a leading ``_``: the ONNX output ``7`` -> ``_7``
  (``Result_0/_7_native.raw`` in a QAIRT run on a QRB5165).

Non-ASCII letters are replaced too (C identifiers are ASCII); that case is not seen in a capture. A context binary
exported by onnxruntime's QNN EP may keep ONNX names verbatim in its tensor table, so readers try the name as the
context lists it before its identifier form (:func:`output_file_candidates`).
"""

from __future__ import annotations

import re

__all__ = ["output_file_candidates", "qnn_identifier", "same_tensor"]

_NOT_IDENT = re.compile(r"[^A-Za-z0-9_]")


def qnn_identifier(name: str) -> str:
    """``name`` as a C identifier, the way QNN writes tensor names (see the module docstring)."""
    ident = _NOT_IDENT.sub("_", name)
    if not ident or ident[0].isdigit():
        ident = "_" + ident
    return ident


def same_tensor(onnx_name: str, qnn_name: str) -> bool:
    """Whether a context tensor name is the ONNX name, verbatim or in identifier form."""
    return qnn_name == onnx_name or qnn_name == qnn_identifier(onnx_name)


def output_file_candidates(tensor: str, *, native: bool) -> list[str]:
    """File names ``qnn-net-run`` may have written for an output, most likely first: the identifier form, then the
    name verbatim when it is a plain file name (no ``/``, not ``.``/``..``)."""
    suffix = "_native.raw" if native else ".raw"
    names = [qnn_identifier(tensor) + suffix]
    if "/" not in tensor and tensor not in (".", "..") and "\x00" not in tensor and tensor + suffix not in names:
        names.append(tensor + suffix)
    return names
