"""The life of a report folder: one run at a time (a file lock), and what a new run keeps of the previous one.

The rule (documented in the README):

- **One run at a time.** A run locks ``<report_dir>/.qc.lock`` for its whole duration; a second run into the same
  folder fails at its start, naming the holder's run id and pid.
- **A run replaces the previous run's results.** Under the lock, a new run removes what the previous run left
  (``models/``, ``summary.csv``, ``patterns.csv``, ``index.html``, ``junit.xml``, ``run.json``) so that every
  file in the folder describes the same run; a summary.csv never mixes models of two runs.
- **History accumulates.** ``history.sqlite`` gets one run appended per run, and ``durations.json`` keeps every
  test's last measured duration (the input of shard planning).
- To combine the shards of one run into one folder, use ``qc merge`` (:mod:`qc.report.merge`); to keep several
  runs' reports side by side, give each its own report folder.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import shutil
import socket
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from qc.cache import atomic_write_text
from qc.errors import ConfigError, DataError
from qc.report import paths

RESULT_FILES = (paths.SUMMARY, paths.PATTERNS, paths.DASHBOARD, paths.JUNIT, paths.RUN_INFO)
"""Run-level files a new run removes (with ``models/``): they describe one run only."""


class FolderError(ConfigError):
    """The report folder cannot be used: not writable, or locked by another run."""


@dataclass
class FolderRun:
    """Identity of the run that owns a report folder, written to ``run.json``."""

    run_id: str
    run_group: str
    """Runs that belong together (the shards of one CI run share it); a lone run's group is its own id."""
    started: str
    git_commit: str | None
    pid: int = field(default_factory=os.getpid)
    host: str = field(default_factory=socket.gethostname)
    shard: str | None = None
    """``group/splits`` under pytest-split, else None."""
    finished: str | None = None
    models: list[str] = field(default_factory=list)
    tests: dict[str, float] = field(default_factory=dict)
    """Seconds per test id measured in this run (setup + call + teardown)."""
    settings: dict[str, Any] = field(default_factory=dict)
    """Per model, the settings its dashboard page shows."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def read(cls, folder: Path) -> FolderRun:
        path = Path(folder) / paths.RUN_INFO
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataError(f"{path}: missing; {folder} is not the report folder of a qc run.") from None
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: unreadable run identity: {exc}.") from None
        if not isinstance(data, dict) or not isinstance(data.get("run_id"), str):
            raise DataError(f"{path}: expected an object with 'run_id', found {type(data).__name__}.")
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})

    def write(self, folder: Path) -> Path:
        path = Path(folder) / paths.RUN_INFO
        atomic_write_text(path, json.dumps(self.to_json(), indent=1, sort_keys=True) + "\n")
        return path


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


class ReportFolder:
    """A report folder held by one run: made, checked writable, locked, and cleared of the previous run's results."""

    def __init__(self, root: Path, run: FolderRun) -> None:
        self.root = Path(root)
        self.run = run
        self._lock = FileLock(str(self.root / paths.LOCK), timeout=0)

    def open(self, *, clear: bool = True) -> ReportFolder:
        """Make the folder, check it is writable, take the lock, clear the previous results (``clear``).

        Raises FolderError naming the folder and what failed (not writable, or held by another run)."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FolderError(f"report folder {self.root}: cannot create it: {exc.strerror or exc}.") from None
        probe = self.root / f".qc-write-test-{os.getpid()}"
        try:
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise FolderError(
                f"report folder {self.root}: not writable (creating {probe.name} failed: {exc.strerror or exc}); "
                "choose another --qc-report-dir or fix its permissions."
            ) from None
        try:
            self._lock.acquire()
        except Timeout:
            raise FolderError(
                f"report folder {self.root} is in use by {self._holder()}; wait for that run to "
                "finish or choose another --qc-report-dir."
            ) from None
        except OSError as exc:
            raise FolderError(f"report folder {self.root}: cannot lock {paths.LOCK}: {exc.strerror or exc}.") from None
        try:
            atomic_write_text(self.root / paths.LOCK_INFO, json.dumps(self._holder_info()) + "\n")
            if clear:
                clear_results(self.root)
            self.run.write(self.root)
        except BaseException:
            self._lock.release()
            raise
        return self

    def _holder_info(self) -> dict[str, Any]:
        return {"run_id": self.run.run_id, "pid": self.run.pid, "host": self.run.host, "started": self.run.started}

    def _holder(self) -> str:
        try:
            info = json.loads((self.root / paths.LOCK_INFO).read_text(encoding="utf-8"))
            return f"run {info['run_id']} (pid {info['pid']} on {info['host']}, started {info['started']})"
        except (OSError, ValueError, KeyError, TypeError):
            return "another run (its identity could not be read)"

    def finish(self) -> None:
        """Record the end of the run in ``run.json``."""
        self.run.finished = now_iso()
        self.run.write(self.root)

    def release(self) -> None:
        if self._lock.is_locked:
            # the lock itself is what counts; a stale holder note is overwritten by the next run
            with contextlib.suppress(OSError):
                (self.root / paths.LOCK_INFO).unlink(missing_ok=True)
            self._lock.release()


def clear_results(root: Path) -> None:
    """Remove the previous run's results, only from a folder a qc run wrote (it has ``run.json``)."""
    root = Path(root)
    if not (root / paths.RUN_INFO).is_file():
        return
    if (root / paths.MODELS_DIR).is_dir():
        shutil.rmtree(root / paths.MODELS_DIR)
    for name in RESULT_FILES:
        (root / name).unlink(missing_ok=True)


def read_durations(root: Path) -> dict[str, float]:
    """``durations.json`` of a report folder (test id -> seconds); empty when absent."""
    path = Path(root) / paths.DURATIONS
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable durations: {exc}.") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected an object of test id -> seconds, found {type(data).__name__}.")
    return {str(k): float(v) for k, v in data.items() if isinstance(v, int | float)}


def write_durations(root: Path, durations: dict[str, float]) -> Path:
    path = Path(root) / paths.DURATIONS
    atomic_write_text(path, json.dumps(dict(sorted(durations.items())), indent=1) + "\n")
    return path
