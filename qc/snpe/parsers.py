"""Parsers for the text and CSV that SNPE tools print (formats: docs of /work/shared/reference/snpe-tools.md).

Every parser treats its input as untrusted and raises only :class:`qc.errors.ParseError`, whose message names the
tool and shows the offending line.

* :func:`parse_throughput` - ``snpe-throughput-net-run`` (the ``Total throughput:`` line, plus thread lines).
* :func:`parse_diagview_csv` / :func:`parse_diagview_text` - ``snpe-diagview`` per-layer times.
* :func:`parse_dlc_info_text` / :func:`parse_dlc_info_csv` - ``snpe-dlc-info`` layer table, encodings, I/O tables.
* :func:`parse_failed_write` - the folder ``snpe-net-run --debug`` could not write to.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import wraps
from typing import ParamSpec, TypeVar

from qc.errors import ParseError

__all__ = [
    "ELTWISE_OPERATIONS",
    "ChannelEncoding",
    "DlcInfo",
    "DlcIoTensor",
    "DlcLayer",
    "DlcTensor",
    "DlcTotals",
    "Encoding",
    "LayerTime",
    "LayerTimes",
    "NetworkStat",
    "ThreadThroughput",
    "ThroughputResult",
    "parse_diagview_csv",
    "parse_diagview_text",
    "parse_dlc_info_csv",
    "parse_dlc_info_text",
    "parse_encoding",
    "parse_failed_write",
    "parse_throughput",
]

P = ParamSpec("P")
R = TypeVar("R")

_NUM = r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_SNUM = r"[-+]?" + _NUM
_MAX_SHOWN = 200

# QNN ElementWiseBinary "operation" codes. 0-6 and 10-13 are confirmed in snpe-tools.md; the others follow the QNN
# op definition order (GREATER_EQUAL 7, LESS 8, LESS_EQUAL 9, NOT_EQUAL 14, OR 15, POWER 16, SQUARED_DIFFERENCE 17,
# SUBTRACT 18, XOR 19) and are unverified against dlc-info output.
ELTWISE_OPERATIONS: dict[int, str] = {
    0: "ADD",
    1: "AND",
    2: "DIVIDE",
    3: "EQUAL",
    4: "FLOOR_DIV",
    5: "FMOD",
    6: "GREATER",
    7: "GREATER_EQUAL",
    8: "LESS",
    9: "LESS_EQUAL",
    10: "MAXIMUM",
    11: "MINIMUM",
    12: "MOD",
    13: "MULTIPLY",
    14: "NOT_EQUAL",
    15: "OR",
    16: "POWER",
    17: "SQUARED_DIFFERENCE",
    18: "SUBTRACT",
    19: "XOR",
}


# --------------------------------------------------------------------------------------------------------------
# Error helpers


class _Where:
    """The tool and line a parser is looking at, for error messages."""

    def __init__(self, tool: str) -> None:
        self.tool = tool
        self.lineno = 0
        self.line = ""

    def at(self, lineno: int, line: str) -> None:
        self.lineno = lineno
        self.line = line

    def error(self, reason: str) -> ParseError:
        if self.lineno:
            shown = self.line if len(self.line) <= _MAX_SHOWN else self.line[: _MAX_SHOWN - 3] + "..."
            return ParseError(f"{self.tool}: {reason} (line {self.lineno}: {shown!r})")
        return ParseError(f"{self.tool}: {reason}")


def _guarded(tool: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Turn any unexpected exception of a parser into ParseError (a safety net: parsers raise ParseError)."""

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        @wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return func(*args, **kwargs)
            except ParseError:
                raise
            except (ValueError, IndexError, KeyError, TypeError, OverflowError, csv.Error, RecursionError) as exc:
                raise ParseError(f"{tool}: unreadable output ({type(exc).__name__}: {exc})") from None

        return wrapper

    return decorate


def _text_arg(tool: str, text: object) -> str:
    if isinstance(text, bytes):
        return text.decode("utf-8", errors="replace")
    if not isinstance(text, str):
        raise ParseError(f"{tool}: expected text, got {type(text).__name__}")
    return text


def _number(where: _Where, token: str, what: str) -> float:
    try:
        value = float(token)
    except ValueError:
        raise where.error(f"{what} {token!r} is not a number") from None
    if not math.isfinite(value):
        raise where.error(f"{what} {token!r} is not finite")
    return value


def _integer(where: _Where, token: str, what: str) -> int:
    token = token.strip()
    if not re.fullmatch(r"[-+]?\d{1,30}", token):
        raise where.error(f"{what} {token!r} is not an integer")
    return int(token)


_SI = {"": 1, "k": 1_000, "K": 1_000, "M": 1_000_000, "G": 1_000_000_000, "T": 1_000_000_000_000}


def _si_count(text: str) -> int | None:
    """``864 (0.0276%)`` -> 864, ``12M (3.4%)`` -> 12_000_000 (dlc-info rounds down to whole k/M)."""
    match = re.match(r"^\s*(\d{1,30})\s*([kKMGT]?)\b", text)
    if match is None:
        return None
    return int(match.group(1)) * _SI[match.group(2)]


# --------------------------------------------------------------------------------------------------------------
# snpe-throughput-net-run


@dataclass(frozen=True)
class ThreadThroughput:
    """One ``[Thread i - runtime] N infs/sec - ...`` line."""

    index: int
    runtime: str
    infs_per_sec: float
    images_processed: int | None = None
    build_time_us: int | None = None
    elapsed_time_us: int | None = None
    real_time_us: int | None = None
    teardown_time_us: int | None = None
    batch: int | None = None


@dataclass(frozen=True)
class ThroughputResult:
    total_infs_per_sec: float
    threads: list[ThreadThroughput] = field(default_factory=list)


_TP_TOOL = "snpe-throughput-net-run"
_TOTAL = re.compile(r"Total throughput:\s*(" + _NUM + r")\s*infs/sec\b")
_THREAD = re.compile(r"^\s*\[Thread\s+(\d{1,9})\s*-\s*([^\]]*)\]\s*(" + _NUM + r")\s*infs/sec\b(.*)$")
_THREAD_FIELDS = {
    "images_processed": re.compile(r"Number of images processed:\s*(\d{1,30})"),
    "build_time_us": re.compile(r"Build time:\s*(\d{1,30})\s*microseconds"),
    "elapsed_time_us": re.compile(r"Elapsed time:\s*(\d{1,30})\s*microseconds"),
    "real_time_us": re.compile(r"Real time:\s*(\d{1,30})\s*microseconds"),
    "teardown_time_us": re.compile(r"Teardown time:\s*(\d{1,30})\s*microseconds"),
    "batch": re.compile(r"Batch\s*:\s*(\d{1,30})"),
}


@_guarded(_TP_TOOL)
def parse_throughput(text: str) -> ThroughputResult:
    """FPS from ``snpe-throughput-net-run`` output: the ``Total throughput:`` line, never a thread line.

    Raises ParseError when there is no total line, when it is malformed, or when several disagree.
    """
    text = _text_arg(_TP_TOOL, text)
    where = _Where(_TP_TOOL)
    totals: list[float] = []
    threads: list[ThreadThroughput] = []
    last = ""
    for lineno, line in enumerate(text.splitlines(), 1):
        where.at(lineno, line)
        if line.strip():
            last = line
        if "Total throughput:" in line:
            match = _TOTAL.search(line)
            if match is None:
                raise where.error("malformed 'Total throughput:' line")
            value = _number(where, match.group(1), "total throughput")
            if totals and value != totals[0]:
                raise where.error(f"several 'Total throughput:' lines disagree ({totals[0]:g} vs {value:g})")
            totals.append(value)
        elif line.lstrip().startswith("[Thread"):
            match = _THREAD.match(line)
            if match is None:
                raise where.error("malformed thread line")
            extra: dict[str, int] = {}
            for key, pattern in _THREAD_FIELDS.items():
                found = pattern.search(match.group(4))
                if found is not None:
                    extra[key] = int(found.group(1))
            threads.append(
                ThreadThroughput(
                    index=int(match.group(1)),
                    runtime=match.group(2).strip(),
                    infs_per_sec=_number(where, match.group(3), "thread throughput"),
                    **extra,
                )
            )
    if not totals:
        where.at(0, "")
        shown = last.strip()[:_MAX_SHOWN]
        raise ParseError(f"{_TP_TOOL}: no 'Total throughput:' line found (last line: {shown!r})")
    return ThroughputResult(total_infs_per_sec=totals[0], threads=threads)


# --------------------------------------------------------------------------------------------------------------
# snpe-diagview


@dataclass(frozen=True)
class LayerTime:
    """Time of one layer; ``share`` is its fraction of :attr:`LayerTimes.total` (0..1)."""

    index: int
    name: str | None
    time: float
    unit: str
    share: float
    raw_name: str | None = None
    message: str | None = None
    runtime: str | None = None


@dataclass(frozen=True)
class NetworkStat:
    """A whole-network statistic such as ``Total Inference Time`` (value and unit)."""

    name: str
    value: float
    unit: str


@dataclass(frozen=True)
class LayerTimes:
    """Per-layer times. ``total`` is the sum of the layer times, in ``unit`` (``cycles`` on the DSP, else ``us``).

    DSP cycles cannot be converted to microseconds (ops overlap): compare layers by ``share``. Whole-network
    statistics are in ``network`` (e.g. ``network["Total Inference Time"]``, in us). When the log holds several
    executions, each layer's time is the mean over them.
    """

    rows: list[LayerTime]
    total: float
    unit: str
    network: dict[str, NetworkStat] = field(default_factory=dict)

    @property
    def total_inference_time_us(self) -> float | None:
        stat = self.network.get("Total Inference Time")
        if stat is None:
            return None
        return {"us": 1.0, "ms": 1000.0, "ns": 0.001, "s": 1e6}.get(stat.unit, math.nan) * stat.value

    def top(self, n: int) -> list[LayerTime]:
        """The ``n`` slowest layers, slowest first."""
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


def _split_layer_name(raw: str) -> tuple[str | None, str | None]:
    """``/model.0/conv/Conv:OpId_3 (cycles)`` -> (``/model.0/conv/Conv``, ``cycles``)."""
    name = raw.strip()
    unit_hint = None
    match = _NAME_UNIT.match(name)
    if match is not None:
        name, unit_hint = match.group(1), _unit(match.group(2))
    if ":" in name:
        base, suffix = name.rsplit(":", 1)
        if base and suffix and "/" not in suffix and " " not in suffix:
            name = base
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
    total = sum(means.values())
    rows = []
    for index in sorted(samples):
        first = samples[index][0]
        rows.append(
            LayerTime(
                index=index,
                name=first.name,
                time=means[index],
                unit=unit,
                share=means[index] / total if total > 0 else 0.0,
                raw_name=first.raw_name,
                message=first.message,
                runtime=first.runtime,
            )
        )
    stats = {
        name: NetworkStat(name=name, value=sum(v for v, _u in values) / len(values), unit=values[0][1])
        for name, values in network.items()
    }
    return LayerTimes(rows=rows, total=total, unit=unit, network=stats)


_DV_TOOL = "snpe-diagview"
_DV_STAT = re.compile(r"^\s*([A-Za-z][^:]*?)\s*:\s*(" + _NUM + r")\s*([A-Za-zµ]+)\s*$")
_DV_ROW_START = re.compile(r"^\s*\d+\s*:")
_DV_ROW = re.compile(r"^\s*(\d{1,9})\s*:\s*(?:(.*?)\s*:\s*)??(" + _NUM + r")\s*([A-Za-zµ]+)\s*(?::\s*(.*?))?\s*$")


@_guarded(_DV_TOOL)
def parse_diagview_text(text: str) -> LayerTimes:
    """``snpe-diagview`` text output: ``Total Inference Time: N us`` ... ``Layer Times:`` ``i: N cycles : DSP``."""
    text = _text_arg(_DV_TOOL, text)
    where = _Where(_DV_TOOL)
    samples: dict[int, list[_Sample]] = {}
    network: dict[str, list[tuple[float, str]]] = {}
    in_layers = False
    for lineno, line in enumerate(text.splitlines(), 1):
        where.at(lineno, line)
        stripped = line.strip()
        if not stripped:
            continue
        if re.match(r"^Layer Times\s*:?\s*$", stripped):
            in_layers = True
            continue
        if in_layers and _DV_ROW_START.match(line):
            match = _DV_ROW.match(line)
            if match is None:
                raise where.error("malformed layer time line")
            index = int(match.group(1))
            raw = match.group(2)
            name, _hint = _split_layer_name(raw) if raw else (None, None)
            value = _number(where, match.group(3), "layer time")
            samples.setdefault(index, []).append(
                _Sample(value, _unit(match.group(4)), name, raw, runtime=match.group(5) or None)
            )
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


# --------------------------------------------------------------------------------------------------------------
# snpe-dlc-info


@dataclass(frozen=True)
class ChannelEncoding:
    channel: int
    bitwidth: int
    min: float
    max: float
    scale: float
    offset: float


@dataclass(frozen=True)
class Encoding:
    """A tensor's quantization encoding (``real = scale * (q + offset)``).

    For per-channel (axis) encodings the scalar fields are channel 0's, ``per_channel`` lists the channels that
    dlc-info printed (only channel 0 unless ``-d``), ``axis`` the quantized axis and ``num_channels`` its size.
    """

    bitwidth: int
    min: float
    max: float
    scale: float
    offset: float
    per_channel: list[ChannelEncoding] | None = None
    axis: int | None = None
    num_channels: int | None = None


@dataclass(frozen=True)
class DlcTensor:
    """A tensor cell: ``name (data type: uFxp_8; tensor dimension: [1,36,64,85]; tensor type: NATIVE)``."""

    name: str
    dtype: str | None
    dims: tuple[int, ...] | None
    tensor_type: str | None
    is_network_input: bool = False


@dataclass
class DlcLayer:
    """One op of the layer table (continuation lines merged)."""

    id: int
    name: str
    type: str
    inputs: list[DlcTensor] = field(default_factory=list)
    outputs: list[DlcTensor] = field(default_factory=list)
    out_dims: list[tuple[int, ...]] = field(default_factory=list)
    runtimes: list[str] = field(default_factory=list)
    params: dict[str, str] = field(default_factory=dict)
    encodings: dict[str, Encoding] = field(default_factory=dict)

    @property
    def eltwise_operation(self) -> str | None:
        """``DIVIDE`` for an ``Eltwise_Binary`` with ``operation: 2`` (None for other ops or unknown codes)."""
        if not self.type.startswith("Eltwise"):
            return None
        code = self.params.get("operation", "").strip()
        return ELTWISE_OPERATIONS.get(int(code)) if code.isdigit() else None

    @property
    def param_count(self) -> int | None:
        return _si_count(self.params["param count"]) if "param count" in self.params else None

    @property
    def macs(self) -> int | None:
        return _si_count(self.params["MACs per inference"]) if "MACs per inference" in self.params else None


@dataclass(frozen=True)
class DlcIoTensor:
    """A row of the ``Input Name`` / ``Output Name`` / ``Unconsumed Tensor Name`` tables."""

    name: str
    dims: tuple[int, ...] | None
    dtype: str | None
    encoding: Encoding | None
    encoding_text: str


@dataclass(frozen=True)
class DlcTotals:
    params: int | None = None
    macs: int | None = None
    macs_text: str | None = None
    ops: list[str] = field(default_factory=list)
    memory: str | None = None


@dataclass
class DlcInfo:
    """What ``snpe-dlc-info`` tells about one graph of a DLC (the first, unless another was asked for)."""

    layers: list[DlcLayer]
    inputs: list[DlcIoTensor]
    outputs: list[DlcIoTensor]
    unconsumed: list[DlcIoTensor]
    totals: DlcTotals
    meta: dict[str, str] = field(default_factory=dict)
    graph_name: str | None = None
    graph_names: list[str] = field(default_factory=list)

    def layer(self, name: str) -> DlcLayer | None:
        return next((layer for layer in self.layers if layer.name == name), None)

    def of_type(self, op_type: str) -> list[DlcLayer]:
        return [layer for layer in self.layers if layer.type == op_type]

    def encoding_of(self, tensor: str) -> Encoding | None:
        """The encoding of a tensor, from whichever layer lists it (or the I/O tables)."""
        for layer in self.layers:
            if tensor in layer.encodings:
                return layer.encodings[tensor]
        for io_tensor in (*self.inputs, *self.outputs):
            if io_tensor.name == tensor:
                return io_tensor.encoding
        return None


_DI_TOOL = "snpe-dlc-info"
_ENCODING = re.compile(
    r"^\s*bitwidth\s+(\d{1,3})\s*,\s*min\s+(" + _SNUM + r")\s*,\s*max\s+(" + _SNUM + r")\s*,\s*"
    r"scale\s+(" + _SNUM + r")\s*,\s*offset\s+(" + _SNUM + r")\s*,?\s*(.*)$"
)
_AXIS = re.compile(r"^\s*axis:\s*(-?\d{1,9})\s*,\s*num_elements:\s*(\d{1,12})\b")
_PARAM_ENCODING = re.compile(r"^(.+) encoding (?::|for channel_(\d{1,9}):) (.*)$")
_TENSOR_CELL = re.compile(
    r"^(.+?) \(data type: ([^;()]*); tensor dimension: ([^;]*); tensor type: ([^)]*)\)( \[NW Input\])?$"
)
_SEPARATOR = re.compile(r"^[\s\-=+|]+$")
_LAYER_HEADER = ("Id", "Name", "Type", "Inputs", "Outputs")
_IO_TABLES = {"Input Name": "inputs", "Output Name": "outputs", "Unconsumed Tensor Name": "unconsumed"}
_OTHER_TABLES = ("Cache Record Name", "AIP Record Name")


@_guarded(_DI_TOOL)
def parse_encoding(text: str) -> Encoding:
    """``bitwidth 8, min -3.22, max 4.31, scale 0.0295, offset -109.0 [axis: 3, num_elements: 64 (...)]``."""
    text = _text_arg(_DI_TOOL, text)
    where = _Where(_DI_TOOL)
    where.at(1, text)
    return _encoding(where, text, channel=None)


def _encoding(where: _Where, text: str, channel: int | None) -> Encoding:
    match = _ENCODING.match(text)
    if match is None:
        raise where.error("malformed encoding")
    bitwidth = int(match.group(1))
    lo, hi, scale, offset = (
        _number(where, match.group(i), key) for i, key in ((2, "min"), (3, "max"), (4, "scale"), (5, "offset"))
    )
    axis = num_channels = None
    per_channel = None
    rest = match.group(6).strip()
    if rest:
        axis_match = _AXIS.match(rest)
        if axis_match is None:
            raise where.error("unexpected text after the encoding")
        axis, num_channels = int(axis_match.group(1)), int(axis_match.group(2))
    if channel is not None or axis is not None:
        per_channel = [ChannelEncoding(channel or 0, bitwidth, lo, hi, scale, offset)]
    return Encoding(bitwidth, lo, hi, scale, offset, per_channel=per_channel, axis=axis, num_channels=num_channels)


def _dims(where: _Where, text: str, sep: str) -> tuple[int, ...]:
    body = text.strip().strip("[]").strip()
    if not body:
        return ()
    out = []
    for part in body.split(sep):
        value = _integer(where, part, "dimension")
        if value < 0:
            raise where.error(f"negative dimension {value}")
        out.append(value)
    return tuple(out)


def _tensor(where: _Where, cell: str) -> DlcTensor:
    match = _TENSOR_CELL.match(cell)
    if match is None:
        if "(data type:" in cell:
            raise where.error("malformed tensor cell")
        nw_input = cell.endswith(" [NW Input]")
        name = cell[: -len(" [NW Input]")] if nw_input else cell
        return DlcTensor(name=name.strip(), dtype=None, dims=None, tensor_type=None, is_network_input=nw_input)
    return DlcTensor(
        name=match.group(1),
        dtype=match.group(2).strip() or None,
        dims=_dims(where, match.group(3), ","),
        tensor_type=match.group(4).strip() or None,
        is_network_input=match.group(5) is not None,
    )


class _LayerState:
    """Per-layer bookkeeping while rows arrive (which tensor the next ``axis-quant`` line belongs to)."""

    def __init__(self, layer: DlcLayer) -> None:
        self.layer = layer
        self.last_axis_tensor: str | None = None


@dataclass
class _Graph:
    name: str | None
    layers: list[DlcLayer] = field(default_factory=list)
    inputs: list[DlcIoTensor] = field(default_factory=list)
    outputs: list[DlcIoTensor] = field(default_factory=list)
    unconsumed: list[DlcIoTensor] = field(default_factory=list)
    params: int | None = None
    macs: int | None = None
    macs_text: str | None = None
    ops: list[str] = field(default_factory=list)
    memory: list[str] | None = None


class _DlcBuilder:
    """Consumes lines and table rows (from the text or the CSV form) and builds DlcInfo."""

    def __init__(self, where: _Where) -> None:
        self.where = where
        self.meta: dict[str, str] = {}
        self.graphs: list[_Graph] = []
        self.mode = "preamble"  # preamble | layers | after | io | skip
        self.columns: dict[str, int] = {}
        self.io_target: list[DlcIoTensor] | None = None
        self.current: _LayerState | None = None
        self.memory_lines: list[str] | None = None

    @property
    def graph(self) -> _Graph:
        if not self.graphs:
            self.graphs.append(_Graph(name=None))
        return self.graphs[-1]

    # ---------------------------------------------------------------- lines

    def line(self, text: str) -> None:
        stripped = text.strip()
        if not stripped or _SEPARATOR.match(stripped):
            return
        if stripped.startswith("Info of graph:"):
            name = stripped[len("Info of graph:") :].strip()
            if self.graphs and not self.graph.layers and self.graph.name is None:
                self.graph.name = name
            else:
                self.graphs.append(_Graph(name=name))
            self.mode = "preamble"
            self.memory_lines = None
            return
        if self.mode == "preamble":
            if ":" in stripped:
                key, _sep, value = stripped.partition(":")
                self.meta.setdefault(key.strip(), value.strip())
            return
        # After the layer table: notes, the Key legend, totals.
        self.mode = "after" if self.mode in ("layers", "io", "skip") else self.mode
        self.current = None
        if self.memory_lines is not None and stripped.startswith("- "):
            self.memory_lines.append(stripped)
            return
        self.memory_lines = None
        graph = self.graph
        if stripped.startswith("Total parameters:"):
            match = re.match(r"^Total parameters:\s*(\d{1,30})\b", stripped)
            if match is None:
                raise self.where.error("malformed 'Total parameters:' line")
            graph.params = int(match.group(1))
        elif stripped.startswith("Total MACs per inference:"):
            value = stripped[len("Total MACs per inference:") :].strip()
            count = _si_count(value)
            if count is None:
                raise self.where.error("malformed 'Total MACs per inference:' line")
            graph.macs = count
            graph.macs_text = value.split("(")[0].strip()
        elif stripped.startswith("Ops used by Graph:"):
            ops = stripped[len("Ops used by Graph:") :]
            graph.ops = [op.strip() for op in ops.split(",") if op.strip()]
        elif stripped.startswith("Est. Steady-State Memory Needed to Run:"):
            value = stripped[len("Est. Steady-State Memory Needed to Run:") :].strip()
            self.memory_lines = [value] if value else []
            graph.memory = self.memory_lines

    # ---------------------------------------------------------------- rows

    def row(self, cells: list[str]) -> None:
        cells = [c.strip() for c in cells]
        if not any(cells):
            return
        head = cells[0]
        if tuple(cells[: len(_LAYER_HEADER)]) == _LAYER_HEADER:
            if self.graph.layers:
                self.graphs.append(_Graph(name=None))
            self.columns = {name: i for i, name in enumerate(cells)}
            self.mode = "layers"
            self.current = None
            return
        if head in _IO_TABLES and self.mode != "layers":
            self.columns = {name: i for i, name in enumerate(cells)}
            self.io_target = getattr(self.graph, _IO_TABLES[head])
            self.mode = "io"
            return
        if head in _OTHER_TABLES and self.mode != "layers":
            self.mode = "skip"
            return
        if self.mode == "layers":
            self._layer_row(cells)
        elif self.mode == "io":
            self._io_row(cells)
        # preamble/after/skip: rows of tables qc does not use

    def _cell(self, cells: list[str], name: str) -> str:
        index = self.columns.get(name)
        return cells[index] if index is not None and index < len(cells) else ""

    def _layer_row(self, cells: list[str]) -> None:
        if len(cells) < len(_LAYER_HEADER):
            raise self.where.error(f"layer row has {len(cells)} cells, expected {len(self.columns)}")
        layer_id = self._cell(cells, "Id")
        if layer_id:
            layer = DlcLayer(
                id=_integer(self.where, layer_id, "layer Id"),
                name=self._cell(cells, "Name"),
                type=self._cell(cells, "Type"),
            )
            if not layer.name or not layer.type:
                raise self.where.error("layer row without a name or a type")
            runtimes = self._cell(cells, "Runtimes")
            layer.runtimes = runtimes.split() if runtimes else []
            self.graph.layers.append(layer)
            self.current = _LayerState(layer)
        elif self.current is None:
            raise self.where.error("continuation row before any layer row")
        elif self._cell(cells, "Name") or self._cell(cells, "Type"):
            raise self.where.error("row with a name or type but no Id")
        state = self.current
        layer = state.layer
        if cell := self._cell(cells, "Inputs"):
            layer.inputs.append(_tensor(self.where, cell))
        if cell := self._cell(cells, "Outputs"):
            layer.outputs.append(_tensor(self.where, cell))
        if cell := self._cell(cells, "Out Dims"):
            layer.out_dims.append(_dims(self.where, cell, "x"))
        if cell := self._cell(cells, "Parameters"):
            self._param(state, cell)

    def _param(self, state: _LayerState, text: str) -> None:
        layer = state.layer
        enc = _PARAM_ENCODING.match(text)
        if enc is not None and enc.group(3).lstrip().startswith("bitwidth"):
            tensor = enc.group(1).strip()
            channel = int(enc.group(2)) if enc.group(2) is not None else None
            encoding = _encoding(self.where, enc.group(3), channel)
            if channel is None:
                layer.encodings[tensor] = encoding
                return
            previous = layer.encodings.get(tensor)
            if previous is not None and previous.per_channel is not None and channel > 0:
                # another channel of an encoding already seen (dlc-info -d): append, keep channel 0's scalars
                channels = [*previous.per_channel, *(encoding.per_channel or [])]
                layer.encodings[tensor] = Encoding(
                    previous.bitwidth,
                    previous.min,
                    previous.max,
                    previous.scale,
                    previous.offset,
                    per_channel=channels,
                    axis=previous.axis,
                    num_channels=previous.num_channels,
                )
            else:
                layer.encodings[tensor] = encoding
            state.last_axis_tensor = tensor
            return
        if text.startswith("axis-quant:"):
            axis = _AXIS.match(text[len("axis-quant:") :])
            if axis is None:
                raise self.where.error("malformed axis-quant line")
            if state.last_axis_tensor is None:
                raise self.where.error("axis-quant line without a per-channel encoding before it")
            tensor = state.last_axis_tensor
            old = layer.encodings[tensor]
            layer.encodings[tensor] = Encoding(
                old.bitwidth,
                old.min,
                old.max,
                old.scale,
                old.offset,
                per_channel=old.per_channel,
                axis=int(axis.group(1)),
                num_channels=int(axis.group(2)),
            )
            state.last_axis_tensor = None
            return
        key, sep, value = text.partition(":")
        if not sep:
            layer.params.setdefault(text, "")
            return
        layer.params[key.strip()] = value.strip()

    def _io_row(self, cells: list[str]) -> None:
        if self.io_target is None:
            return
        name = cells[0]
        dims_text = self._cell(cells, "Dimensions")
        dtype = self._cell(cells, "Type") or None
        encoding_text = self._cell(cells, "Encoding Info")
        encoding = None
        if encoding_text.startswith("bitwidth"):
            encoding = _encoding(self.where, encoding_text, None)
        self.io_target.append(
            DlcIoTensor(
                name=name,
                dims=_dims(self.where, dims_text, ",") if dims_text else None,
                dtype=dtype,
                encoding=encoding,
                encoding_text=encoding_text,
            )
        )

    # ---------------------------------------------------------------- result

    def build(self, graph: str | None) -> DlcInfo:
        self.where.at(0, "")
        graphs = [g for g in self.graphs if g.layers]
        if not graphs:
            raise self.where.error("no layer table (header 'Id | Name | Type | Inputs | Outputs ...') found")
        chosen = graphs[0]
        if graph is not None:
            matches = [g for g in graphs if g.name == graph]
            if not matches:
                names = ", ".join(str(g.name) for g in graphs)
                raise self.where.error(f"no graph named {graph!r} (graphs: {names})")
            chosen = matches[0]
        totals = DlcTotals(
            params=chosen.params,
            macs=chosen.macs,
            macs_text=chosen.macs_text,
            ops=list(chosen.ops),
            memory=" ".join(chosen.memory) if chosen.memory else None,
        )
        return DlcInfo(
            layers=chosen.layers,
            inputs=chosen.inputs,
            outputs=chosen.outputs,
            unconsumed=chosen.unconsumed,
            totals=totals,
            meta=dict(self.meta),
            graph_name=chosen.name,
            graph_names=[str(g.name) for g in graphs if g.name is not None],
        )


def _pipe_cells(line: str, positions: list[int] | None, count: int) -> list[str]:
    """Cells of a ``| a | b |`` table row; uses the header's ``|`` columns when they line up (values may hold ``|``)."""
    if positions and len(line) > positions[-1] and all(line[p] == "|" for p in positions):
        return [line[a + 1 : b] for a, b in itertools.pairwise(positions)]
    body = line.strip()
    parts = body[1:].split("|")
    if body.endswith("|") and len(body) > 1:
        parts = parts[:-1]
    if count and len(parts) > count:
        # a value held "|": keep the first count-1 cells and glue the rest into the last one
        parts = [*parts[: count - 1], "|".join(parts[count - 1 :])]
    return parts


def _text_events(text: str, where: _Where) -> Iterator[tuple[str, list[str] | None]]:
    positions: list[int] | None = None
    count = 0
    previous_blank_or_rule = True
    for lineno, line in enumerate(text.splitlines(), 1):
        where.at(lineno, line)
        stripped = line.strip()
        if stripped.startswith("|") and not _SEPARATOR.match(stripped):
            cells = _pipe_cells(line, positions, count)
            trimmed = [c.strip() for c in cells]
            if (
                previous_blank_or_rule
                and trimmed
                and (
                    tuple(trimmed[: len(_LAYER_HEADER)]) == _LAYER_HEADER
                    or trimmed[0] in _IO_TABLES
                    or trimmed[0] in _OTHER_TABLES
                )
            ):
                positions = [i for i, ch in enumerate(line) if ch == "|"]
                count = len(positions) - 1
                cells = _pipe_cells(line, positions, count)
            yield line, cells
            previous_blank_or_rule = False
        else:
            if not stripped or _SEPARATOR.match(stripped):
                previous_blank_or_rule = True
            yield line, None


@_guarded(_DI_TOOL)
def parse_dlc_info_text(text: str, *, graph: str | None = None) -> DlcInfo:
    """``snpe-dlc-info -i model.dlc`` printed output (the ``| Id | Name | ...`` tables)."""
    text = _text_arg(_DI_TOOL, text)
    where = _Where(_DI_TOOL)
    builder = _DlcBuilder(where)
    for line, cells in _text_events(text, where):
        if cells is None:
            builder.line(line)
        else:
            builder.row(cells)
    return builder.build(graph)


@_guarded(_DI_TOOL)
def parse_dlc_info_csv(text: str, *, graph: str | None = None) -> DlcInfo:
    """``snpe-dlc-info -i model.dlc -s info.csv`` CSV (single-cell rows are the printed lines)."""
    text = _text_arg(_DI_TOOL, text)
    where = _Where(_DI_TOOL + " CSV")
    builder = _DlcBuilder(where)
    reader = csv.reader(io.StringIO(text.replace("\x00", "")))
    for row in reader:
        where.at(reader.line_num, ",".join(row))
        if len(row) <= 1:
            builder.line(row[0] if row else "")
        else:
            builder.row(row)
    return builder.build(graph)


# --------------------------------------------------------------------------------------------------------------
# snpe-net-run --debug


_FAILED_WRITE = re.compile(r"Failed to write data to:?\s*(.*?)\s*$")


@_guarded("snpe-net-run")
def parse_failed_write(stderr: str) -> str | None:
    """The path in ``Failed to write data to: <path>`` (first occurrence), or None when absent."""
    stderr = _text_arg("snpe-net-run", stderr)
    where = _Where("snpe-net-run")
    for lineno, line in enumerate(stderr.splitlines(), 1):
        if "Failed to write data to" not in line:
            continue
        where.at(lineno, line)
        match = _FAILED_WRITE.search(line)
        path = match.group(1) if match is not None else ""
        if len(path) >= 2 and path[0] == path[-1] and path[0] in "'\"":
            path = path[1:-1]
        if not path:
            raise where.error("'Failed to write data to' without a path")
        return path
    return None
