"""Progress of long stages (quantize, calibrate, compare, profile, evaluate, diagnose), told to whoever listens.

Stages report through :func:`task`; they never know who shows it. A *sink* shows it: the CLI installs a terminal
sink (a redrawn line on a TTY, a plain line every few seconds in a log), the pytest plugin installs one that feeds
pytest's terminal reporter (through a file channel when the work runs on xdist workers). With no sink installed,
reporting costs a function call. Progress never changes a result or a cache key: nothing here is read back.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Event:
    """One step of one stage of one model; ``total`` is None when the length is unknown."""

    model: str
    stage: str
    done: int
    total: int | None
    elapsed_s: float
    finished: bool = False
    note: str = ""

    @property
    def rate(self) -> float | None:
        """Steps per second so far (None before the first step)."""
        return self.done / self.elapsed_s if self.done and self.elapsed_s > 0 else None

    @property
    def remaining_s(self) -> float | None:
        rate = self.rate
        if rate is None or self.total is None or self.finished:
            return None
        return max(self.total - self.done, 0) / rate

    def line(self) -> str:
        """``yolov3-tiny-int8  compare  12/50  1.8/s  ~21s left``: one line, no newline."""
        count = f"{self.done}/{self.total}" if self.total is not None else str(self.done)
        parts = [self.model, self.stage, count]
        rate = self.rate
        if rate is not None:
            parts.append(f"{rate:.2f}/s" if rate < 10 else f"{rate:.0f}/s")
        if self.finished:
            parts.append(f"done in {format_seconds(self.elapsed_s)}")
        else:
            left = self.remaining_s
            if left is not None:
                parts.append(f"~{format_seconds(left)} left")
        if self.note:
            parts.append(self.note)
        return "  ".join(parts)


def format_seconds(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s" if seconds >= 10 else f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


Sink = Callable[[Event], None]

_lock = threading.Lock()
_sinks: list[Sink] = []


def add_sink(sink: Sink) -> None:
    with _lock:
        _sinks.append(sink)


def remove_sink(sink: Sink) -> None:
    with _lock:
        if sink in _sinks:
            _sinks.remove(sink)


@contextmanager
def sink(s: Sink) -> Iterator[Sink]:
    """Install ``s`` for the duration of the block."""
    add_sink(s)
    try:
        yield s
    finally:
        remove_sink(s)


def _emit(event: Event) -> None:
    with _lock:
        listeners = list(_sinks)
    for listener in listeners:
        try:
            listener(event)
        except Exception:  # a broken display never breaks a stage
            remove_sink(listener)


@dataclass
class Task:
    """A running stage; :meth:`advance` after each step."""

    model: str
    stage: str
    total: int | None
    started: float = field(default_factory=time.monotonic)
    done: int = 0

    finished: bool = False

    def advance(self, steps: int = 1, note: str = "") -> None:
        self.done += steps
        _emit(Event(self.model, self.stage, self.done, self.total, time.monotonic() - self.started, note=note))

    def finish(self, note: str = "") -> None:
        """The stage's last event (once: a second call does nothing)."""
        if self.finished:
            return
        self.finished = True
        elapsed = time.monotonic() - self.started
        _emit(Event(self.model, self.stage, self.done, self.total, elapsed, finished=True, note=note))

    def each(self, items: Iterable[T]) -> Iterator[T]:
        """``items``, one :meth:`advance` after the consumer is done with each (when it asks for the next)."""
        for item in items:
            yield item
            self.advance()


def start(model: str, stage: str, total: int | None = None) -> Task:
    """A stage reported from here on (its start event is sent); the caller calls :meth:`Task.finish` at its end.

    For stages whose end is not a block (a reader onnxruntime drives); elsewhere use :func:`task`.
    """
    t = Task(model, stage, total)
    _emit(Event(model, stage, 0, total, 0.0))
    return t


@contextmanager
def task(model: str, stage: str, total: int | None = None) -> Iterator[Task]:
    """Report a stage: an event when it starts, one per :meth:`Task.advance`, and one when it ends."""
    t = start(model, stage, total)
    try:
        yield t
    finally:
        t.finish()


class LineSink:
    """Shows events on a text stream.

    On a terminal, one line is redrawn in place (carriage return) at most every ``tty_interval_s``; elsewhere (CI
    logs, files) a plain line is written per stage at most every ``interval_s`` seconds, plus its start and end.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        tty: bool | None = None,
        interval_s: float = 5.0,
        tty_interval_s: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)()) if tty is None else tty
        self.interval_s = tty_interval_s if self.tty else interval_s
        self.clock = clock
        self._last: dict[tuple[str, str], float] = {}
        self._width = 0
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        key = (event.model, event.stage)
        now = self.clock()
        starting = event.done == 0 and not event.finished
        with self._lock:
            last = self._last.get(key)
            if not (starting or event.finished or last is None or now - last >= self.interval_s):
                return
            self._last[key] = now
            if event.finished:
                self._last.pop(key, None)
            text = event.line()
            if self.tty:
                pad = " " * max(self._width - len(text), 0)
                self.stream.write("\r" + text + pad + ("\n" if event.finished else ""))
                self._width = 0 if event.finished else len(text)
            else:
                self.stream.write(text + "\n")
            self.stream.flush()


class FileChannel:
    """Events as JSON lines in a file: how xdist workers hand their progress to the controller, which reads them."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        line = json.dumps(asdict(event), separators=(",", ":")) + "\n"
        with self._lock, open(self.path, "a", encoding="utf-8") as f:
            f.write(line)

    @staticmethod
    def follow(path: Path, deliver: Sink, stop: threading.Event, poll_s: float = 0.5) -> None:
        """Deliver each event appended to ``path`` (and to files beside it with the same suffix) until ``stop``."""
        offsets: dict[Path, int] = {}
        folder, suffix = path.parent, path.suffix or ".jsonl"
        while True:
            stopping = stop.is_set()
            for file in sorted(folder.glob(f"*{suffix}")):
                try:
                    size = file.stat().st_size
                except OSError:
                    continue
                start = offsets.get(file, 0)
                if size <= start:
                    continue
                with open(file, encoding="utf-8") as f:
                    f.seek(start)
                    chunk = f.read(size - start)
                complete, _, _rest = chunk.rpartition("\n")
                if not complete:
                    continue
                offsets[file] = start + len(complete.encode("utf-8")) + 1
                for raw in complete.splitlines():
                    try:
                        deliver(Event(**json.loads(raw)))
                    except (ValueError, TypeError):
                        continue
            if stopping:
                return
            stop.wait(poll_s)


def worker_channel_path(folder: Path, worker: str) -> Path:
    """The file one worker writes its events to (``folder`` is shared by the run's workers and its controller)."""
    return Path(folder) / f"progress-{worker}-{os.getpid()}.jsonl"


class TqdmSink:
    """Progress bars on a terminal (tqdm): one bar per running model and stage, left on screen when it ends."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self._bars: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        from tqdm import tqdm  # type: ignore[import-untyped]

        key = (event.model, event.stage)
        with self._lock:
            bar = self._bars.get(key)
            if bar is None:
                sized = min(_size(self.stream)) > 0  # a terminal that reports no size (0 x 0): 80 x 24
                bar = tqdm(
                    total=event.total,
                    desc=f"{event.model}  {event.stage}",
                    file=self.stream,
                    dynamic_ncols=sized,
                    ncols=None if sized else 80,
                    nrows=None if sized else 24,
                )
                self._bars[key] = bar
            if event.note:
                bar.set_postfix_str(event.note, refresh=False)
            if event.done != bar.n:
                bar.update(event.done - bar.n)
            if event.finished:
                bar.close()
                del self._bars[key]

    def close(self) -> None:
        """Close the bars of stages that never finished (an error ended them)."""
        with self._lock:
            for bar in self._bars.values():
                bar.close()
            self._bars.clear()


def _size(stream: TextIO) -> tuple[int, int]:
    try:
        size = os.get_terminal_size(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return 0, 0
    return size.columns, size.lines


@contextmanager
def terminal(stream: TextIO | None = None, *, quiet: bool = False) -> Iterator[None]:
    """Show progress on ``stream`` (stderr) for the block: tqdm bars on a terminal, a plain line every few seconds
    elsewhere (CI logs), nothing with ``quiet``."""
    if quiet:
        yield
        return
    out = stream if stream is not None else sys.stderr
    if bool(getattr(out, "isatty", lambda: False)()):
        bars = TqdmSink(out)
        try:
            with sink(bars):
                yield
        finally:
            bars.close()
    else:
        with sink(LineSink(out, tty=False)):
            yield
