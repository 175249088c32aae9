"""``qnn-profile-viewer`` output: per-op time of a profiled ``qnn-net-run``, its totals and ``NetRun IPS``.

Two forms are read:

* the CSV written with ``--output <file>.csv`` (columns ``Msg Timestamp,Message,Time,Unit of Measurement,Timing
  Source,Event Level,Event Identifier``): :func:`qc.qnn.profile.parse_htp_profile` (the QNN EP writes the same);
* the text printed without ``--output`` (:func:`parse_viewer_text`), in the two layouts seen in public captures:

  - averaged (QNN 2.13 ... QAIRT 2.4x): sections ``Init Stats:``, ``Compose Graphs Stats:``, ``Finalize Stats:``,
    ``De-Init Stats:``, ``Execute Stats (Average):``, ``(Min)``, ``(Max)``, ``Execute Stats (Overall):``, each under
    a dashed rule; a ``Graph <k> (<name>):`` line, then ``    NetRun: 2952 us`` and ``    Backend (<event>): <n>
    <unit>`` lines; with ``--profiling_level detailed`` the ops are listed, deeper indented, under
    ``Backend (Accelerator (execute) time (cycles))`` as ``<name>:OpId_<k> (cycles): <n> cycles`` with the HTP
    pseudo-ops ``Input OpId_<k> (cycles)`` / ``Output OpId_<k> (cycles)``; ``NetRun IPS: 214.8888 inf/sec`` (later
    ``NetRun IPS (includes IO and misc. time): ...``) in the ``Overall`` section;
  - per execution (QNN 2.1x, 2023): ``Execute Stats:`` then ``Execute Stat <n>`` blocks of ``<event> : <n> <unit>``
    lines (a space before the colon), ops as ``<name>:OpId_<k> (cycles) : <n> cycles``; qc averages the blocks.

Only the averaged section (or the per-execution blocks) gives op times: ``Min``/``Max`` repeat the ops and are
skipped. HTP pseudo-ops are I/O transfers, kept apart from the layers. Only :class:`ViewerParseError` (a
:class:`ParseError`) escapes the parser.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from qc.errors import ParseError
from qc.qnn.profile import HtpIo, HtpOp, HtpProfile, map_op_name

__all__ = ["ViewerParseError", "ViewerReport", "parse_viewer_text"]

TOOL = "qnn-profile-viewer"
_VALUE = re.compile(r"^(?P<key>.*\S)\s*:\s+(?P<value>[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)\s*(?P<unit>[A-Za-z/%]+)?\s*$")
_NODE = re.compile(r"^(?P<name>.*):OpId_(?P<id>\d+) \((?P<unit>[A-Za-z]+)\)$")
_IO = re.compile(r"^(?P<kind>Input|Output) OpId_(?P<id>\d+) \((?P<unit>[A-Za-z]+)\)$")
_SECTION = re.compile(
    r"^(?P<name>(?:Init|Compose Graphs|Finalize|De-Init|Execute|Lib-Load)\s+Stats(?:\s*\([^)]*\))?)\s*:"
)
_EXEC_BLOCK = re.compile(r"^Execute Stat (?P<n>\d+)\s*:?$")
_GRAPH = re.compile(r"^Graph (?P<k>\d+) \((?P<name>.*)\)\s*:$")
_BACKEND = re.compile(r"^Backend \((?P<event>.*)\)$")
_IPS = re.compile(r"^NetRun IPS\b[^:]*:\s*(?P<value>\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)\s*inf/sec", re.IGNORECASE)


class ViewerParseError(ParseError):
    """The profile viewer's text could not be parsed."""


@dataclass(frozen=True)
class ViewerReport:
    """What the viewer's text says about the executions of one graph."""

    graph: str | None
    profile: HtpProfile  # ops (mean per execution), I/O transfers, graph totals (``NetRun``, ``Accelerator ...``)
    ips: float | None  # ``NetRun IPS`` (inferences per second, file I/O included), None when not printed
    layout: str  # "averaged" or "per-execution"

    @property
    def netrun_us(self) -> float | None:
        total = self.profile.totals.get("NetRun")
        return total[0] if total is not None else None


@dataclass
class _Run:
    ops: dict[tuple[str, int], tuple[float, str]]
    io: dict[tuple[str, int], float]
    totals: dict[str, tuple[float, str]]


def _number(text: str, line: int) -> float:
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise ViewerParseError(f"{TOOL}: line {line}: value {text[:40]!r} is not a finite non-negative number.")
    return value


def parse_viewer_text(text: str, onnx_nodes: Mapping[str, str] | None = None, graph: str | None = None) -> ViewerReport:
    """Parse the viewer's text. ``onnx_nodes`` ({node name: op type}) maps op names back to ONNX nodes; ``graph``
    picks one graph when the log holds several."""
    if not isinstance(text, str):
        raise ViewerParseError(f"{TOOL}: expected text, found {type(text).__name__}.")
    section = ""
    current_graph: str | None = None
    layout = ""
    runs: dict[str | None, list[_Run]] = {}
    ips: float | None = None
    run: _Run | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or set(line) <= {"-", "="}:
            continue
        ips_match = _IPS.match(line)
        if ips_match is not None:
            ips = _number(ips_match.group("value"), number)
            continue
        sec = _SECTION.match(line)
        if sec is not None and _VALUE.match(line) is None:
            section = re.sub(r"\s+", " ", sec.group("name"))
            current_graph, run = None, None
            continue
        averaged = section == "Execute Stats (Average)"
        per_execution = section == "Execute Stats"
        block = _EXEC_BLOCK.match(line)
        if block is not None:
            if per_execution:
                run = _new_run(runs, current_graph)
                layout = layout or "per-execution"
            continue
        graph_match = _GRAPH.match(line.lstrip("-").strip())
        if graph_match is not None:
            current_graph = graph_match.group("name")
            if averaged:
                run = _new_run(runs, current_graph)
                layout = layout or "averaged"
            continue
        if not (averaged or per_execution) or run is None:
            continue
        value_match = _VALUE.match(line.lstrip("-").strip())
        if value_match is None:
            continue  # sub-headers such as "Total Inference Time:"
        key = value_match.group("key").strip()
        backend = _BACKEND.match(key)
        if backend is not None:
            key = backend.group("event").strip()
        value = _number(value_match.group("value"), number)
        unit = value_match.group("unit") or ""
        io_match = _IO.match(key)
        if io_match is not None:
            io_key = (io_match.group("kind").lower(), int(io_match.group("id")))
            run.io[io_key] = run.io.get(io_key, 0.0) + value
            continue
        node = _NODE.match(key)
        if node is not None:
            op_key = (node.group("name"), int(node.group("id")))
            previous = run.ops.get(op_key)
            run.ops[op_key] = (value + (previous[0] if previous else 0.0), unit)
            continue
        run.totals[key] = (value, unit)
    runs = {k: v for k, v in runs.items() if v}
    if not runs:
        raise ViewerParseError(
            f"{TOOL}: no execution statistics (no 'Execute Stats (Average):' graph block and no 'Execute Stat <n>' "
            "block): was qnn-net-run given --profiling_level, and did it execute?"
        )
    chosen: str | None
    if graph is not None and graph in runs:
        chosen = graph
    elif len(runs) == 1 and (graph is None or None in runs):  # the per-execution layout names no graph
        chosen = next(iter(runs))
    elif graph is not None:
        raise ViewerParseError(f"{TOOL}: no statistics for graph {graph!r} (found {sorted(map(str, runs))}).")
    else:
        raise ViewerParseError(f"{TOOL}: statistics of several graphs ({sorted(map(str, runs))}); name one.")
    profile = _summarize(runs[chosen], dict(onnx_nodes or {}))
    return ViewerReport(chosen, profile, ips, layout)


def _new_run(runs: dict[str | None, list[_Run]], graph: str | None) -> _Run:
    run = _Run({}, {}, {})
    runs.setdefault(graph, []).append(run)
    return run


def _summarize(runs: list[_Run], nodes: dict[str, str]) -> HtpProfile:
    n = len(runs)
    op_sum: dict[tuple[str, int], float] = {}
    units: set[str] = set()
    io_sum: dict[tuple[str, int], float] = {}
    total_sum: dict[str, float] = {}
    total_unit: dict[str, str] = {}
    for run in runs:
        for key, (value, unit) in run.ops.items():
            op_sum[key] = op_sum.get(key, 0.0) + value
            units.add(unit)
        for io_key, value in run.io.items():
            io_sum[io_key] = io_sum.get(io_key, 0.0) + value
        for ident, (value, unit) in run.totals.items():
            total_sum[ident] = total_sum.get(ident, 0.0) + value
            total_unit[ident] = unit
    if len(units) > 1:
        raise ViewerParseError(f"{TOOL}: op rows mix units {sorted(units)}; expected one (cycles on the HTP).")
    ops = []
    for (name, op_id), total in sorted(op_sum.items(), key=lambda kv: kv[0][1]):
        onnx_node, op_type = map_op_name(name, nodes)
        ops.append(HtpOp(name, op_id, total / n, onnx_node, op_type))
    io = tuple(HtpIo(kind, op_id, total / n) for (kind, op_id), total in sorted(io_sum.items()))
    totals = {ident: (total / n, total_unit[ident]) for ident, total in total_sum.items()}
    return HtpProfile(tuple(ops), io, totals, {}, n)
