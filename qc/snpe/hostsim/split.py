"""The error split: per tensor, the quantization error (host simulation vs FP32) and the runtime error (device vs
host simulation), streamed with running sums only."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qc import progress
from qc.compare.matching import TensorMatch, match_qdq
from qc.compare.metrics import MetricAccumulator, MetricSummary, PairStats, pair_stats
from qc.runners.base import Runner, batch_size_of, chunks, run_all_batch
from qc.runners.ort import OrtRunner

ERROR_SPLIT_COLUMNS = (
    "index",
    "tensor",
    "op_type",
    "cosine_quant",
    "sqnr_db_quant",
    "cosine_runtime",
    "sqnr_db_runtime",
)
"""Columns of ``error_split.csv``."""

# ----------------------------------------------------------------------------------------------------------------
# The error split


class HostSimRunner(OrtRunner):
    """An :class:`OrtRunner` for the host simulation with onnxruntime's graph optimizations off.

    Every QuantizeLinear/DequantizeLinear and op then runs as written (float ops on dequantized values, rounding
    in QuantizeLinear): the QDQ model's arithmetic. With optimizations on, onnxruntime fuses Q/DQ pairs into integer
    kernels whose requantization rounds differently (measured on the test model: one quantization step on 13% of
    a Conv's outputs), which would show up as a runtime error that no device made.
    """

    def _options(self) -> Any:
        import onnxruntime as ort

        opts = super()._options()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        return opts


@dataclass(frozen=True)
class SplitRow:
    index: int
    tensor: str
    op_type: str
    dlc_tensor: str
    quant: MetricSummary
    """Host simulation vs FP32 reference."""
    runtime: MetricSummary
    """Device vs host simulation."""


@dataclass
class ErrorSplit:
    model: str
    images: int
    rows: list[SplitRow] = field(default_factory=list)
    unmatched: list[dict[str, str]] = field(default_factory=list)
    margin_db: float = 6.0
    rounding_db: float = 80.0

    def runtime_dominated(self) -> list[SplitRow]:
        """Rows whose runtime error is ``margin_db`` or more above their quantization error (mean SQNR), unless the
        runtime SQNR is above ``rounding_db`` (float rounding, e.g. of a dequantized input, is no runtime error)."""
        out = []
        for r in self.rows:
            q, rt = r.quant.sqnr_db_mean, r.runtime.sqnr_db_mean
            undefined = math.isnan(rt) and r.runtime.undefined is not None
            if undefined or (not math.isnan(q) and rt < self.rounding_db and rt < q - self.margin_db):
                out.append(r)
        return out

    def summary(self) -> dict[str, Any]:
        dominated = self.runtime_dominated()

        worst = min(
            (r for r in self.rows if not math.isnan(r.runtime.sqnr_db_mean)),
            key=lambda r: r.runtime.sqnr_db_mean,
            default=None,
        )
        return {
            "model": self.model,
            "images": self.images,
            "tensors": len(self.rows),
            "margin_db": self.margin_db,
            "rounding_db": self.rounding_db,
            "rule": "runtime error much larger than quantization error: mean runtime SQNR (device vs host "
            "simulation) below mean quantization SQNR (host simulation vs FP32) by margin_db or more, and below "
            "rounding_db",
            "runtime_dominated": [
                {
                    "index": r.index,
                    "tensor": r.tensor,
                    "op_type": r.op_type,
                    "sqnr_db_quant": r.quant.sqnr_db_mean,
                    "sqnr_db_runtime": r.runtime.sqnr_db_mean,
                    "undefined": r.runtime.undefined,
                }
                for r in dominated
            ],
            "first_runtime_dominated": dominated[0].tensor if dominated else None,
            "worst_runtime": (
                {"tensor": worst.tensor, "sqnr_db_runtime": worst.runtime.sqnr_db_mean} if worst is not None else None
            ),
        }

    def csv_rows(self) -> list[dict[str, Any]]:
        return [
            {
                "index": r.index,
                "tensor": r.tensor,
                "op_type": r.op_type,
                "cosine_quant": r.quant.cosine_mean,
                "sqnr_db_quant": r.quant.sqnr_db_mean,
                "cosine_runtime": r.runtime.cosine_mean,
                "sqnr_db_runtime": r.runtime.sqnr_db_mean,
            }
            for r in self.rows
        ]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ErrorSplit:
        return cls(
            model=data["model"],
            images=data["images"],
            rows=[
                SplitRow(
                    **{**r, "quant": MetricSummary(**r["quant"]), "runtime": MetricSummary(**r["runtime"])},
                )
                for r in data["rows"]
            ],
            unmatched=[dict(u) for u in data["unmatched"]],
            margin_db=float(data.get("margin_db", 6.0)),
            rounding_db=float(data.get("rounding_db", 80.0)),
        )


def _stats(a: np.ndarray | None, b: np.ndarray | None, what: str) -> PairStats:
    if a is None or b is None:
        return PairStats(math.nan, math.nan, math.nan, math.nan, f"{what} did not produce it")
    if a.shape != b.shape:
        return PairStats(math.nan, math.nan, math.nan, math.nan, f"shape {a.shape} vs {b.shape}")
    return pair_stats(a, b)


def split_error(
    model: str,
    reference: Runner,
    hostsim: Runner,
    device: Runner,
    device_map: Sequence[TensorMatch],
    feeds: Iterable[tuple[int, Mapping[str, np.ndarray]]],
    *,
    margin_db: float = 6.0,
    bar: progress.Task | None = None,
) -> ErrorSplit:
    """Per tensor: quantization error (host simulation vs FP32) and runtime error (device vs host simulation).

    Each image runs once on each side (the device in chunks of its ``batch_size``, ``run_all``: every matched
    tensor); only running sums are kept. Tensors are those the reference shares with both the host simulation
    (:func:`qc.compare.matching.match_qdq`: the value consumers read) and the device (``device_map``).
    """
    sim_map = {m.reference.name: m.target for m in match_qdq(reference.graph(), hostsim.graph()) if m.target}
    dev_map = {m.reference.name: m.target for m in device_map if m.target}
    rows_info = [t for t in reference.graph().tensors if t.name in sim_map and t.name in dev_map]
    unmatched = [
        {
            "tensor": t.name,
            "reason": "not in the host simulation" if t.name not in sim_map else "no device counterpart (tensor map)",
        }
        for t in reference.graph().tensors
        if t.dtype == "float32" and not (t.name in sim_map and t.name in dev_map)
    ]
    quant = {t.name: MetricAccumulator() for t in rows_info}
    runtime = {t.name: MetricAccumulator() for t in rows_info}
    images = 0
    for chunk in chunks(feeds, batch_size_of(device)):
        dev_alls = run_all_batch(device, [f for _, f in chunk])
        for k, (image_id, feed) in enumerate(chunk):
            images += 1
            ref_all = reference.run_all(feed)
            sim_all = hostsim.run_all(feed)
            dev_all, dev_alls[k] = dev_alls[k], {}
            for t in rows_info:
                a = ref_all.get(t.name)
                s = sim_all.get(sim_map[t.name])
                d = dev_all.get(dev_map[t.name])
                quant[t.name].add(_stats(a, s, "the reference or the host simulation"), image_id)
                runtime[t.name].add(_stats(s, d, "the host simulation or the device"), image_id)
            del ref_all, sim_all, dev_all
            if bar is not None:  # the caller's progress stage: one step per image
                bar.advance()
        del dev_alls
    split = ErrorSplit(model=model, images=images, unmatched=unmatched, margin_db=margin_db)
    for t in rows_info:
        split.rows.append(
            SplitRow(t.index, t.name, t.op_type, dev_map[t.name], quant[t.name].summary(), runtime[t.name].summary())
        )
    return split


def write_error_split(split: ErrorSplit, folder: Path) -> list[Path]:
    """``error_split.csv`` and ``error_split.json`` (the summary) in ``folder``."""
    from qc import jsonio
    from qc.cache import atomic_write_text
    from qc.report.tables import to_csv

    folder.mkdir(parents=True, exist_ok=True)
    csv_path = folder / "error_split.csv"
    json_path = folder / "error_split.json"
    atomic_write_text(csv_path, to_csv(ERROR_SPLIT_COLUMNS, split.csv_rows()))
    atomic_write_text(json_path, jsonio.dumps(split.summary(), indent=1, default=str))
    return [csv_path, json_path]
