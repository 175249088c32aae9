"""A pool of devices leased exclusively, across threads and processes (e.g. pytest-xdist workers).

Each device has a lock file ``<lock_dir>/<name>.lock`` held with :class:`filelock.FileLock` (an OS-level
``flock``) for the whole lease; the OS releases it if the holding process dies.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from filelock import FileLock, Timeout

from qc.errors import DeviceError

__all__ = ["DeviceLease", "DevicePool"]

log = logging.getLogger("qc.device")

D = TypeVar("D")

_SAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class DeviceLease(Generic[D]):
    """A device held exclusively until the ``lease`` context exits."""

    name: str
    device: D
    lock_path: Path
    waited_s: float


class DevicePool(Generic[D]):
    """Lease one free device out of ``devices`` (name -> anything describing it, e.g. an SshConfig)."""

    def __init__(self, devices: Mapping[str, D], lock_dir: str | os.PathLike[str]) -> None:
        if not devices:
            raise DeviceError("A device pool needs at least one device.")
        self.devices = dict(devices)
        self.lock_dir = Path(lock_dir)
        self._rotation = itertools.count()

    def __repr__(self) -> str:
        return f"DevicePool({sorted(self.devices)!r}, lock_dir={str(self.lock_dir)!r})"

    def lock_path(self, name: str) -> Path:
        """The lock file of one device (name sanitised; a short hash keeps distinct names distinct)."""
        digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:8]
        return self.lock_dir / f"{_SAFE.sub('_', name)[:80]}-{digest}.lock"

    @contextmanager
    def lease(self, *, timeout_s: float, poll_s: float = 0.1, prefer: str | None = None) -> Iterator[DeviceLease[D]]:
        """Hold a free device for the duration of the ``with`` block.

        Tries every device without blocking (``prefer`` first, otherwise in rotating order), then waits
        ``poll_s`` and tries again until ``timeout_s`` has passed; then raises DeviceError naming them.
        """
        if timeout_s < 0:
            raise DeviceError(f"Lease timeout must not be negative, got {timeout_s!r} s.")
        try:
            self.lock_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DeviceError(f"Cannot create the device lock folder {self.lock_dir}: {exc.strerror}.") from None
        names = sorted(self.devices)
        start = time.monotonic()
        deadline = start + timeout_s
        while True:
            offset = next(self._rotation) % len(names)
            order = names[offset:] + names[:offset]
            if prefer is not None and prefer in self.devices:
                order.remove(prefer)
                order.insert(0, prefer)
            for name in order:
                lock = FileLock(str(self.lock_path(name)), thread_local=False)
                try:
                    lock.acquire(timeout=0, blocking=False)
                except Timeout:
                    continue
                except OSError as exc:
                    raise DeviceError(
                        f"Cannot lock device {name} via {self.lock_path(name)}: {exc.strerror or exc}."
                    ) from None
                waited = time.monotonic() - start
                log.debug("Leased device %s after %.2f s.", name, waited)
                try:
                    yield DeviceLease(
                        name=name, device=self.devices[name], lock_path=self.lock_path(name), waited_s=waited
                    )
                finally:
                    lock.release()
                return
            now = time.monotonic()
            if now >= deadline:
                raise DeviceError(
                    f"No device of the pool ({', '.join(names)}) became free within {timeout_s:g} s "
                    f"(locks in {self.lock_dir})."
                )
            time.sleep(min(poll_s, deadline - now))
