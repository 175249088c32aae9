"""qc.progress: events, the line sink on a terminal and in a log, and the file channel of xdist workers."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import numpy as np
import pytest

from qc import progress
from qc.progress import Event, FileChannel, LineSink, format_seconds


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_event_line_has_count_rate_and_time_left() -> None:
    e = Event("m", "compare", 12, 50, 6.0)
    assert e.line() == "m  compare  12/50  2.00/s  ~19s left"
    done = Event("m", "compare", 50, 50, 25.0, finished=True)
    assert done.line() == "m  compare  50/50  2.00/s  done in 25s"
    assert Event("m", "quantize", 0, None, 0.0).line() == "m  quantize  0"


@pytest.mark.parametrize(("seconds", "text"), [(0.4, "0.4s"), (12.2, "12s"), (75, "1m15s"), (7300, "2h01m")])
def test_format_seconds(seconds: float, text: str) -> None:
    assert format_seconds(seconds) == text


def test_task_reports_start_steps_and_end() -> None:
    seen: list[Event] = []
    with progress.sink(seen.append), progress.task("m", "calibrate", 3) as t:
        for _ in range(3):
            t.advance()
    assert [(e.done, e.finished) for e in seen] == [(0, False), (1, False), (2, False), (3, False), (3, True)]
    assert all(e.total == 3 for e in seen)


def test_no_sink_after_the_block() -> None:
    seen: list[Event] = []
    with progress.sink(seen.append):
        pass
    with progress.task("m", "x", 1) as t:
        t.advance()
    assert seen == []


def test_a_broken_sink_is_dropped_and_the_stage_goes_on() -> None:
    def broken(_: Event) -> None:
        raise RuntimeError("display gone")

    progress.add_sink(broken)
    with progress.task("m", "x", 2) as t:
        t.advance()
        t.advance()
    assert t.done == 2
    progress.remove_sink(broken)


def test_log_sink_writes_plain_lines_every_few_seconds() -> None:
    out, clock = io.StringIO(), Clock()
    sink = LineSink(out, tty=False, interval_s=5.0, clock=clock)
    sink(Event("m", "compare", 0, 100, 0.0))
    for i in range(1, 100):
        clock.now = i * 0.5  # a step every half second: 50 s in all
        sink(Event("m", "compare", i, 100, clock.now))
    sink(Event("m", "compare", 100, 100, 50.0, finished=True))
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert lines[0].startswith("m  compare  0/100")
    assert lines[-1].endswith("done in 50s")
    assert 9 <= len(lines) <= 13  # start, one line per 5 s, end


def test_tty_sink_redraws_one_line() -> None:
    out, clock = io.StringIO(), Clock()
    sink = LineSink(out, tty=True, tty_interval_s=0.0, clock=clock)
    for i in range(3):
        clock.now = float(i)
        sink(Event("m", "compare", i, 3, float(i)))
    sink(Event("m", "compare", 3, 3, 3.0, finished=True))
    text = out.getvalue()
    assert text.count("\r") == 4
    assert text.count("\n") == 1
    assert text.endswith("done in 3.0s\n")


def test_file_channel_carries_events_to_the_controller(tmp_path: Path) -> None:
    got: list[Event] = []
    stop = threading.Event()
    a = FileChannel(progress.worker_channel_path(tmp_path, "gw0"))
    b = FileChannel(tmp_path / "progress-gw1-1.jsonl")
    reader = threading.Thread(target=FileChannel.follow, args=(a.path, got.append, stop, 0.01))
    reader.start()
    a(Event("m1", "compare", 1, 4, 1.0))
    b(Event("m2", "quantize", 0, None, 0.0))
    a(Event("m1", "compare", 4, 4, 2.0, finished=True))
    stop.set()
    reader.join(timeout=10)
    assert not reader.is_alive()
    assert sorted((e.model, e.done, e.finished) for e in got) == [("m1", 1, False), ("m1", 4, True), ("m2", 0, False)]


def test_each_advances_once_the_consumer_is_done_with_an_item() -> None:
    seen: list[Event] = []
    with progress.sink(seen.append), progress.task("m", "evaluate", 3) as t:
        for item in t.each(["a", "b", "c"]):
            assert t.done == "abc".index(item)  # not counted while it is being processed
    assert [e.done for e in seen] == [0, 1, 2, 3, 3]
    assert seen[-1].finished


def test_start_then_finish_once() -> None:
    seen: list[Event] = []
    with progress.sink(seen.append):
        t = progress.start("m", "calibrate", 2)
        t.advance()
        t.finish()
        t.finish()
    assert [(e.done, e.finished) for e in seen] == [(0, False), (1, False), (1, True)]


def test_tqdm_sink_draws_a_bar_per_model_and_stage() -> None:
    out = io.StringIO()
    bars = progress.TqdmSink(out)
    bars(Event("m", "compare", 0, 4, 0.0))
    bars(Event("m", "quantize", 0, 3, 0.0))
    bars(Event("m", "compare", 2, 4, 1.0, note="batch 1"))
    bars(Event("m", "compare", 4, 4, 2.0, finished=True))
    bars.close()  # the quantize bar never finished: closed, not left open
    text = out.getvalue()
    assert "m  compare" in text
    assert "4/4" in text
    assert "batch 1" in text
    assert "m  quantize" in text


def test_terminal_is_plain_lines_off_a_terminal_and_nothing_when_quiet() -> None:
    out = io.StringIO()
    with progress.terminal(out), progress.task("m", "profile", 2) as t:
        t.advance()
        t.advance()
    lines = out.getvalue().splitlines()
    assert lines[0] == "m  profile  0/2"
    assert lines[-1].startswith("m  profile  2/2")
    assert "done in" in lines[-1]
    assert "\r" not in out.getvalue()
    quiet = io.StringIO()
    with progress.terminal(quiet, quiet=True), progress.task("m", "profile", 1) as t:
        t.advance()
    assert quiet.getvalue() == ""


def test_calibration_reader_reports_n_of_total() -> None:
    from qc.runners.quantize import _Reader

    seen: list[Event] = []
    feeds = [{"x": np.zeros(1)} for _ in range(3)]
    with progress.sink(seen.append):
        reader = _Reader(feeds, "m", 3)
        while reader.get_next() is not None:
            pass
        assert reader.get_next() is None  # asked again after the end: no more events
        reader.close()
    assert [(e.stage, e.done, e.total, e.finished) for e in seen] == [
        ("calibrate", 0, 3, False),
        ("calibrate", 1, 3, False),
        ("calibrate", 2, 3, False),
        ("calibrate", 3, 3, False),
        ("calibrate", 3, 3, True),
    ]
    assert reader.count == 3
