"""Lint speed on a 1,000-node graph (budget: well under a second)."""

from __future__ import annotations

import time

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from qc.graph.lint import Finding, lint
from qc.graph.view import GraphView, view_from_onnx
from tests.unit.graph.models import big_model


@pytest.fixture(scope="module")
def big_view() -> GraphView:
    view = view_from_onnx(big_model(blocks=100))
    assert len(view.nodes) == 1000
    return view


def test_lint_1000_nodes(benchmark: BenchmarkFixture, big_view: GraphView) -> None:
    benchmark.group = "lint-1000-nodes"
    profile = {n.name: 0.001 for n in big_view.nodes}
    findings: list[Finding] = benchmark(lint, big_view, profile=profile)
    assert len(findings) > 400
    start = time.perf_counter()
    lint(big_view, profile=profile)
    assert time.perf_counter() - start < 0.5


def test_view_from_onnx_1000_nodes(benchmark: BenchmarkFixture) -> None:
    benchmark.group = "lint-1000-nodes"
    model = big_model(blocks=100)
    view: GraphView = benchmark(view_from_onnx, model)
    assert len(view.nodes) == 1000
