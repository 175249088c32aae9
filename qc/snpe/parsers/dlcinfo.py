"""``snpe-dlc-info`` (text table and ``-s`` CSV): layers, tensors, encodings, I/O tables, totals.

Op types are QNN op names. Two of them carry their real operation as a code in the ``operation:`` parameter:
``Eltwise_Binary``/``ElementWiseBinary`` and ``ElementWiseNeuron`` (activations). The code tables below are QNN's
``QNN_OP_ELEMENT_WISE_BINARY_OPERATION_*`` and ``QNN_OP_ELEMENT_WISE_NEURON_OPERATION_*`` from ``QnnOpDef.h``
(QAIRT 2.x). A code missing from a table is reported as ``ElementWiseNeuron(op=N)``, never guessed.

About 600 lines on purpose: the text table and the ``-s`` CSV feed one builder (rows, continuation rows, encodings,
I/O tables, totals); splitting it would separate the two readers from the state they share.
"""

from __future__ import annotations

import csv
import io
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from qc.snpe.parsers._common import _SNUM, _guarded, _integer, _number, _si_count, _text_arg, _Where

# QNN ElementWiseBinary "operation" codes (QnnOpDef.h, QNN_OP_ELEMENT_WISE_BINARY_OPERATION_*).
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

_BINARY_TYPES = ("Eltwise_Binary", "ElementWiseBinary")
_NEURON_TYPES = ("ElementWiseNeuron", "Eltwise_Neuron")

# QNN ElementWiseNeuron "operation" codes (QnnOpDef.h, QNN_OP_ELEMENT_WISE_NEURON_OPERATION_*), as the op types
# qc's lint and reports use for the same activation in ONNX.
NEURON_OPERATIONS: dict[int, str] = {
    0: "Elu",
    1: "Gelu",
    2: "HardSigmoid",
    3: "HardSwish",
    4: "Relu",
    5: "ReluMinMax",
    6: "Sigmoid",
    7: "Softplus",
    8: "Tanh",
}


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
        if self.type not in _BINARY_TYPES:
            return None
        code = self.params.get("operation", "").strip()
        return ELTWISE_OPERATIONS.get(int(code)) if code.isdigit() else None

    @property
    def neuron_operation(self) -> str | None:
        """``Relu`` for an ``ElementWiseNeuron`` with ``operation: 4`` (None for other ops or unknown codes)."""
        if self.type not in _NEURON_TYPES:
            return None
        code = self.params.get("operation", "").strip()
        return NEURON_OPERATIONS.get(int(code)) if code.isdigit() else None

    @property
    def op_label(self) -> str:
        """The op type reports show: ``Relu`` for ``ElementWiseNeuron`` code 4, ``Eltwise_Binary:DIVIDE`` for code 2,
        ``ElementWiseNeuron(op=12)`` for a code qc does not know (never guessed), else the dlc-info type."""
        code = self.params.get("operation", "").strip()
        if self.type in _NEURON_TYPES:
            return self.neuron_operation or f"{self.type}(op={code or '?'})"
        if self.type in _BINARY_TYPES:
            op = self.eltwise_operation
            return f"{self.type}:{op}" if op else f"{self.type}(op={code or '?'})"
        return self.type

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
