"""qc: a quantization checker for edge neural-network accelerators.

The library knows nothing of pytest; :mod:`qc.pytest_plugin` is the only glue module.
"""

__version__ = "0.1.0"
