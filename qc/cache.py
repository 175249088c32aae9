"""On-disk stage cache: each stage's result lives under a key hashed from everything it depends on."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from qc import __version__, jsonio

log = logging.getLogger(__name__)


@functools.cache
def code_fingerprint() -> str:
    """sha256 of qc's own source: a change to the code that computes a stage invalidates its cached results."""
    h = hashlib.sha256(__version__.encode())
    package = Path(__file__).parent
    for path in sorted(package.rglob("*.py")):
        h.update(str(path.relative_to(package)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def stable_hash(*parts: Any) -> str:
    """sha256 of a canonical JSON rendering of ``parts`` (and of qc's code), objects rendered with ``str``."""
    text = json.dumps([code_fingerprint(), *parts], sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class StageCache:
    """Files under ``root/<stage>/<key>/``; a file lock per entry makes it safe across pytest-xdist workers.

    With ``refresh_since`` (a UNIX time), entries written before that moment are ignored and rebuilt once.
    """

    def __init__(self, root: Path, *, refresh_since: float | None = None) -> None:
        self.root = Path(root)
        self.refresh_since = refresh_since
        self.hits: list[str] = []
        self.misses: list[str] = []

    def entry(self, stage: str, key: str) -> Path:
        path = self.root / stage / key
        path.mkdir(parents=True, exist_ok=True)
        return path

    @contextmanager
    def locked(self, stage: str, key: str) -> Iterator[Path]:
        from filelock import FileLock

        path = self.entry(stage, key)
        with FileLock(str(path) + ".lock"):
            yield path

    def fresh(self, file: Path) -> bool:
        """True when ``file`` exists and was written after ``refresh_since``."""
        if not file.is_file():
            return False
        return self.refresh_since is None or file.stat().st_mtime >= self.refresh_since

    def load_json(self, stage: str, key: str, name: str = "result.json") -> Any | None:
        file = self.entry(stage, key) / name
        if not self.fresh(file):
            self.misses.append(f"{stage}/{key}")
            return None
        try:
            data = jsonio.loads(file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            log.warning("cache entry %s is unreadable; rebuilding it", file)
            self.misses.append(f"{stage}/{key}")
            return None
        self.hits.append(f"{stage}/{key}")
        log.info("cache hit %s/%s", stage, key)
        return data

    def save_json(self, stage: str, key: str, data: Any, name: str = "result.json") -> Path:
        file = self.entry(stage, key) / name
        atomic_write_text(file, jsonio.dumps(data, indent=1))
        return file


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
