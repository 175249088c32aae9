"""Parsers for the text and CSV that SNPE tools print, one module per tool.

Every parser treats its input as untrusted and raises only :class:`qc.errors.ParseError`, whose message names the
tool and shows the offending line. The formats each one reads, per SDK version, are proven by the hand-written
fixtures under ``tests/fake_snpe/formats/<version>/`` (see its README):

* :mod:`.throughput` - ``snpe-throughput-net-run`` (``Total throughput:``) and ``snpe-parallel-run`` (first rate).
* :mod:`.diagview` - ``snpe-diagview`` per-layer times, text (SNPE 2.x and QAIRT 2.3x layouts) and CSV v2.
* :mod:`.dlcinfo` - ``snpe-dlc-info`` layer table, encodings, I/O tables, ``operation:`` codes.
* :mod:`.netrun` - ``snpe-net-run``: the folder ``--debug`` could not write to; the inputs each execution read.
"""

from __future__ import annotations

from qc.snpe.parsers.diagview import (
    LayerTime,
    LayerTimes,
    NetworkStat,
    io_kind,
    parse_diagview_csv,
    parse_diagview_text,
)
from qc.snpe.parsers.dlcinfo import (
    ELTWISE_OPERATIONS,
    NEURON_OPERATIONS,
    ChannelEncoding,
    DlcInfo,
    DlcIoTensor,
    DlcLayer,
    DlcTensor,
    DlcTotals,
    Encoding,
    parse_dlc_info_csv,
    parse_dlc_info_text,
    parse_encoding,
)
from qc.snpe.parsers.netrun import ProcessedInputs, parse_failed_write, parse_processed_inputs
from qc.snpe.parsers.throughput import ThreadThroughput, ThroughputResult, parse_parallel_run, parse_throughput

__all__ = [
    "ELTWISE_OPERATIONS",
    "NEURON_OPERATIONS",
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
    "ProcessedInputs",
    "ThreadThroughput",
    "ThroughputResult",
    "io_kind",
    "parse_diagview_csv",
    "parse_diagview_text",
    "parse_dlc_info_csv",
    "parse_dlc_info_text",
    "parse_encoding",
    "parse_failed_write",
    "parse_parallel_run",
    "parse_processed_inputs",
    "parse_throughput",
]
