"""The interface every target implements (the reference is a runner too)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from qc.speed import LatencyStats, LayerProfile

TensorDict = dict[str, np.ndarray]


@dataclass(frozen=True)
class TensorInfo:
    """A tensor produced by a node, in topological order."""

    index: int
    name: str
    op_type: str
    node: str
    shape: tuple[int | str, ...] | None
    dtype: str | None


@dataclass(frozen=True)
class GraphTensors:
    """What a runner can expose: its inputs, outputs and every intermediate tensor."""

    inputs: dict[str, tuple[int | str, ...]]
    outputs: tuple[str, ...]
    tensors: tuple[TensorInfo, ...]
    dequantized: dict[str, str] = field(default_factory=dict)
    """float tensor -> the output of its QuantizeLinear/DequantizeLinear pair (what consumers read)."""

    def names(self) -> set[str]:
        return {t.name for t in self.tensors}


class Runner(Protocol):
    """prepare -> run (final outputs, or every intermediate tensor) -> speed."""

    name: str

    def prepare(self) -> None:
        """Build or load what the runner needs (quantize, upload); cached by the implementation."""

    def graph(self) -> GraphTensors:
        """Inputs, outputs and intermediate tensors in topological order."""

    def run(self, feeds: Mapping[str, np.ndarray]) -> TensorDict:
        """Final outputs only, on the runner's real execution path."""

    def run_all(self, feeds: Mapping[str, np.ndarray]) -> TensorDict:
        """Final outputs and every intermediate tensor the runner can expose."""

    def speed(self, feeds: Mapping[str, np.ndarray], *, rounds: int, warmup: int) -> LatencyStats:
        """Throughput and latency of :meth:`run` (no profiling during the timed runs)."""

    def layer_times(self, feeds: Mapping[str, np.ndarray], *, runs: int) -> LayerProfile:
        """Per-layer time from the runtime's profiler, in its own unit, with each layer's share."""

    def model_path(self) -> Path:
        """The model file the runner executes (for reports and cache keys)."""
