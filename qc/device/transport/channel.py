"""paramiko channel plumbing shared by SSH commands and SSH transfers (internal to the transport package).

Nothing here imports paramiko at module level: ``import qc.device`` must stay free of it. paramiko's own types
are only named in annotations, and :func:`lost_errors` imports it when an SSH operation is already under way.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import tarfile
import time
from typing import TYPE_CHECKING

from qc.device.transport.protocol import Progress
from qc.errors import DeviceError

if TYPE_CHECKING:
    import paramiko

CHUNK = 256 * 1024
NETWORK_ERRNOS = frozenset(
    {errno.ECONNRESET, errno.ECONNABORTED, errno.EPIPE, errno.ENOTCONN, errno.ETIMEDOUT, errno.EHOSTUNREACH}
)


class ConnectionLostError(Exception):
    """The SSH connection died under an operation. ``started``: the remote side may have acted already."""

    def __init__(self, what: str, *, started: bool) -> None:
        super().__init__(what)
        self.started = started


class UnreachableError(DeviceError):
    """The device did not answer (refused, timed out, no route)."""


class DeadlineExceededError(Exception):
    """Raised inside an operation when its total deadline has passed (turned into a DeviceError by the caller)."""


@functools.cache
def lost_errors() -> tuple[type[Exception], ...]:
    """Exceptions that may mean the connection died (paramiko's, EOF, socket errors)."""
    import paramiko

    return (paramiko.SSHException, EOFError, OSError)


@functools.cache
def kill_errors() -> tuple[type[Exception], ...]:
    """What may go wrong while killing a timed-out command (each just means: it could not be killed)."""
    return (DeviceError, ConnectionLostError, *lost_errors())


@functools.cache
def tar_or_lost_errors() -> tuple[type[Exception], ...]:
    return (tarfile.TarError, *lost_errors())


class ChannelWriter:
    """A write-only file object over an exec channel's stdin (for tarfile), with a total deadline."""

    def __init__(self, chan: paramiko.Channel, deadline: float, io_timeout: float, progress: Progress | None) -> None:
        self.chan = chan
        self.deadline = deadline
        self.io_timeout = io_timeout
        self.progress = progress
        self.sent = 0
        self.stderr: list[bytes] = []

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        while view:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise DeadlineExceededError
            drain_stderr(self.chan, self.stderr)
            self.chan.settimeout(min(self.io_timeout, remaining))
            try:
                n = self.chan.send(bytes(view[:CHUNK]))
            except TimeoutError:
                if time.monotonic() >= self.deadline:
                    raise DeadlineExceededError from None
                raise
            if n <= 0:
                raise OSError(errno.EPIPE, "the remote side closed the channel")
            view = view[n:]
            self.sent += n
            if self.progress is not None:
                self.progress(self.sent)
        return len(data)

    def flush(self) -> None:
        pass


class ChannelReader:
    """A read-only file object over an exec channel's stdout (for tarfile), with a total deadline."""

    def __init__(self, chan: paramiko.Channel, deadline: float, io_timeout: float, progress: Progress | None) -> None:
        self.chan = chan
        self.deadline = deadline
        self.io_timeout = io_timeout
        self.progress = progress
        self.received = 0
        self.stderr: list[bytes] = []

    def read(self, size: int = -1) -> bytes:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise DeadlineExceededError
        drain_stderr(self.chan, self.stderr)
        self.chan.settimeout(min(self.io_timeout, remaining))
        try:
            data: bytes = self.chan.recv(CHUNK if size is None or size < 0 else max(1, min(size, CHUNK)))
        except TimeoutError:
            if time.monotonic() >= self.deadline:
                raise DeadlineExceededError from None
            raise
        self.received += len(data)
        if self.progress is not None and data:
            self.progress(self.received)
        return data


def close_quietly(chan: paramiko.Channel) -> None:
    with contextlib.suppress(Exception):
        chan.close()


def has_exit_status(chan: paramiko.Channel) -> bool:
    """Whether the server sent an exit status (paramiko's exit_status_ready() is also true once closed)."""
    return chan.status_event.is_set() and chan.exit_status != -1


def drain_stderr(chan: paramiko.Channel, sink: list[bytes], limit: int = 1 << 20) -> None:
    while chan.recv_stderr_ready():
        data = chan.recv_stderr(CHUNK)
        if not data:
            return
        if sum(len(c) for c in sink) < limit:
            sink.append(data)


class DeadlinePassedError(DeviceError):
    """The DeviceError of an operation that outlived its total deadline (its message says what was done)."""
