"""Diagnosis: which layers cause the quantization loss, why, and what to keep in higher precision.

``local`` (each layer's own error, fed the reference's FP32 inputs), ``ranges`` (scale, zero point, observed
range, clipping and step-relative error per quantized tensor), ``sensitivity`` (re-quantize with one layer kept
float, or only one layer quantized), ``advice`` (fewest layers kept in higher precision until the gates pass,
verified by running it), ``report`` (JSON/CSV), ``stage`` (the cached entry point ``diagnose``).
"""
