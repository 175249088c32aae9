"""The interface every target implements (the reference is a runner too)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

import numpy as np

from qc.errors import ModelError
from qc.speed import LatencyStats, LayerProfile

TensorDict = dict[str, np.ndarray]
T = TypeVar("T")


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


class BatchRunner(Runner, Protocol):
    """A runner that is cheaper per image when given several at once (a device tool call per batch).

    Callers process images in chunks of ``batch_size`` (:func:`chunks`), so memory is bounded by the batch.
    """

    batch_size: int

    def run_batch(self, feeds: Sequence[Mapping[str, np.ndarray]]) -> list[TensorDict]:
        """:meth:`Runner.run` for each feed, in order."""

    def run_all_batch(self, feeds: Sequence[Mapping[str, np.ndarray]]) -> list[TensorDict]:
        """:meth:`Runner.run_all` for each feed, in order."""


class PassRunner(Runner, Protocol):
    """A runner whose one ``run_all`` execution also yields the final outputs as deployed (a device debug run
    dumps them with every layer), so the comparison and the accuracy need one execution per image, not two."""

    def run_pass_batch(self, feeds: Sequence[Mapping[str, np.ndarray]]) -> list[tuple[TensorDict, TensorDict]]:
        """(every tensor as :meth:`Runner.run_all`, final outputs as :meth:`Runner.run`) for each feed, in order."""


def batch_size_of(runner: object) -> int:
    """The runner's ``batch_size`` (1 for runners without one)."""
    size = getattr(runner, "batch_size", 1)
    return size if isinstance(size, int) and size > 0 else 1


def run_batch(runner: Runner, feeds: Sequence[Mapping[str, np.ndarray]]) -> list[TensorDict]:
    """``runner.run_batch`` when it has one, else ``runner.run`` image by image."""
    method = getattr(runner, "run_batch", None)
    outs = list(method(feeds)) if callable(method) else [runner.run(f) for f in feeds]
    _check_count(runner, "run_batch", outs, feeds)
    return outs


def run_all_batch(runner: Runner, feeds: Sequence[Mapping[str, np.ndarray]]) -> list[TensorDict]:
    """``runner.run_all_batch`` when it has one, else ``runner.run_all`` image by image."""
    method = getattr(runner, "run_all_batch", None)
    outs = list(method(feeds)) if callable(method) else [runner.run_all(f) for f in feeds]
    _check_count(runner, "run_all_batch", outs, feeds)
    return outs


def run_pass_batch(runner: Runner, feeds: Sequence[Mapping[str, np.ndarray]]) -> list[tuple[TensorDict, TensorDict]]:
    """Every tensor and the final outputs as deployed, per feed: ``runner.run_pass_batch`` (one execution) when it
    has one, else :func:`run_all_batch` and :func:`run_batch` (two: exposing every tensor may change how a runtime
    executes the graph, so the deployed outputs come from its real execution path)."""
    method = getattr(runner, "run_pass_batch", None)
    if callable(method):
        pairs: list[tuple[TensorDict, TensorDict]] = list(method(feeds))
        _check_count(runner, "run_pass_batch", pairs, feeds)
        return pairs
    return list(zip(run_all_batch(runner, feeds), run_batch(runner, feeds), strict=True))


def _check_count(runner: Runner, what: str, outs: Sequence[object], feeds: Sequence[object]) -> None:
    if len(outs) != len(feeds):
        raise ModelError(f"{runner.name}: {what} returned {len(outs)} results for {len(feeds)} inputs.")


def chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of at most ``size`` items (lazily: only one chunk is held at a time)."""
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= max(1, size):
            yield chunk
            chunk = []
    if chunk:
        yield chunk
