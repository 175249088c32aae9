"""``snpe-diagview`` per-layer times: the text of SNPE 2.x and QAIRT 2.3x, and the CSV (``--csv_format_version 2``).

Text layouts read (fixtures: ``tests/fake_snpe/formats/<version>/diagview_*.txt``):

* SNPE 2.x: ``Layer Times:``, a dashed rule (in some versions), then name-less rows ``1: 80412 cycles : DSP``.
* QAIRT 2.3x: sections ``SNPE Execute Statistics (Averaged):``, ``Per-Subnet Execution Times:``,
  ``Per-Layer Execution Times:`` (each under a dashed rule, rows indented), rows
  ``  4: Input OpId_2 (cycles) : 1907 cycles : DSP`` / ``  1: model/conv/Conv:OpId_18 (cycles) : 0 cycles : DSP`` on
  HTP and ``  2: _model/fc_1/MatMul : 31 us : CPU`` (optionally ``(us)`` after the name) on the CPU.

HTP pseudo-layers ``Input OpId_n`` / ``Output OpId_n`` are input/output transfers, not layers: they go to
:attr:`LayerTimes.io`, never to :attr:`LayerTimes.rows`, and do not count in the layer total or shares. A diagview
row index is its position in the profile, not a ``snpe-dlc-info`` layer id: rows are matched to layers by name only.
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass, field

from qc.snpe.parsers._common import _NUM, _guarded, _integer, _number, _text_arg, _Where

__all__ = ["LayerTime", "LayerTimes", "NetworkStat", "io_kind", "parse_diagview_csv", "parse_diagview_text"]


@dataclass(frozen=True)
class LayerTime:
    """Time of one profiled row; ``share`` is its fraction of :attr:`LayerTimes.total` (layers) or, for an I/O row,
    of :attr:`LayerTimes.all_total` (layers and I/O). ``index`` is diagview's row index (not a dlc-info layer id)."""

    index: int
    name: str | None
    time: float
    unit: str
    share: float
    raw_name: str | None = None
    message: str | None = None
    runtime: str | None = None
    kind: str = "layer"
    """``layer``, or ``input`` / ``output`` for the HTP pseudo-layers ``Input OpId_n`` / ``Output OpId_n``."""


@dataclass(frozen=True)
class NetworkStat:
    """A whole-network statistic such as ``Total Inference Time`` (value and unit; unit "" when none printed)."""

    name: str
    value: float
    unit: str


@dataclass(frozen=True)
class LayerTimes:
    """Per-layer times. ``total`` is the sum of the layer times, in ``unit`` (``cycles`` on the DSP, else ``us``).

    DSP cycles cannot be converted to microseconds (ops overlap): compare layers by ``share``. Whole-network
    statistics are in ``network`` (e.g. ``network["Total Inference Time"]``, in us; ``Subnet 0 (DSP)``). When the log
    holds several executions, each row's time is the mean over them. ``io`` holds the input/output transfer rows.
    """

    rows: list[LayerTime]
    total: float
    unit: str
    network: dict[str, NetworkStat] = field(default_factory=dict)
    io: list[LayerTime] = field(default_factory=list)

    @property
    def io_total(self) -> float:
        return sum(r.time for r in self.io)

    @property
    def all_total(self) -> float:
        return self.total + self.io_total

    @property
    def total_inference_time_us(self) -> float | None:
        stat = self.network.get("Total Inference Time")
        if stat is None:
            return None
        return {"us": 1.0, "ms": 1000.0, "ns": 0.001, "s": 1e6}.get(stat.unit, math.nan) * stat.value

    def top(self, n: int) -> list[LayerTime]:
        """The ``n`` slowest layers, slowest first (I/O rows are not layers)."""
        return sorted(self.rows, key=lambda r: r.time, reverse=True)[:n]


_UNITS = {
    "us": "us",
    "usec": "us",
    "usecs": "us",
    "µs": "us",
    "microsecond": "us",
    "microseconds": "us",
    "ms": "ms",
    "msec": "ms",
    "millisecond": "ms",
    "milliseconds": "ms",
    "ns": "ns",
    "nsec": "ns",
    "nanoseconds": "ns",
    "s": "s",
    "sec": "s",
    "seconds": "s",
    "cycles": "cycles",
    "cycle": "cycles",
    "cyc": "cycles",
}


def _unit(token: str) -> str:
    token = token.strip()
    return _UNITS.get(token.lower(), token.lower())


_NAME_UNIT = re.compile(r"^(.*?)\s*\(\s*(cycles|cycle|us|usec|ms|ns)\s*\)\s*$", re.IGNORECASE)
_OPID_SUFFIX = re.compile(r"^(.+?):(OpId_\d+)$")
_IO_NAME = re.compile(r"^(Input|Output)\s+OpId_\d+$")


def io_kind(name: str | None) -> str | None:
    """``input`` / ``output`` for an HTP transfer pseudo-layer name (``Input OpId_2``), else None."""
    if name is None:
        return None
    match = _IO_NAME.match(name.strip())
    return match.group(1).lower() if match is not None else None


def _split_layer_name(raw: str) -> tuple[str | None, str | None]:
    """``/model.0/conv/Conv:OpId_3 (cycles)`` -> (``/model.0/conv/Conv``, ``cycles``).

    Only an ``:OpId_<n>`` suffix is dropped: a ``:0`` is part of TensorFlow-style layer names.
    """
    name = raw.strip()
    unit_hint = None
    match = _NAME_UNIT.match(name)
    if match is not None:
        name, unit_hint = match.group(1), _unit(match.group(2))
    opid = _OPID_SUFFIX.match(name)
    if opid is not None:
        name = opid.group(1)
    return (name or None), unit_hint


@dataclass(frozen=True)
class _Sample:
    time: float
    unit: str
    name: str | None
    raw_name: str | None
    message: str | None = None
    runtime: str | None = None


def _layer_times(
    where: _Where,
    samples: dict[int, list[_Sample]],
    network: dict[str, list[tuple[float, str]]],
) -> LayerTimes:
    if not samples:
        raise where.error("no per-layer times found")
    units = {sample.unit for values in samples.values() for sample in values}
    if len(units) > 1:
        raise where.error(f"layers use different units ({', '.join(sorted(units))})")
    unit = units.pop()
    means = {index: sum(v.time for v in values) / len(values) for index, values in samples.items()}
    kinds = {index: io_kind(values[0].name) or "layer" for index, values in samples.items()}
    total = sum(t for index, t in means.items() if kinds[index] == "layer")
    all_total = sum(means.values())
    rows: list[LayerTime] = []
    io_rows: list[LayerTime] = []
    for index in sorted(samples):
        first = samples[index][0]
        kind = kinds[index]
        base = total if kind == "layer" else all_total
        row = LayerTime(
            index=index,
            name=first.name,
            time=means[index],
            unit=unit,
            share=means[index] / base if base > 0 else 0.0,
            raw_name=first.raw_name,
            message=first.message,
            runtime=first.runtime,
            kind=kind,
        )
        (rows if kind == "layer" else io_rows).append(row)
    if not rows:
        raise where.error("only input/output transfer rows (Input/Output OpId_n), no per-layer times found")
    stats = {
        name: NetworkStat(name=name, value=sum(v for v, _u in values) / len(values), unit=values[0][1])
        for name, values in network.items()
    }
    return LayerTimes(rows=rows, total=total, unit=unit, network=stats, io=io_rows)


_DV_TOOL = "snpe-diagview"
_DV_STAT = re.compile(r"^\s*([A-Za-z][^:]*?)\s*:\s*(" + _NUM + r")\s*([A-Za-zµ]*)\s*$")
_DV_SECTION = re.compile(r"^(Layer Times|Per-Layer Execution Times)\s*:?$", re.IGNORECASE)
_DV_RULE = re.compile(r"^[-=]{3,}$")
_DV_ROW_START = re.compile(r"^\s*\d+\s*:")
_DV_ROW = re.compile(r"^\s*(\d{1,9})\s*:\s*(?:(.*?)\s*:\s*)??(" + _NUM + r")\s*([A-Za-zµ]+)\s*(?::\s*(.*?))?\s*$")


@_guarded(_DV_TOOL)
def parse_diagview_text(text: str) -> LayerTimes:
    """``snpe-diagview`` text output, SNPE 2.x (``Layer Times:``) or QAIRT 2.3x (``Per-Layer Execution Times:``)."""
    text = _text_arg(_DV_TOOL, text)
    where = _Where(_DV_TOOL)
    samples: dict[int, list[_Sample]] = {}
    network: dict[str, list[tuple[float, str]]] = {}
    in_layers = False
    for lineno, line in enumerate(text.splitlines(), 1):
        where.at(lineno, line)
        stripped = line.strip()
        if _DV_SECTION.match(stripped):
            in_layers = True
            continue
        if in_layers and (not stripped or _DV_RULE.match(stripped)):
            continue  # the rule under the header, blank lines between runs
        if in_layers and _DV_ROW_START.match(line):
            match = _DV_ROW.match(line)
            if match is None:
                raise where.error("malformed layer time line")
            index = int(match.group(1))
            raw = match.group(2)
            name, hint = _split_layer_name(raw) if raw else (None, None)
            unit = _unit(match.group(4))
            if hint is not None and hint != unit:
                raise where.error(f"the name says {hint!r} but the value is in {unit!r}")
            value = _number(where, match.group(3), "layer time")
            samples.setdefault(index, []).append(_Sample(value, unit, name, raw, runtime=match.group(5) or None))
            continue
        in_layers = False
        stat = _DV_STAT.match(line)
        if stat is not None:
            network.setdefault(stat.group(1), []).append(
                (_number(where, stat.group(2), stat.group(1)), _unit(stat.group(3)))
            )
    where.at(0, "")
    return _layer_times(where, samples, network)


@_guarded(_DV_TOOL)
def parse_diagview_csv(text: str) -> LayerTimes:
    """``snpe-diagview --csv_format_version 2`` output.

    Columns are found by name (``Layer Id``, ``Layer Name``, ``Time``, ``Unit of Measurement``, ``Message``), so
    their order and any extra columns do not matter. Rows with an empty ``Layer Id`` are network statistics.
    """
    text = _text_arg(_DV_TOOL, text)
    where = _Where(_DV_TOOL + " CSV")
    reader = csv.reader(io.StringIO(text.replace("\x00", "")))
    columns: dict[str, int] | None = None
    samples: dict[int, list[_Sample]] = {}
    network: dict[str, list[tuple[float, str]]] = {}
    for row in reader:
        line = ",".join(row)
        where.at(reader.line_num, line)
        cells = [c.strip() for c in row]
        if not any(cells):
            continue
        if columns is None:
            if "Layer Id" in cells:
                columns = {name: i for i, name in enumerate(cells) if name}
                missing = [c for c in ("Layer Id", "Layer Name", "Time") if c not in columns]
                if missing:
                    raise where.error(f"header lacks column(s) {', '.join(missing)}")
            continue

        def cell(name: str, cells: list[str] = cells, columns: dict[str, int] = columns) -> str:
            index = columns.get(name)
            return cells[index] if index is not None and index < len(cells) else ""

        layer_id, raw_name, time_text = cell("Layer Id"), cell("Layer Name"), cell("Time")
        unit_text, message = cell("Unit of Measurement"), cell("Message") or None
        if layer_id == "Layer Id":
            continue  # a repeated header (several executions)
        name, hint = _split_layer_name(raw_name)
        unit = _unit(unit_text) if unit_text else hint
        if not layer_id:
            if raw_name and time_text:
                value = _number(where, time_text, f"time of {raw_name!r}")
                network.setdefault(name or raw_name, []).append((value, unit or "us"))
            continue
        index = _integer(where, layer_id, "Layer Id")
        if index < 0:
            raise where.error(f"negative Layer Id {index}")
        if not time_text:
            raise where.error("layer row without a Time")
        if unit is None:
            raise where.error("layer row without a unit")
        value = _number(where, time_text, "Time")
        samples.setdefault(index, []).append(_Sample(value, unit, name, raw_name or None, message=message))
    if columns is None:
        where.at(0, "")
        raise where.error("no header row with 'Layer Id' found")
    where.at(0, "")
    return _layer_times(where, samples, network)
