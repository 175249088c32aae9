"""Stream images through reference and target and accumulate per-tensor, per-output and per-slice metrics."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from qc.compare.matching import TensorMatch, _fmt
from qc.compare.metrics import MetricAccumulator, MetricSummary, PairStats, pair_stats
from qc.config import OutputSpec, Slice
from qc.errors import MetricError
from qc.runners.base import Runner, batch_size_of, chunks, run_all_batch, run_batch


@dataclass(frozen=True)
class LayerRow:
    index: int
    tensor: str
    op_type: str
    shape: str
    target_tensor: str
    metrics: MetricSummary


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


def compare_stream(
    model: str,
    reference: Runner,
    target: Runner,
    matches: list[TensorMatch],
    feeds: Iterable[tuple[int, Mapping[str, np.ndarray]]],
    outputs: Mapping[str, OutputSpec],
) -> Comparison:
    """One pass over the images; only running sums are kept, so memory does not grow with the image count.

    Intermediate tensors come from both runners' ``run_all``; final outputs and their slices compare the
    reference with the target's real execution path (``run``). A target with a ``batch_size`` above 1 runs the
    images in chunks of that size (``run_all_batch``/``run_batch``), so memory grows with the batch only.
    """
    matched = [m for m in matches if m.target is not None]
    layer_acc = {m.reference.name: MetricAccumulator() for m in matched}
    out_acc = OutputAccumulator(model, list(reference.graph().outputs), outputs)
    shapes: dict[str, str] = {}
    images = 0
    # A batching target (a device tool call per batch) gets images in chunks of its batch size: memory is bounded
    # by the batch. The reference runs image by image.
    for chunk in chunks(feeds, batch_size_of(target)):
        chunk_feeds = [feed for _, feed in chunk]
        tgt_alls = run_all_batch(target, chunk_feeds)
        tgt_outs = run_batch(target, chunk_feeds)
        for k, (image_id, feed) in enumerate(chunk):
            images += 1
            ref_all = reference.run_all(feed)
            tgt_all, tgt_alls[k] = tgt_alls[k], {}
            for m in matched:
                a, b = ref_all.get(m.reference.name), tgt_all.get(m.target or "")
                if a is None or b is None:
                    side = "reference" if a is None else "target"
                    stats = PairStats(math.nan, math.nan, math.nan, math.nan, f"the {side} run did not produce it")
                else:
                    stats = _stats(a, b)
                    shapes.setdefault(m.reference.name, _fmt(a.shape))
                layer_acc[m.reference.name].add(stats, image_id)
            del tgt_all
            tgt_out, tgt_outs[k] = tgt_outs[k], {}
            out_acc.add(image_id, ref_all, tgt_out)
            del ref_all, tgt_out
        del tgt_alls, tgt_outs
    result = Comparison(model=model, images=images)
    for m in matched:
        result.layers.append(
            LayerRow(
                index=m.reference.index,
                tensor=m.reference.name,
                op_type=m.reference.op_type,
                shape=shapes.get(m.reference.name, _fmt(m.reference.shape)),
                target_tensor=m.target or "",
                metrics=layer_acc[m.reference.name].summary(),
            )
        )
    result.outputs = out_acc.rows()
    result.unmatched = [
        Unmatched(m.reference.name, m.reference.op_type, m.reason or "") for m in matches if m.target is None
    ]
    return result
