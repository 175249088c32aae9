"""qc subpackage."""
