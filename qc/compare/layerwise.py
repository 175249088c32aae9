"""Stream images through reference and target and accumulate per-tensor, per-output and per-slice metrics."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qc import progress
from qc.compare.matching import TensorMatch, _fmt
from qc.compare.metrics import MetricAccumulator, MetricSummary, PairStats, pair_stats
from qc.config import OutputSpec, Slice
from qc.errors import MetricError
from qc.runners.base import Runner, batch_size_of, chunks, run_pass_batch

log = logging.getLogger(__name__)

OutputsSink = Callable[[int, Mapping[str, np.ndarray], Mapping[str, np.ndarray]], None]
"""Receives ``(image_id, reference outputs, target outputs)`` per image from :func:`compare_stream`."""

# Ops whose output depends on their input's shape only, never on its values.
SHAPE_ONLY_OPS = frozenset({"Shape", "Size"})


@dataclass(frozen=True)
class LayerRow:
    index: int
    tensor: str
    op_type: str
    shape: str
    target_tensor: str
    metrics: MetricSummary
    input_independent: bool = False
    """No path from a graph input's values reaches it and its reference value was bit-identical on every image
    (a constant, folded or not): listed with the layers but not gated."""


@dataclass(frozen=True)
class OutputRow:
    output: str  # "tensor" or "tensor[slice]"
    tensor: str
    slice: str | None
    shape: str
    metrics: MetricSummary


@dataclass(frozen=True)
class Unmatched:
    tensor: str
    op_type: str
    reason: str


@dataclass
class Comparison:
    model: str
    images: int
    layers: list[LayerRow] = field(default_factory=list)
    outputs: list[OutputRow] = field(default_factory=list)
    unmatched: list[Unmatched] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def gated_layers(self) -> list[LayerRow]:
        """The layers the per-layer gate judges: every compared layer except the input-independent ones."""
        return [row for row in self.layers if not row.input_independent]

    def input_independent_layers(self) -> list[LayerRow]:
        """Layers whose value does not depend on the input (listed apart, never gated)."""
        return [row for row in self.layers if row.input_independent]

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Comparison:
        return cls(
            model=data["model"],
            images=data["images"],
            layers=[LayerRow(**{**r, "metrics": MetricSummary(**r["metrics"])}) for r in data["layers"]],
            outputs=[OutputRow(**{**r, "metrics": MetricSummary(**r["metrics"])}) for r in data["outputs"]],
            unmatched=[Unmatched(**r) for r in data["unmatched"]],
            notes=list(data.get("notes", [])),
        )


def slice_array(x: np.ndarray, spec: Slice, tensor: str) -> np.ndarray:
    axis = spec.axis if spec.axis >= 0 else x.ndim + spec.axis
    if not 0 <= axis < x.ndim:
        raise MetricError(f"output {tensor!r}: slice axis {spec.axis} is out of range for shape {x.shape}.")
    stop = spec.stop if spec.stop is not None else x.shape[axis]
    if stop > x.shape[axis]:
        raise MetricError(
            f"output {tensor!r}: slice [{spec.start}:{stop}] on axis {spec.axis} exceeds its size {x.shape[axis]}."
        )
    index: list[slice] = [slice(None)] * x.ndim
    index[axis] = slice(spec.start, stop)
    return x[tuple(index)]


def _stats(a: np.ndarray, b: np.ndarray) -> PairStats:
    if a.shape != b.shape:
        return PairStats(math.nan, math.nan, math.nan, math.nan, f"shape {a.shape} vs target {b.shape}")
    return pair_stats(a, b)


class OutputAccumulator:
    """Running metrics of the final outputs and of their declared slices (``tensor[slice]``), image by image."""

    def __init__(self, model: str, output_names: list[str], outputs: Mapping[str, OutputSpec]) -> None:
        missing = [o for o in outputs if o not in output_names]
        if missing:
            raise MetricError(
                f"{model}: outputs {missing} declared in models.yaml are not outputs of the reference model "
                f"(it has {output_names})."
            )
        self.model = model
        self.names = output_names
        self.outputs = outputs
        self.acc: dict[str, MetricAccumulator] = {}
        for name in output_names:
            self.acc[name] = MetricAccumulator()
            for sname in outputs.get(name, OutputSpec()).slices:
                self.acc[f"{name}[{sname}]"] = MetricAccumulator()
        self.shapes: dict[str, str] = {}

    def add(self, image_id: int, reference: Mapping[str, np.ndarray], target: Mapping[str, np.ndarray]) -> None:
        for name in self.names:
            a, b = reference[name], target.get(name)
            if b is None:
                raise MetricError(f"{self.model}: the target produced no output {name!r} (it has {sorted(target)}).")
            self.shapes.setdefault(name, _fmt(a.shape))
            self.acc[name].add(_stats(a, b), image_id)
            for sname, sspec in self.outputs.get(name, OutputSpec()).slices.items():
                sa, sb = slice_array(a, sspec, name), slice_array(b, sspec, name)
                self.shapes.setdefault(f"{name}[{sname}]", _fmt(sa.shape))
                self.acc[f"{name}[{sname}]"].add(_stats(sa, sb), image_id)

    def rows(self) -> list[OutputRow]:
        out = []
        for key, acc in self.acc.items():
            tensor, _, rest = key.partition("[")
            out.append(OutputRow(key, tensor, rest[:-1] or None, self.shapes.get(key, "?"), acc.summary()))
        return out


def input_independent_tensors(model: Any) -> set[str]:
    """Tensors of an ONNX model that no graph input's *values* reach: graph reachability from the inputs.

    Initializers and ``Constant`` outputs start independent; a node's outputs depend on the input when one of its
    inputs (or, for ``If``/``Loop``/``Scan``, a name its subgraphs read from the outer scope) does, except for
    ``Shape`` and ``Size``, whose outputs carry the input's shape only. A graph input that has an initializer of the
    same name (old exporters list weights as inputs) counts as a constant.
    """
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    dependent = {i.name for i in graph.input if i.name not in initializers}
    produced: set[str] = set()
    for node in graph.node:  # ONNX requires topological order
        reads = [n for n in node.input if n] + sorted(_outer_names(node))
        varies = node.op_type not in SHAPE_ONLY_OPS and any(n in dependent for n in reads)
        for out in node.output:
            if out:
                produced.add(out)
                if varies:
                    dependent.add(out)
    return (produced | initializers) - dependent


def _outer_names(node: Any) -> set[str]:
    """Names a node's subgraphs read (their own outputs and initializers excluded: an over-approximation is safe)."""
    names: set[str] = set()
    for attr in node.attribute:
        graphs = ([attr.g] if attr.HasField("g") else []) + list(attr.graphs)
        for g in graphs:
            local = {t.name for t in g.initializer} | {i.name for i in g.input}
            for sub in g.node:
                names.update(n for n in sub.input if n and n not in local)
                names.update(_outer_names(sub))
                local.update(sub.output)
    return names


def _graph_independent(reference: Runner) -> set[str] | None:
    """:func:`input_independent_tensors` of the reference's ONNX file; None when it cannot be read as ONNX."""
    try:
        path = Path(reference.model_path())
    except (AttributeError, NotImplementedError):
        return None
    if path.suffix.lower() != ".onnx" or not path.is_file():
        return None
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # a reference that cannot be parsed fails elsewhere with its own message
        log.warning("%s: cannot read the graph to find input-independent tensors: %s", path, exc)
        return None
    return input_independent_tensors(model)


def _digest(a: np.ndarray) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{a.dtype.str}{a.shape}".encode())
    h.update(np.ascontiguousarray(a).view(np.uint8).reshape(-1).data)
    return h.digest()


def compare_stream(
    model: str,
    reference: Runner,
    target: Runner,
    matches: list[TensorMatch],
    feeds: Iterable[tuple[int, Mapping[str, np.ndarray]]],
    outputs: Mapping[str, OutputSpec],
    on_outputs: OutputsSink | None = None,
    bar: progress.Task | None = None,
) -> Comparison:
    """One pass over the images; only running sums are kept, so memory does not grow with the image count.

    ``bar`` (the caller's ``compare`` progress stage) advances once per image compared; it changes no result.

    Intermediate tensors come from both runners' ``run_all``; final outputs and their slices compare the
    reference with the target's outputs as deployed (:func:`qc.runners.base.run_pass_batch`: the same execution
    when the runner's ``run_all`` yields them, e.g. a device debug run, else its ``run``). A target with a
    ``batch_size`` above 1 runs the images in chunks of that size, so memory grows with the batch only.

    ``on_outputs(image_id, reference outputs, target outputs)`` receives each image's final outputs (graph outputs
    only) as they are compared: the accuracy stage scores them in the same pass, without running the target again.
    """
    matched = [m for m in matches if m.target is not None]
    layer_acc = {m.reference.name: MetricAccumulator() for m in matched}
    # Input-independent candidates by graph reachability; confirmed when their value is the same on every image.
    graph_independent = _graph_independent(reference)
    candidates = {m.reference.name for m in matched} & (graph_independent or set())
    digests: dict[str, bytes | None] = {}  # None once the value changed between images
    out_acc = OutputAccumulator(model, list(reference.graph().outputs), outputs)
    shapes: dict[str, str] = {}
    images = 0
    # A batching target (a device tool call per batch) gets images in chunks of its batch size: memory is bounded
    # by the batch. The reference runs image by image.
    for chunk in chunks(feeds, batch_size_of(target)):
        passes = run_pass_batch(target, [feed for _, feed in chunk])  # one target pass per image
        for k, (image_id, feed) in enumerate(chunk):
            images += 1
            ref_all = reference.run_all(feed)
            (tgt_all, tgt_out), passes[k] = passes[k], ({}, {})
            for m in matched:
                a, b = ref_all.get(m.reference.name), tgt_all.get(m.target or "")
                if a is None or b is None:
                    side = "reference" if a is None else "target"
                    stats = PairStats(math.nan, math.nan, math.nan, math.nan, f"the {side} run did not produce it")
                else:
                    stats = _stats(a, b)
                    shapes.setdefault(m.reference.name, _fmt(a.shape))
                    if m.reference.name in candidates:
                        digest = _digest(a)
                        if digests.setdefault(m.reference.name, digest) != digest:
                            digests[m.reference.name] = None
                layer_acc[m.reference.name].add(stats, image_id)
            del tgt_all
            out_acc.add(image_id, ref_all, tgt_out)
            if on_outputs is not None:
                on_outputs(image_id, {name: ref_all[name] for name in out_acc.names}, tgt_out)
            del ref_all, tgt_out
            if bar is not None:
                bar.advance()
        del passes
    result = Comparison(model=model, images=images)
    independent = {name for name, digest in digests.items() if digest is not None}
    for m in matched:
        result.layers.append(
            LayerRow(
                index=m.reference.index,
                tensor=m.reference.name,
                op_type=m.reference.op_type,
                shape=shapes.get(m.reference.name, _fmt(m.reference.shape)),
                target_tensor=m.target or "",
                metrics=layer_acc[m.reference.name].summary(),
                input_independent=m.reference.name in independent,
            )
        )
    if graph_independent is None:
        result.notes.append(
            "input-independent tensors not determined (the reference is not a readable ONNX file): "
            "every layer is gated."
        )
    elif independent:
        names = [m.reference.name for m in matched if m.reference.name in independent]
        shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
        result.notes.append(
            f"{len(names)} input-independent layer(s) (no path from a graph input, the same value on all {images} "
            f"image(s)) are listed with input_independent=true and not gated: {shown}."
        )
    result.outputs = out_acc.rows()
    result.unmatched = [
        Unmatched(m.reference.name, m.reference.op_type, m.reason or "") for m in matches if m.target is None
    ]
    return result
