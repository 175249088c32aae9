"""Graph checks for DSP deployment: a neutral graph view, slow-op lint rules and verified ONNX rewrites.

- :mod:`qc.graph.view`: :class:`GraphView` from ONNX (:func:`view_from_onnx`) or from a DLC layer table
  (:func:`canonical_op` / :func:`canonical_attrs` of :mod:`qc.graph.qnn_ops` map QNN names).
- :mod:`qc.graph.lint`: :func:`lint` with the rules in :data:`RULES`, :func:`max_severity`, :func:`filter_findings`.
- :mod:`qc.graph.rewrite`: :func:`fix_model` (each rewrite checked on onnxruntime) and :func:`save_fixed`.
"""

from qc.graph.lint import RULES, Finding, Severity, filter_findings, lint, max_severity
from qc.graph.rewrite import AppliedRewrite, InputPermutation, RewriteResult, fix_model, save_fixed
from qc.graph.view import GraphView, Node, canonical_attrs, canonical_op, graph_view, view_from_onnx

__all__ = [
    "RULES",
    "AppliedRewrite",
    "Finding",
    "GraphView",
    "InputPermutation",
    "Node",
    "RewriteResult",
    "Severity",
    "canonical_attrs",
    "canonical_op",
    "filter_findings",
    "fix_model",
    "graph_view",
    "lint",
    "max_severity",
    "save_fixed",
    "view_from_onnx",
]
