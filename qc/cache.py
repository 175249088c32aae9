"""On-disk stage cache: each stage's result lives under a key hashed from everything it depends on.

Two rules, enforced here rather than by each stage:

* **Key: content, never location.** :func:`stable_hash` renders its parts canonically; every :class:`~pathlib.Path`
  it meets (directly, in lists, dicts, dataclasses or pydantic models, which are dumped in python mode so their
  paths stay paths) contributes the sha256 of the file's bytes, or of a folder's content manifest (relative names
  and file hashes). Moving the same files elsewhere keeps the key; changing one byte of them changes it. A value
  it cannot render by content is a ``TypeError``, never ``str()`` of an object.
* **Entries: verified before use.** An entry is ``root/<stage>/<key>/``; :meth:`StageCache.commit` writes its
  ``result.json`` and then, last and atomically, ``manifest.json`` with the sha256 and size of every file in the
  entry. :meth:`StageCache.read` checks the manifest before anything is used: a missing manifest, a changed,
  missing or unlisted file, or a result that does not load is a :class:`CacheWarning` naming the entry and the file,
  and the stage is rebuilt (:meth:`StageCache.cached` is the one lock/read/build/commit helper every stage uses).
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import functools
import hashlib
import json
import logging
import math
import os
import shutil
import time
import warnings
import zipfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from qc import __version__, jsonio
from qc.errors import DataError, QcError

log = logging.getLogger(__name__)
T = TypeVar("T")

RESULT = "result.json"
MANIFEST = "manifest.json"
MANIFEST_FORMAT = "qc-cache-entry/1"


class CacheWarning(UserWarning):
    """A cache entry failed its integrity check (or did not load) and is being rebuilt."""


@functools.cache
def code_fingerprint() -> str:
    """sha256 of qc's own source: a change to the code that computes a stage invalidates its cached results."""
    h = hashlib.sha256(__version__.encode())
    package = Path(__file__).parent
    for path in sorted(package.rglob("*.py")):
        h.update(str(path.relative_to(package)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def sha256_file(path: Path) -> str:
    """The sha256 of a file's bytes, read now (never memoized: integrity checks must see the disk)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def content_fingerprint(path: Path) -> dict[str, str]:
    """What a path contributes to a cache key: its content, never its location.

    A file: the sha256 of its bytes. A folder: the sha256 of its manifest (every file below it, by relative
    POSIX name and sha256, sorted). A path that does not exist is a DataError (its content cannot be known).
    """
    from qc.data.images import file_sha256  # memoized per (path, size, mtime) for the process

    path = Path(path)
    if path.is_file():
        return {"file": file_sha256(path)}
    if path.is_dir():
        h = hashlib.sha256()
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(file.relative_to(path).as_posix().encode() + b"\0")
            h.update(file_sha256(file).encode() + b"\n")
        return {"folder": h.hexdigest()}
    raise DataError(f"{path}: not found; its content is part of a stage's cache key (expected a file or a folder).")


def canonical(value: Any) -> Any:
    """``value`` as plain JSON data for a cache key, with every Path replaced by its content fingerprint."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, Path):
        return {"content": content_fingerprint(value)}
    if isinstance(value, enum.Enum):
        return canonical(value.value)
    if isinstance(value, bytes):
        return {"bytes": hashlib.sha256(value).hexdigest()}
    from pydantic import BaseModel

    if isinstance(value, BaseModel):
        return canonical(value.model_dump(mode="python"))  # python mode: Path fields stay Paths
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return canonical({f.name: getattr(value, f.name) for f in dataclasses.fields(value)})
    if isinstance(value, Mapping):
        return {str(k): canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [canonical(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted((canonical(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item) and type(value).__module__ == "numpy":
        return canonical(item())
    raise TypeError(
        f"stable_hash: cannot render a {type(value).__module__}.{type(value).__qualname__} by content; pass its "
        "settings (a pydantic model, dict or list) or a Path to its file."
    )


def stable_hash(*parts: Any) -> str:
    """sha256 of the canonical rendering of ``parts`` (:func:`canonical`: Paths by content) and of qc's code."""
    text = json.dumps([code_fingerprint(), *(canonical(p) for p in parts)], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _entry_files(folder: Path) -> list[Path]:
    """The files of an entry (the manifest and hidden temporary files excluded), sorted."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and p.name != MANIFEST and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


LOAD_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    KeyError,
    IndexError,
    TypeError,
    ValueError,
    EOFError,
    zipfile.BadZipFile,
    QcError,
)
"""What loading a verified entry may still raise (a result written by another qc version, an unreadable array):
the entry is then rebuilt with a warning."""


class StageCache:
    """Files under ``root/<stage>/<key>/``; a file lock per entry makes it safe across pytest-xdist workers.

    With ``refresh_since`` (a UNIX time), entries committed before that moment are ignored and rebuilt once.
    ``hits``/``misses`` list ``stage/key`` per lookup; ``problems`` lists every integrity warning raised.
    """

    def __init__(self, root: Path, *, refresh_since: float | None = None) -> None:
        self.root = Path(root)
        self.refresh_since = refresh_since
        self.hits: list[str] = []
        self.misses: list[str] = []
        self.problems: list[str] = []

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

    # -- integrity ------------------------------------------------------------------------------------------
    def _warn(self, stage: str, key: str, folder: Path, problem: str) -> None:
        message = (
            f"qc cache entry {stage}/{key} ({folder}): {problem}; ignoring it and rebuilding the stage "
            "(a cache entry is used only when every file matches the sha256 recorded when it was written)."
        )
        self.problems.append(message)
        log.warning("%s", message)
        warnings.warn(message, CacheWarning, stacklevel=3)

    def verify(self, stage: str, key: str) -> str | None:
        """None when the entry is intact and fresh; else why not (``""``: simply absent or stale, no warning)."""
        folder = self.root / stage / key
        manifest = folder / MANIFEST
        files = _entry_files(folder) if folder.is_dir() else []
        if not manifest.is_file():
            return f"it has no {MANIFEST} (written incompletely, or not by this qc)" if files else ""
        if self.refresh_since is not None and manifest.stat().st_mtime < self.refresh_since:
            return ""
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
            recorded: dict[str, dict[str, Any]] = dict(data["files"])
            if data.get("format") != MANIFEST_FORMAT:
                return f"{MANIFEST} has format {data.get('format')!r}, expected {MANIFEST_FORMAT!r}"
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            return f"{MANIFEST} is unreadable ({type(exc).__name__}: {exc})"
        present = {p.relative_to(folder).as_posix(): p for p in files}
        for name, want in sorted(recorded.items()):
            path = present.get(name)
            if path is None:
                return f"file {name} is missing (recorded in {MANIFEST})"
            size = path.stat().st_size
            if size != want.get("size"):
                return f"file {name} has {size} bytes, {want.get('size')} were written"
            found = sha256_file(path)
            if found != want.get("sha256"):
                recorded_sha = str(want.get("sha256"))[:12]
                return f"file {name} changed since it was written (sha256 {found[:12]}..., recorded {recorded_sha}...)"
        extra = sorted(set(present) - set(recorded))
        if extra:
            return f"file(s) {extra} are not in {MANIFEST} (added after it was written)"
        return None

    def read(self, stage: str, key: str, load: Callable[[Any, Path], T | None]) -> T | None:
        """The entry's value (``load(result.json data, folder)``) when it verifies, else None (a miss).

        Call it while holding :meth:`locked`. A failed check or a load error is a :class:`CacheWarning` and None.
        """
        folder = self.root / stage / key
        problem = self.verify(stage, key)
        value: T | None = None
        if problem is None:
            try:
                value = load(jsonio.loads((folder / RESULT).read_text(encoding="utf-8")), folder)
                if value is None:
                    problem = "its files do not make a complete result"
            except LOAD_ERRORS as exc:
                problem = f"it does not load ({type(exc).__name__}: {exc})"
        if problem:
            self._warn(stage, key, folder, problem)
        if value is None:
            self.misses.append(f"{stage}/{key}")
            return None
        self.hits.append(f"{stage}/{key}")
        log.info("cache hit %s/%s", stage, key)
        return value

    def clear(self, stage: str, key: str) -> Path:
        """Empty the entry's folder (before a rebuild: nothing of a stale or tampered entry survives)."""
        folder = self.entry(stage, key)
        for child in folder.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
        return folder

    def commit(self, stage: str, key: str, data: Any) -> Path:
        """Write ``result.json`` and then the manifest of every file of the entry (atomically, last)."""
        folder = self.entry(stage, key)
        atomic_write_text(folder / RESULT, jsonio.dumps(data, indent=1))
        files = {
            p.relative_to(folder).as_posix(): {"sha256": sha256_file(p), "size": p.stat().st_size}
            for p in _entry_files(folder)
        }
        manifest = {
            "format": MANIFEST_FORMAT,
            "stage": stage,
            "key": key,
            "written": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "files": files,
        }
        atomic_write_text(folder / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))
        return folder / RESULT

    def cached(
        self, stage: str, key: str, build: Callable[[Path], tuple[T, Any]], load: Callable[[Any, Path], T | None]
    ) -> T:
        """The one cached-stage helper: under the entry's lock, the verified cached value, else
        ``build(folder) -> (value, json data)`` into the emptied folder, committed with its manifest."""
        with self.locked(stage, key):
            value = self.read(stage, key, load)
            if value is not None:
                return value
            folder = self.clear(stage, key)
            value, data = build(folder)
            self.commit(stage, key, data)
            return value

    # -- JSON-only entries ----------------------------------------------------------------------------------
    def load_json(self, stage: str, key: str, name: str = RESULT) -> Any | None:
        """The verified ``result.json`` of an entry, or None (call it while holding :meth:`locked`)."""
        if name != RESULT:
            raise ValueError(f"cache entries hold their JSON in {RESULT}, not {name!r}")
        return self.read(stage, key, lambda data, _folder: data)

    def save_json(self, stage: str, key: str, data: Any, name: str = RESULT) -> Path:
        if name != RESULT:
            raise ValueError(f"cache entries hold their JSON in {RESULT}, not {name!r}")
        return self.commit(stage, key, data)


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
