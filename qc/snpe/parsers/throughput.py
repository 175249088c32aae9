"""Throughput (FPS) from ``snpe-throughput-net-run`` and ``snpe-parallel-run``.

* ``snpe-throughput-net-run`` prints a ``[Thread i - runtime] N infs/sec - ...`` line per container and a
  ``Total throughput: N infs/sec`` line: the total is the figure (a loose ``infs/sec`` search grabs thread 0).
* ``snpe-parallel-run`` (Luxonis' own flow measures FPS with it) prints no total line; the figure is the first
  ``<float> infs/sec`` of its output, the rule of Luxonis' modelconverter benchmark.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from qc.errors import ParseError
from qc.snpe.parsers._common import _MAX_SHOWN, _NUM, _guarded, _number, _text_arg, _Where

__all__ = ["ThreadThroughput", "ThroughputResult", "parse_parallel_run", "parse_throughput"]


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
    tool: str = "snpe-throughput-net-run"
    """The tool whose output was read (``snpe-throughput-net-run`` or ``snpe-parallel-run``)."""


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


_PR_TOOL = "snpe-parallel-run"
_FIRST_RATE = re.compile(r"(?<![\w.])(\d+\.\d+|\d+)\s*infs/sec\b")


@_guarded(_PR_TOOL)
def parse_parallel_run(text: str) -> ThroughputResult:
    """FPS from ``snpe-parallel-run`` output: the first ``<float> infs/sec`` (Luxonis' rule).

    Output that holds a ``Total throughput:`` line is ``snpe-throughput-net-run``'s and is read by its rule.
    Raises ParseError when no rate is printed.
    """
    text = _text_arg(_PR_TOOL, text)
    if "Total throughput:" in text:
        return parse_throughput(text)
    where = _Where(_PR_TOOL)
    last = ""
    for lineno, line in enumerate(text.splitlines(), 1):
        where.at(lineno, line)
        if line.strip():
            last = line
        match = _FIRST_RATE.search(line)
        if match is not None:
            value = _number(where, match.group(1), "throughput")
            return ThroughputResult(total_infs_per_sec=value, threads=[], tool=_PR_TOOL)
    shown = last.strip()[:_MAX_SHOWN]
    raise ParseError(f"{_PR_TOOL}: no '<number> infs/sec' line found (last line: {shown!r})")
