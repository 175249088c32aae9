"""Lint speed on a 1,000-node graph (README: 10 ms), and its scaling: linting a 10,000-node graph must cost about
what ten 1,000-node graphs cost (a rule that turned quadratic costs ten times more) — a ratio, never an absolute
time."""

from __future__ import annotations

import onnx
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from qc.graph.lint import Finding, lint
from qc.graph.view import GraphView, view_from_onnx
from tests.perf.pairs import check_speedup, time_pair
from tests.unit.graph.models import big_model

# time(10 graphs of 1,000 nodes) / time(1 graph of 10,000 nodes): about 1 when linear, about 0.1 when quadratic.
SCALING_FLOOR = 0.4  # measured 0.8 (lint) and 1.1 (view_from_onnx)


@pytest.fixture(scope="module")
def model() -> onnx.ModelProto:
    return big_model(blocks=100)


@pytest.fixture(scope="module")
def huge_model() -> onnx.ModelProto:
    return big_model(blocks=1000)


@pytest.fixture(scope="module")
def big_view(model: onnx.ModelProto) -> GraphView:
    view = view_from_onnx(model)
    assert len(view.nodes) == 1000
    return view


def test_lint_1000_nodes(benchmark: BenchmarkFixture, big_view: GraphView, huge_model: onnx.ModelProto) -> None:
    benchmark.group = "lint-1000-nodes"
    profile = {n.name: 0.001 for n in big_view.nodes}
    findings: list[Finding] = benchmark(lint, big_view, profile=profile)
    assert len(findings) > 400
    huge = view_from_onnx(huge_model)
    assert len(huge.nodes) == 10_000
    huge_profile = {n.name: 0.001 for n in huge.nodes}
    assert len(lint(huge, profile=huge_profile)) > 4000  # the same blocks: the big graph is linted as fully
    pair = time_pair(
        lambda: [lint(big_view, profile=profile) for _ in range(10)],
        lambda: lint(huge, profile=huge_profile),
        rounds=5,
    )
    check_speedup(benchmark, pair, SCALING_FLOOR, "lint: 1 graph of 10,000 nodes vs 10 of 1,000 (linear scaling)")


def test_view_from_onnx_1000_nodes(
    benchmark: BenchmarkFixture, model: onnx.ModelProto, huge_model: onnx.ModelProto
) -> None:
    benchmark.group = "lint-1000-nodes"
    view: GraphView = benchmark(view_from_onnx, model)
    assert len(view.nodes) == 1000
    pair = time_pair(lambda: [view_from_onnx(model) for _ in range(10)], lambda: view_from_onnx(huge_model), rounds=5)
    check_speedup(benchmark, pair, SCALING_FLOOR, "view_from_onnx: 10,000 nodes vs 10 x 1,000 (linear scaling)")
