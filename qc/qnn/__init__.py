"""Qualcomm's HTP backend on the host: onnxruntime's QNN execution provider (``onnxruntime-qnn``, x86_64 Linux).

- :mod:`qc.qnn.session`: HTP sessions (plugin EP API, CPU fallback always disabled, RVC4 defaults), refused nodes
  as errors and as ``htp-unsupported`` lint findings.
- :mod:`qc.qnn.quantize`: QDQ models in the form HTP accepts, from qc's SNPE-named quantization settings.
- :mod:`qc.qnn.expose`: dequantized activations as extra graph outputs (per-layer comparison on HTP).
- :mod:`qc.qnn.profile`: the QNN detailed profile CSV as per-node cycles.
- :mod:`qc.qnn.context`: HTP context binaries (export, run back).
- :mod:`qc.qnn.settings`: the ``qnn-htp`` target's settings (pydantic).
"""
