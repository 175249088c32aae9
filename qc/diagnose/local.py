"""Local error next to accumulated error: each quantized layer fed the reference's FP32 inputs.

A per-layer cosine of the target against the reference shows where error has piled up, not where it starts. The
*local* model built here from the target QDQ model replaces every activation tensor a layer reads by a new graph
input fed with the reference's FP32 value of that tensor: each QuantizeLinear of an activation ``t`` reads
``t__qc_ref`` (so the layer sees the reference input quantized at its own input quantizer), and each float layer
reads the reference values directly. Weights keep their QuantizeLinear/DequantizeLinear. A clone of the output
quantizer of ``t`` then gives ``DequantizeLinear(QuantizeLinear(t))`` computed from reference inputs: compared
with the reference ``t`` it is the error the layer adds by itself.

One run of the local model per image, next to one reference ``run_all``; only running sums are kept.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from qc.compare.layerwise import slice_array
from qc.compare.metrics import MetricAccumulator, MetricSummary, PairStats, pair_stats
from qc.config import Slice
from qc.diagnose.qdq import activation_quantizers, reference_name
from qc.errors import MetricError, ModelError
from qc.runners.base import Runner, TensorDict

REF_SUFFIX = "__qc_ref"
LOCAL_SUFFIX = "__qc_local"
FLOAT_ELEM_TYPES = {1, 10, 11, 16}
COLLAPSED_DB = 3.0
"""A channel whose local SQNR is below this lost at least half of its signal energy to quantization."""


@dataclass(frozen=True)
class LocalModel:
    """The rewired model and how to feed it and read it."""

    model: Any
    feeds: dict[str, str]
    """Local model input -> the target tensor whose reference value feeds it."""
    outputs: dict[str, str]
    """Target tensor -> local model output holding the layer's local value."""
    quantized: frozenset[str]
    """Target tensors whose local value passes through their own output quantizer (the rest are float)."""
    reference_of: dict[str, str]
    """Target tensor -> reference tensor."""
    kept: tuple[str, ...] = ()
    """Float activations computed locally because the reference has no tensor of that name."""


def _elem_types(model: Any) -> dict[str, int]:
    from qc.runners.ort import describe

    _, infos = describe(model)
    return {name: int(vi.type.tensor_type.elem_type) for name, vi in infos.items()}


def build_local_model(target: Any, reference_infos: Mapping[str, Any], entry: str) -> LocalModel:
    """The local model of a QDQ ``target`` (an onnx ModelProto, left untouched); see the module docstring.

    ``reference_infos`` maps each reference tensor to its ValueInfoProto (from :func:`qc.runners.ort.describe` of
    the reference): new inputs and outputs take their type and shape from there.
    """
    import onnx
    from onnx import helper

    names = set(reference_infos)

    def value_info(name: str, tensor: str) -> Any:
        ref = reference_infos[reference_of[tensor]]
        vi = onnx.ValueInfoProto()
        vi.CopyFrom(ref)
        vi.name = name
        if not vi.type.tensor_type.HasField("shape"):
            vi.type.tensor_type.elem_type = elem.get(tensor, onnx.TensorProto.FLOAT)
        return vi

    model = onnx.ModelProto()
    model.CopyFrom(target)
    graph = model.graph
    elem = _elem_types(model)
    initializers = {i.name for i in graph.initializer}
    graph_inputs = [i.name for i in graph.input if i.name not in initializers]
    producer: dict[str, Any] = {o: n for n in graph.node for o in n.output if o}
    quantizers = activation_quantizers(model, names, entry)

    def is_activation(name: str) -> bool:
        if elem.get(name) not in FLOAT_ELEM_TYPES:
            return False
        if name in graph_inputs:
            return True
        node = producer.get(name)
        return node is not None and node.op_type not in ("QuantizeLinear", "DequantizeLinear", "Constant")

    activations = [o for n in graph.node for o in n.output if o and is_activation(o)]
    reference_of = {t: r for t in [*graph_inputs, *activations] if (r := reference_name(t, names)) is not None}
    kept = tuple(t for t in activations if t not in reference_of)
    rewired: dict[str, str] = {}
    for node in graph.node:
        if node.op_type == "DequantizeLinear":
            continue
        for i, name in enumerate(node.input):
            if name and name in reference_of and name not in graph_inputs and is_activation(name):
                node.input[i] = rewired.setdefault(name, name + REF_SUFFIX)
    for name, new in rewired.items():
        graph.input.append(value_info(new, name))

    nodes = {n.name: n for n in graph.node}
    outputs: dict[str, str] = {}
    quantized: set[str] = set()
    clones: list[Any] = []
    for q in quantizers:
        if q.tensor not in reference_of or q.dequantize_node is None:
            continue
        qnode, dqnode = nodes[q.node], nodes[q.dequantize_node]
        q_out, dq_out = q.tensor + LOCAL_SUFFIX + "_q", q.tensor + LOCAL_SUFFIX
        q_clone = helper.make_node(
            "QuantizeLinear", [q.tensor, *qnode.input[1:]], [q_out], name=qnode.name + LOCAL_SUFFIX, domain=qnode.domain
        )
        q_clone.attribute.extend(qnode.attribute)
        dq_clone = helper.make_node(
            "DequantizeLinear",
            [q_out, *dqnode.input[1:]],
            [dq_out],
            name=dqnode.name + LOCAL_SUFFIX,
            domain=dqnode.domain,
        )
        dq_clone.attribute.extend(dqnode.attribute)
        clones += [q_clone, dq_clone]
        outputs[q.tensor] = dq_out
        quantized.add(q.tensor)
    graph.node.extend(clones)
    for t in activations:
        if t in reference_of and t not in outputs:
            outputs[t] = t
    del graph.output[:]
    for t, out in outputs.items():
        graph.output.append(value_info(out, t))
    feeds = {i: i for i in graph_inputs}
    feeds.update({new: name for name, new in rewired.items()})
    missing = [t for t in feeds.values() if t not in reference_of]
    if missing:
        raise ModelError(f"{entry}: the reference has no tensor for target input(s) {missing}; cannot feed them.")
    return LocalModel(model, feeds, outputs, frozenset(quantized), reference_of, kept)


def local_feeds(local: LocalModel, reference_values: Mapping[str, np.ndarray], entry: str) -> dict[str, np.ndarray]:
    """The local model's inputs, taken from one reference ``run_all``."""
    feeds: dict[str, np.ndarray] = {}
    for name, tensor in local.feeds.items():
        ref = local.reference_of[tensor]
        value = reference_values.get(ref)
        if value is None:
            raise ModelError(f"{entry}: the reference run did not produce tensor {ref!r}, needed to feed {name!r}.")
        feeds[name] = value
    return feeds


# -- accumulation ---------------------------------------------------------------------------------------------


def channel_axes(ndim: int) -> tuple[int, ...]:
    """Axes along which per-channel statistics are kept: 1 (NCHW channels, rows) and the last (attributes)."""
    if ndim < 2:
        return ()
    return tuple(sorted({1, ndim - 1}))


def _per_channel_sq(x: np.ndarray, axis: int) -> np.ndarray:
    moved = np.moveaxis(x, axis, 0).reshape(x.shape[axis], -1).astype(np.float64, copy=False)
    return np.asarray(np.einsum("ij,ij->i", moved, moved), dtype=np.float64)


@dataclass
class ChannelSums:
    """Per-channel signal and error energy along one axis, summed over images."""

    axis: int
    xx: np.ndarray
    dd: np.ndarray

    def sqnr_db(self) -> np.ndarray:
        live = self.xx > 0
        exact = self.dd == 0
        ratio = np.where(live & ~exact, self.xx, 1.0) / np.where(exact, 1.0, self.dd)
        return np.where(live, np.where(exact, np.inf, 10.0 * np.log10(ratio)), np.nan)


@dataclass(frozen=True)
class ChannelSummary:
    axis: int
    channels: int
    live: int
    sqnr_db_median: float
    sqnr_db_p10: float
    """The channel SQNR that 90% of the live channels exceed: low when a tenth or more of them collapse."""
    sqnr_db_min: float
    collapsed: int
    collapsed_first: tuple[int, ...]


@dataclass(frozen=True)
class LocalRow:
    index: int
    tensor: str
    op_type: str
    target_tensor: str
    quantized: bool
    metrics: MetricSummary
    slices: dict[str, MetricSummary] = field(default_factory=dict)
    channels: ChannelSummary | None = None

    def worst_sqnr_db(self) -> float:
        """The lowest of the tensor's, its slices' and its channels' (10th percentile) local SQNR.

        An undefined metric (a side all zeros, NaN, Inf) counts as 0 dB: no signal survives.
        """
        values = [self.metrics.sqnr_db_mean if self.metrics.undefined is None else 0.0]
        values += [m.sqnr_db_mean if m.undefined is None else 0.0 for m in self.slices.values()]
        if self.channels is not None and not math.isnan(self.channels.sqnr_db_p10):
            values.append(self.channels.sqnr_db_p10)
        return min(0.0 if math.isnan(v) else v for v in values)


@dataclass
class LocalResult:
    model: str
    images: int
    reference_runs: int
    local_runs: int
    rows: list[LocalRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def by_tensor(self) -> dict[str, LocalRow]:
        return {r.tensor: r for r in self.rows}

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LocalResult:
        rows = []
        for r in data["rows"]:
            ch = r.get("channels")
            rows.append(
                LocalRow(
                    index=r["index"],
                    tensor=r["tensor"],
                    op_type=r["op_type"],
                    target_tensor=r["target_tensor"],
                    quantized=r["quantized"],
                    metrics=MetricSummary(**r["metrics"]),
                    slices={k: MetricSummary(**v) for k, v in r["slices"].items()},
                    channels=None
                    if ch is None
                    else ChannelSummary(**{**ch, "collapsed_first": tuple(ch["collapsed_first"])}),
                )
            )
        return cls(data["model"], data["images"], data["reference_runs"], data["local_runs"], rows, list(data["notes"]))


def _stats(a: np.ndarray, b: np.ndarray) -> PairStats:
    if a.shape != b.shape:
        return PairStats(math.nan, math.nan, math.nan, math.nan, f"shape {a.shape} vs local {b.shape}")
    return pair_stats(a, b)


class LocalAccumulator:
    """Running local metrics per tensor: whole tensor, declared slices, and per channel (two axes)."""

    def __init__(self, pairs: Mapping[str, str], slices: Mapping[str, Mapping[str, Slice]]) -> None:
        self.pairs = dict(pairs)  # reference tensor -> local output
        self.slices = {k: dict(v) for k, v in slices.items()}
        self.whole = {r: MetricAccumulator() for r in self.pairs}
        self.parts = {r: {s: MetricAccumulator() for s in self.slices.get(r, {})} for r in self.pairs}
        self.channels: dict[str, list[ChannelSums]] = {}

    def add(self, reference: Mapping[str, np.ndarray], local: Mapping[str, np.ndarray], image_id: int) -> None:
        for ref_name, out in self.pairs.items():
            a, b = reference.get(ref_name), local.get(out)
            if a is None or b is None:
                side = "reference" if a is None else "local"
                self.whole[ref_name].add(
                    PairStats(math.nan, math.nan, math.nan, math.nan, f"no {side} value"), image_id
                )
                continue
            self.whole[ref_name].add(_stats(a, b), image_id)
            for sname, sspec in self.slices.get(ref_name, {}).items():
                self.parts[ref_name][sname].add(
                    _stats(slice_array(a, sspec, ref_name), slice_array(b, sspec, ref_name)), image_id
                )
            if a.shape != b.shape or not np.isfinite(b).all():
                continue
            self._channels(ref_name, a, b)

    def _channels(self, name: str, a: np.ndarray, b: np.ndarray) -> None:
        axes = channel_axes(a.ndim)
        if not axes:
            return
        d = a.astype(np.float32, copy=False) - b.astype(np.float32, copy=False)
        sums = self.channels.get(name)
        if sums is None:
            sums = [ChannelSums(ax, np.zeros(a.shape[ax]), np.zeros(a.shape[ax])) for ax in axes]
            self.channels[name] = sums
        for s in sums:
            if s.xx.size != a.shape[s.axis]:
                continue
            s.xx += _per_channel_sq(a, s.axis)
            s.dd += _per_channel_sq(d, s.axis)

    def channel_summary(self, name: str) -> ChannelSummary | None:
        best: ChannelSummary | None = None
        for s in self.channels.get(name, []):
            db = s.sqnr_db()
            live = db[~np.isnan(db)]
            if live.size == 0:
                continue
            collapsed = np.flatnonzero(~np.isnan(db) & (db < COLLAPSED_DB))
            summary = ChannelSummary(
                axis=s.axis,
                channels=int(db.size),
                live=int(live.size),
                sqnr_db_median=float(np.median(live)),
                sqnr_db_p10=float(np.percentile(live, 10, method="lower")),
                sqnr_db_min=float(live.min()),
                collapsed=int(collapsed.size),
                collapsed_first=tuple(int(i) for i in collapsed[:8]),
            )
            if best is None or summary.sqnr_db_p10 < best.sqnr_db_p10:
                best = summary
        return best


def stream_local(
    model: str,
    reference: Runner,
    local_runner: Runner,
    local: LocalModel,
    rows: Sequence[tuple[int, str, str]],
    feeds: Iterable[tuple[int, Mapping[str, np.ndarray]]],
    slices: Mapping[str, Mapping[str, Slice]],
    observers: Sequence[Callable[[Mapping[str, np.ndarray]], None]] = (),
) -> LocalResult:
    """One reference ``run_all`` and one local run per image; ``observers`` see every reference run too.

    ``rows`` lists (index, reference tensor, op type) in reference topological order.
    """
    target_of = {r: t for t, r in local.reference_of.items() if t in local.outputs}
    pairs = {name: local.outputs[target_of[name]] for _, name, _ in rows if name in target_of}
    acc = LocalAccumulator(pairs, {k: v for k, v in slices.items() if k in pairs})
    images = ref_runs = local_runs = 0
    for image_id, feed in feeds:
        images += 1
        ref_all: TensorDict = reference.run_all(feed)
        ref_runs += 1
        out = local_runner.run(local_feeds(local, ref_all, model))
        local_runs += 1
        acc.add(ref_all, out, image_id)
        del out
        for observe in observers:
            observe(ref_all)
        del ref_all
    if images == 0:
        raise MetricError(f"{model}: no evaluation image to compute local errors with.")
    result = LocalResult(model, images, ref_runs, local_runs)
    for index, name, op_type in rows:
        if name not in pairs:
            continue
        target = target_of[name]
        result.rows.append(
            LocalRow(
                index=index,
                tensor=name,
                op_type=op_type,
                target_tensor=target,
                quantized=target in local.quantized,
                metrics=acc.whole[name].summary(),
                slices={s: a.summary() for s, a in acc.parts[name].items()},
                channels=acc.channel_summary(name),
            )
        )
    if local.kept:
        result.notes.append(
            f"{len(local.kept)} float tensor(s) without a reference counterpart were computed locally: "
            + ", ".join(local.kept[:5])
        )
    return result
