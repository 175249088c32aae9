"""qc.pytest_plugin.progress: what the reporter sink writes on a terminal and in a log (a recording reporter)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from qc.progress import Event
from qc.pytest_plugin.progress import ReporterSink


@dataclass
class Writer:
    width_of_current_line: int = 0


@dataclass
class FakeReporter:
    """The part of pytest's TerminalReporter the sink uses, writing into ``text``."""

    text: str = ""
    currentfspath: Any = None
    _tw: Writer = field(default_factory=Writer)

    def _out(self, s: str) -> None:
        self.text += s
        tail = self.text.rsplit("\n", 1)[-1].rsplit("\r", 1)[-1]
        self._tw.width_of_current_line = len(tail)

    def ensure_newline(self) -> None:
        if self.currentfspath:
            self._out("\n")
            self.currentfspath = None

    def write_line(self, line: str) -> None:
        self.ensure_newline()
        self._out(line + "\n")

    def write(self, content: str, flush: bool = False) -> None:
        self._out(content)

    def rewrite(self, line: str, erase: bool = False) -> None:
        self._out("\r" + line)

    def flush(self) -> None:
        pass


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_log_lines_every_few_seconds_after_what_pytest_wrote() -> None:
    rep, clock = FakeReporter(text="benchmarks/test_similarity.py ", currentfspath="x"), Clock()
    rep._tw.width_of_current_line = 30
    sink = ReporterSink(rep, tty=False, interval_s=5.0, clock=clock)
    sink(Event("m", "compare", 0, 20, 0.0))
    for i in range(1, 20):
        clock.now = float(i)
        sink(Event("m", "compare", i, 20, clock.now))
    sink(Event("m", "compare", 20, 20, 20.0, finished=True))
    lines = rep.text.splitlines()
    assert lines[0] == "benchmarks/test_similarity.py "  # pytest's line is left as it was
    assert lines[1] == "m  compare  0/20"
    assert lines[-1].startswith("m  compare  20/20")
    assert lines[-1].endswith("done in 20s")
    assert len(lines) == 1 + 1 + 3 + 1  # start, at 5 s, 10 s, 15 s, end
    assert "\r" not in rep.text


def test_log_line_starts_below_xdist_dots() -> None:
    rep = FakeReporter()
    rep.write("..")  # the xdist controller writes result letters without a path
    ReporterSink(rep, tty=False)(Event("m", "quantize", 0, 3, 0.0))
    assert rep.text == "..\nm  quantize  0/3\n"


def test_tty_redraws_one_line_with_every_running_stage_and_keeps_finished_ones() -> None:
    rep, clock = FakeReporter(), Clock()
    sink = ReporterSink(rep, tty=True, tty_interval_s=0.0, clock=clock)
    sink(Event("a", "compare", 0, 4, 0.0))
    sink(Event("b", "quantize", 0, 3, 0.0))
    clock.now = 1.0
    sink(Event("a", "compare", 2, 4, 1.0))
    assert rep.text.rsplit("\r", 1)[-1].startswith("a  compare  2/4")
    assert " | b  quantize  0/3" in rep.text.rsplit("\r", 1)[-1]
    sink(Event("a", "compare", 4, 4, 2.0, finished=True))
    assert "\ra  compare  4/4  2.00/s  done in 2.0s\n" in rep.text
    assert rep.text.endswith("\rb  quantize  0/3")  # still running: redrawn alone
    sink.close()
    assert rep.text.endswith("\n")


def test_tty_starts_a_new_line_when_pytest_wrote_after_the_live_line() -> None:
    rep = FakeReporter()
    sink = ReporterSink(rep, tty=True, tty_interval_s=0.0)
    sink(Event("a", "compare", 0, 4, 0.0))
    rep.write(".")  # a result letter appended to the live line
    sink(Event("a", "compare", 1, 4, 1.0))
    assert rep.text == "\ra  compare  0/4.\n\ra  compare  1/4  1.00/s  ~3.0s left"
