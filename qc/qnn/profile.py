"""The QNN HTP detailed profile (CSV written by the QNN EP's ``profiling_file_path``) as per-node cycles.

Columns: ``Msg Timestamp,Message,Time,Unit of Measurement,Timing Source,Event Level,Event Identifier``. One
``FINALIZE`` root event (graph preparation, with ``SUB-EVENT`` phases) comes first; then each execution adds root
events (``Accelerator (execute) time (cycles)``, ...), one ``NODE`` sub-event per HTP op
(``<name>:OpId_<k> (cycles)``) and the pseudo-nodes ``Input OpId_<k>``/``Output OpId_<k>`` (graph I/O transfers),
and ends with the ``EXECUTE`` root event ``QNN (execute) time``.

HTP op names are the QNN EP's: an ONNX node's name, sometimes with a ``_token_<n>`` suffix where the EP split or
renamed it; ops the EP or the backend inserted (NCHW<->NHWC ``Transpose``, graph output ``DequantizeLinear``) have
names that are no ONNX node's. Only :class:`ParseError` escapes the parser.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from qc.errors import ModelError, ParseError
from qc.speed import LayerProfile, LayerTimeRow, with_shares

TOOL = "QNN profile CSV"
COLUMNS = (
    "Msg Timestamp",
    "Message",
    "Time",
    "Unit of Measurement",
    "Timing Source",
    "Event Level",
    "Event Identifier",
)
EXECUTE_EVENT = "QNN (execute) time"
INSERTED = "HTP-inserted"
_NODE = re.compile(r"^(?P<name>.*):OpId_(?P<id>\d+) \((?P<unit>[A-Za-z]+)\)$")
_IO = re.compile(r"^(?P<kind>Input|Output) OpId_(?P<id>\d+) \((?P<unit>[A-Za-z]+)\)$")
_TOKEN = re.compile(r"(_token_\d+)+$")
_INDEX = re.compile(r"_\d+$")
_OP_TYPE = re.compile(r"^[A-Z][A-Za-z0-9]*$")
_CONVERSIONS = {"_dq": "DequantizeLinear", "_q": "QuantizeLinear"}


class ProfileParseError(ParseError):
    """The QNN profile CSV could not be parsed."""


@dataclass(frozen=True)
class HtpOp:
    """One HTP op of the prepared graph: mean cycles per run."""

    name: str  # as the profile names it, for example "conv0_token_1"
    op_id: int
    cycles: float
    onnx_node: str | None  # the ONNX node it runs, None when the EP or the backend inserted it
    op_type: str  # the ONNX node's op type; for an inserted op, its name without suffixes (e.g. "Transpose")

    @property
    def inserted(self) -> bool:
        return self.onnx_node is None


@dataclass(frozen=True)
class HtpIo:
    """A graph input or output transfer (not a layer)."""

    kind: str  # "input" or "output"
    op_id: int
    cycles: float


@dataclass(frozen=True)
class HtpProfile:
    """Per-op cycles (mean over ``runs``), I/O transfers, graph-level totals and finalize phases, kept apart."""

    ops: tuple[HtpOp, ...]
    io: tuple[HtpIo, ...]
    totals: dict[str, tuple[float, str]]  # root event -> (mean over runs, unit), e.g. accelerator cycles
    finalize: dict[str, tuple[float, str]] = field(default_factory=dict)  # FINALIZE root and phases
    runs: int = 0

    def layer_rows(self) -> list[LayerTimeRow]:
        """One row per ONNX node (its HTP ops summed) and per inserted op, in cycles, with shares of their sum.

        Inserted ops keep their profile name and get the op type ``"<op> (HTP-inserted)"``, so op-type shares show
        what the backend's layout changes cost. I/O transfers and totals are not rows.
        """
        merged: dict[str, tuple[str, float]] = {}
        for op in self.ops:
            key = op.onnx_node if op.onnx_node is not None else op.name
            op_type = op.op_type if op.onnx_node is not None else f"{op.op_type} ({INSERTED})"
            previous = merged.get(key)
            merged[key] = (op_type, op.cycles + (previous[1] if previous else 0.0))
        return with_shares(((name, op_type, cycles) for name, (op_type, cycles) in merged.items()), "cycles")

    def layer_profile(self) -> LayerProfile:
        """A :class:`qc.speed.LayerProfile` in cycles (no wall time: a simulator's wall time is not device time)."""
        return LayerProfile(self.layer_rows(), run_ms=None)

    def top_ops(self, n: int = 5) -> list[LayerTimeRow]:
        """The ``n`` layers (ONNX nodes or inserted ops) with the most cycles."""
        return sorted(self.layer_rows(), key=lambda r: -r.time)[:n]

    @property
    def accelerator_cycles(self) -> float | None:
        total = self.totals.get("Accelerator (execute) time (cycles)")
        return total[0] if total is not None else None


def map_op_name(name: str, onnx_nodes: Mapping[str, str]) -> tuple[str | None, str]:
    """(ONNX node, op type) of an HTP op name; (None, backend op name) for an op the EP or backend inserted."""
    if name in onnx_nodes:
        return name, onnx_nodes[name]
    base = _TOKEN.sub("", name)
    for candidate in (base, _INDEX.sub("", base)):
        if candidate in onnx_nodes:
            return candidate, onnx_nodes[candidate]
    for suffix, op_type in _CONVERSIONS.items():  # "<node>_dq": the EP's (de)quantization at a float boundary
        if base.endswith(suffix) and base[: -len(suffix)] in onnx_nodes:
            return None, op_type
    op_type = _INDEX.sub("", base)
    return None, op_type if _OP_TYPE.match(op_type) else "Unknown"


def _number(text: str, line: int) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ProfileParseError(f"{TOOL}: line {line}: Time {text!r} is not a number.") from None
    if not math.isfinite(value) or value < 0:
        raise ProfileParseError(f"{TOOL}: line {line}: Time {text!r} is not a finite non-negative number.")
    return value


def parse_htp_profile(text: str, onnx_nodes: Mapping[str, str] | None = None) -> HtpProfile:
    """Parse the CSV text; ``onnx_nodes`` ({ONNX node name: op type}) maps HTP ops back to ONNX nodes."""
    if not isinstance(text, str):
        raise ProfileParseError(f"{TOOL}: expected text, found {type(text).__name__}.")
    nodes = dict(onnx_nodes or {})
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise ProfileParseError(f"{TOOL}: not a CSV file: {exc}") from None
    if not rows or tuple(c.strip() for c in rows[0][: len(COLUMNS)]) != COLUMNS:
        found = ",".join(rows[0]) if rows else "(empty file)"
        raise ProfileParseError(f"{TOOL}: line 1: expected the header {','.join(COLUMNS)}, found {found[:200]!r}.")
    finalize: dict[str, tuple[float, str]] = {}
    runs: list[tuple[dict[tuple[str, int], tuple[float, str]], dict[tuple[str, int], float], dict[str, list[float]]]]
    runs = []
    ops: dict[tuple[str, int], tuple[float, str]] = {}
    ios: dict[tuple[str, int], float] = {}
    roots: dict[str, list[float]] = {}
    units: dict[str, str] = {}
    executed = False
    for line, row in enumerate(rows[1:], start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) < len(COLUMNS):
            raise ProfileParseError(f"{TOOL}: line {line}: expected {len(COLUMNS)} columns, found {len(row)}.")
        message, time_text, unit, level = row[1].strip(), row[2].strip(), row[3].strip(), row[5].strip()
        ident = ",".join(row[6:]).strip()
        value = _number(time_text, line)
        if message == "FINALIZE" or (not executed and not runs and message == "UNKNOWN" and not ops):
            finalize[ident] = (value, unit)
            continue
        if message == "NODE":
            io_match = _IO.match(ident)
            if io_match is not None:
                key = (io_match.group("kind").lower(), int(io_match.group("id")))
                ios[key] = ios.get(key, 0.0) + value
                continue
            node_match = _NODE.match(ident)
            if node_match is None:
                raise ProfileParseError(
                    f"{TOOL}: line {line}: NODE event {ident[:120]!r} is not '<name>:OpId_<k> (<unit>)'."
                )
            op_key = (node_match.group("name"), int(node_match.group("id")))
            previous = ops.get(op_key)
            ops[op_key] = (value + (previous[0] if previous else 0.0), unit)
            continue
        if level == "ROOT":
            roots.setdefault(ident, []).append(value)
            units[ident] = unit
            if message == "EXECUTE" and ident == EXECUTE_EVENT:
                runs.append((ops, ios, roots))
                ops, ios, roots = {}, {}, {}
                executed = True
            continue
        # other sub-events of an execution (none are known today): ignored, they are neither layers nor totals
    if not runs:
        raise ProfileParseError(
            f"{TOOL}: no complete execution (no {EXECUTE_EVENT!r} EXECUTE row): was the session run with "
            "profiling_level basic or detailed?"
        )
    return _summarize(runs, units, finalize, nodes)


def _summarize(
    runs: list[tuple[dict[tuple[str, int], tuple[float, str]], dict[tuple[str, int], float], dict[str, list[float]]]],
    units: dict[str, str],
    finalize: dict[str, tuple[float, str]],
    nodes: dict[str, str],
) -> HtpProfile:
    n = len(runs)
    op_sum: dict[tuple[str, int], float] = {}
    op_units: set[str] = set()
    io_sum: dict[tuple[str, int], float] = {}
    root_sum: dict[str, float] = {}
    for ops, ios, roots in runs:
        for key, (value, unit) in ops.items():
            op_sum[key] = op_sum.get(key, 0.0) + value
            op_units.add(unit)
        for io_key, value in ios.items():
            io_sum[io_key] = io_sum.get(io_key, 0.0) + value
        for ident, values in roots.items():
            root_sum[ident] = root_sum.get(ident, 0.0) + sum(values)
    if len(op_units) > 1:
        raise ProfileParseError(f"{TOOL}: NODE events mix units {sorted(op_units)}; expected one (CYCLES).")
    htp_ops = []
    for (name, op_id), total in sorted(op_sum.items(), key=lambda kv: kv[0][1]):
        onnx_node, op_type = map_op_name(name, nodes)
        htp_ops.append(HtpOp(name, op_id, total / n, onnx_node, op_type))
    io_rows = tuple(HtpIo(kind, op_id, total / n) for (kind, op_id), total in sorted(io_sum.items()))
    totals = {ident: (total / n, units[ident]) for ident, total in root_sum.items()}
    return HtpProfile(tuple(htp_ops), io_rows, totals, finalize, n)


def read_htp_profile(path: Path, onnx_nodes: Mapping[str, str] | None = None) -> HtpProfile:
    """Parse the profile file at ``path`` (see :func:`parse_htp_profile`)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ProfileParseError(f"{TOOL} {path}: cannot be read: {exc}") from None
    try:
        return parse_htp_profile(text, onnx_nodes)
    except ProfileParseError as exc:
        raise ProfileParseError(f"{path}: {exc}") from None


def onnx_node_types(model_path: Path) -> dict[str, str]:
    """{node name: op type} of an ONNX file, to map HTP ops back to it."""
    import onnx

    try:
        model = onnx.load(str(model_path), load_external_data=False)
    except Exception as exc:
        raise ModelError(f"{model_path}: cannot be read as ONNX: {exc}") from None
    return {n.name: n.op_type for n in model.graph.node if n.name}
