"""Live progress of the stages (:mod:`qc.progress`) through pytest's terminal reporter.

Without xdist the stages report in this process, straight to the reporter. With ``-n N`` the workers write their
events as JSON lines (:class:`qc.progress.FileChannel`) into a folder the controller made and handed them through
``workerinput`` (as the run id); a thread of the controller follows the folder and shows the workers' progress.
On a terminal, one line is redrawn in place with every running model and stage, and each stage leaves one line when
it ends; elsewhere (CI logs) a plain line per stage every few seconds, plus its start and its end. ``-q`` silences
it (the workers are then given no folder and report nothing). The folder and the thread go at the end of the session.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import pytest

from qc import progress
from qc.progress import Event, FileChannel

WORKERINPUT_KEY = "qc_progress_dir"


class ReporterSink:
    """Shows :class:`qc.progress.Event` s through pytest's terminal reporter (any thread may call it)."""

    def __init__(
        self,
        reporter: Any,
        *,
        tty: bool,
        interval_s: float = 5.0,
        tty_interval_s: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
        uncaptured: Callable[[], AbstractContextManager[object]] = nullcontext,
    ) -> None:
        self.reporter = reporter
        self.uncaptured = uncaptured
        """Suspends pytest's output capture (active while a test runs) around each write."""
        self.tty = tty
        self.interval_s = interval_s
        self.tty_interval_s = tty_interval_s
        self.clock = clock
        self._active: dict[tuple[str, str], Event] = {}
        self._last: dict[tuple[str, str], float] = {}
        self._drawn = float("-inf")
        self._live = False
        self._width = 0  # the live line's width when drawn: another width means pytest wrote after it
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        with self._lock, self.uncaptured():
            if self.tty:
                self._on_tty(event)
            else:
                self._on_log(event)

    def _on_log(self, event: Event) -> None:
        key, now = (event.model, event.stage), self.clock()
        last = self._last.get(key)
        starting = event.done == 0 and not event.finished
        if not (starting or event.finished or last is None or now - last >= self.interval_s):
            return
        if event.finished:
            self._last.pop(key, None)
        else:
            self._last[key] = now
        self._fresh_line(live=False)
        self.reporter.write_line(event.line())

    def _on_tty(self, event: Event) -> None:
        key, now = (event.model, event.stage), self.clock()
        if event.finished:
            self._active.pop(key, None)
            self._put(event.line())
            self.reporter.write("\n", flush=True)
            self._live = False
            if self._active:
                self._draw(now)
            return
        self._active[key] = event
        if event.done == 0 or now - self._drawn >= self.tty_interval_s:
            self._draw(now)

    def _draw(self, now: float) -> None:
        self._put(" | ".join(e.line() for e in self._active.values()))
        self._live = True
        self._drawn = now

    def _put(self, text: str) -> None:
        """``text`` on the live line: a line of its own (after whatever pytest wrote), redrawn in place."""
        width = max(shutil.get_terminal_size((80, 24)).columns - 1, 20)
        if len(text) > width:
            text = text[: width - 1] + "…"
        self._fresh_line(live=self._live)
        self.reporter.rewrite(text, erase=True)
        self.reporter.flush()
        self._width = self._column()

    def _column(self) -> int:
        writer = getattr(self.reporter, "_tw", None)  # pytest's TerminalWriter knows the cursor's column
        return int(getattr(writer, "width_of_current_line", 0))

    def _fresh_line(self, *, live: bool) -> None:
        """Leave what pytest wrote on its line (a file's path and dots) and start below it."""
        if self.reporter.currentfspath:
            self.reporter.ensure_newline()
        elif self._column() and not (live and self._column() == self._width):
            self.reporter.write("\n")

    def close(self) -> None:
        """End a live line still on screen (a stage that never finished)."""
        with self._lock, self.uncaptured():
            if self._live:
                self.reporter.write("\n", flush=True)
                self._live = False
            self._active.clear()


class ProgressPlugin:
    """Registered by the qc plugin: installs the sink of this process (reporter, or a worker's file channel)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.sink: progress.Sink | None = None
        self.folder: Path | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
        if workerinput is not None:
            folder = workerinput.get(WORKERINPUT_KEY)
            if folder:  # the controller shows progress: write it where it follows
                worker = str(workerinput.get("workerid", "gw"))
                self.sink = FileChannel(progress.worker_channel_path(Path(folder), worker))
                progress.add_sink(self.sink)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        if hasattr(self.config, "workerinput") or self.config.option.verbose < 0:
            return
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None:
            return
        capture = self.config.pluginmanager.get_plugin("capturemanager")
        # a no-op when capture is not running (the xdist controller's follower thread, between tests)
        uncaptured = capture.global_and_fixture_disabled if capture is not None else nullcontext
        self.sink = ReporterSink(reporter, tty=bool(reporter.isatty), uncaptured=uncaptured)
        progress.add_sink(self.sink)

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        """xdist (controller): hand each worker the folder to write its progress into; follow it from a thread."""
        if not isinstance(self.sink, ReporterSink):
            return
        if self.folder is None:
            self.folder = Path(tempfile.mkdtemp(prefix="qc-progress-"))
            deliver = self.sink
            self._thread = threading.Thread(
                target=FileChannel.follow,
                args=(self.folder / "progress.jsonl", deliver, self._stop),
                name="qc-progress-follower",
                daemon=True,
            )
            self._thread.start()
        node.workerinput[WORKERINPUT_KEY] = str(self.folder)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.close()

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self.close()

    def close(self) -> None:
        """Deliver what the workers wrote last, stop the follower, remove the folder and the sink."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=30)
            self._thread = None
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None
        if self.sink is not None:
            progress.remove_sink(self.sink)
            if isinstance(self.sink, ReporterSink):
                self.sink.close()
            self.sink = None
