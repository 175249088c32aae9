"""The types every rewrite rule shares: what a rule applied (:class:`AppliedRewrite`), what the caller gets
(:class:`RewriteResult`), and the one signature of a rule (:data:`Rewriter`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import onnx

from qc.graph.match import Refusal
from qc.graph.view import assign_node_names

REWRITABLE_RULES: tuple[str, ...] = ("div", "foldable-eltwise", "input-channel-swap", "conv-stride")
ChannelSwapMode = Literal["weights", "input"]


@dataclass(frozen=True)
class InputPermutation:
    """The rewritten model wants ``new[..., j, ...] = old[..., perm[j], ...]`` along ``axis`` of ``input``."""

    input: str
    axis: int
    perm: tuple[int, ...]

    def apply(self, array: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.take(array, list(self.perm), axis=self.axis))


@dataclass(frozen=True)
class AppliedRewrite:
    """One applied rewrite: ``node`` is the main node it is keyed by, ``nodes`` every node removed or changed."""

    rule: str
    node: str
    nodes: tuple[str, ...]
    description: str
    note: str = ""
    input_permutation: InputPermutation | None = None


@dataclass
class RewriteResult:
    """The fixed model, what was applied, what was refused or rolled back, and the measured output differences.

    ``max_abs_diff[rule]`` is the largest absolute difference between the original model's outputs and the model
    after that rule's accepted rewrites (cumulative), over all check inputs and outputs.
    """

    model: onnx.ModelProto
    applied: list[AppliedRewrite] = field(default_factory=list)
    unsafe: list[tuple[str, str]] = field(default_factory=list)
    max_abs_diff: dict[str, float] = field(default_factory=dict)

    @property
    def input_permutations(self) -> list[InputPermutation]:
        return [a.input_permutation for a in self.applied if a.input_permutation is not None]

    def feed(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Inputs for the fixed model from inputs meant for the original (applies any input permutation)."""
        out = dict(inputs)
        for p in self.input_permutations:
            if p.input in out:
                out[p.input] = p.apply(out[p.input])
        return out


def named_copy(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` whose nodes all have unique names (see :func:`qc.graph.view.assign_node_names`)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for n, name in zip(out.graph.node, assign_node_names(out.graph.node), strict=True):
        n.name = name
    return out


def copy_model(model: onnx.ModelProto) -> onnx.ModelProto:
    """A deep copy of ``model``."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


@dataclass
class Outcome:
    """What one rule did to a model: the rewritten model, the rewrites applied, the instances refused."""

    model: onnx.ModelProto
    applied: list[AppliedRewrite] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)


@dataclass(frozen=True)
class Options:
    """Options every rule receives (only ``input-channel-swap`` reads ``channel_swap``)."""

    channel_swap: ChannelSwapMode


Rewriter = Callable[[onnx.ModelProto, set[str] | None, Options], Outcome]


def std_domain(node: onnx.NodeProto) -> bool:
    """Whether ``node`` is in the default ONNX domain (the only one the rules rewrite)."""
    return node.domain in ("", "ai.onnx")
