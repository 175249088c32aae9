"""Run commands and move files on a device: over SSH (paramiko) or on this machine.

Both transports share one contract, :class:`Transport`:

* ``run`` takes an argv list (every item is shell-quoted with :func:`shlex.quote`) or a shell command
  string (passed to the remote shell verbatim: the caller quotes), and enforces a TOTAL deadline: when it
  passes, the whole process group of the command is killed and :class:`qc.errors.DeviceError` is raised.
* ``put``/``get`` move one file; ``put_tree``/``get_tree`` move a folder as ONE tar stream. A file is only
  ever accepted at its final path after its size has been checked: a broken transfer leaves no partial file.

Secrets (passwords, key passphrases) are only ever read from environment variables or a ``.env`` file named in
:class:`SshConfig`; they never appear in logs, reprs or exception texts.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import logging
import os
import posixpath
import re
import select
import shlex
import shutil
import signal
import stat
import subprocess
import tarfile
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Protocol, TypeVar, runtime_checkable

import paramiko
from dotenv import dotenv_values

from qc.errors import DeviceError

__all__ = [
    "Command",
    "CommandResult",
    "LocalTransport",
    "Progress",
    "SshConfig",
    "SshTransport",
    "Transport",
    "build_shell_command",
    "quote_remote_path",
]

log = logging.getLogger("qc.device")

Command = str | Sequence[str]
"""A command: an argv list (quoted for the shell by qc) or a shell command string (used verbatim)."""

Progress = Callable[[int], None]
"""Called with the number of bytes moved so far."""

T = TypeVar("T")

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PID_MARK = "__qc_pid__="
_CHUNK = 256 * 1024
_MAX_CMD_SHOWN = 200


@dataclass(frozen=True)
class CommandResult:
    """Outcome of one command. ``rc`` is -1 when the remote side sent no exit status (killed by a signal)."""

    rc: int
    stdout: str
    stderr: str
    duration_s: float

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def check(self, what: str = "command") -> CommandResult:
        """Return self, or raise DeviceError naming ``what``, the exit status and the last stderr line."""
        if self.rc != 0:
            tail = _last_line(self.stderr) or _last_line(self.stdout) or "no output"
            raise DeviceError(f"{what} failed with exit status {self.rc}: {tail}")
        return self


@runtime_checkable
class Transport(Protocol):
    """How qc talks to a device. Implementations: :class:`SshTransport`, :class:`LocalTransport`."""

    def run(
        self,
        command: Command,
        *,
        deadline_s: float,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        idempotent: bool = False,
        check: bool = False,
    ) -> CommandResult: ...

    def put(
        self,
        local: str | os.PathLike[str],
        remote: str,
        *,
        deadline_s: float | None = None,
        progress: Progress | None = None,
    ) -> None: ...

    def get(
        self,
        remote: str,
        local: str | os.PathLike[str],
        *,
        deadline_s: float | None = None,
        progress: Progress | None = None,
    ) -> None: ...

    def put_tree(
        self,
        local_dir: str | os.PathLike[str],
        remote_dir: str,
        *,
        deadline_s: float | None = None,
        progress: Progress | None = None,
    ) -> None: ...

    def get_tree(
        self,
        remote_dir: str,
        local_dir: str | os.PathLike[str],
        *,
        deadline_s: float | None = None,
        progress: Progress | None = None,
    ) -> None: ...

    def close(self) -> None: ...


# ----------------------------------------------------------------------------------------------------
# Shell helpers


def quote_remote_path(path: str) -> str:
    """Quote one remote path for a POSIX shell (refuses NUL bytes, which no path can hold)."""
    if "\x00" in path:
        raise DeviceError(f"Remote path {path!r} contains a NUL byte.")
    return shlex.quote(path)


def _command_text(command: Command) -> str:
    if isinstance(command, str):
        return command
    argv = list(command)
    if not argv:
        raise DeviceError("Cannot run an empty argv list.")
    for item in argv:
        if not isinstance(item, str):
            raise DeviceError(f"argv items must be strings, got {type(item).__name__} in {argv!r}.")
        if "\x00" in item:
            raise DeviceError(f"argv item {item!r} contains a NUL byte.")
    return shlex.join(argv)


def build_shell_command(command: Command, *, env: Mapping[str, str] | None = None, cwd: str | None = None) -> str:
    """The POSIX shell text that runs ``command`` in ``cwd`` with ``env`` exported (all values quoted)."""
    parts: list[str] = []
    if cwd is not None:
        parts.append(f"cd -- {quote_remote_path(cwd)}")
    if env:
        assignments = []
        for key, value in env.items():
            if not _ENV_NAME.match(key):
                raise DeviceError(f"Invalid environment variable name {key!r}.")
            if "\x00" in value:
                raise DeviceError(f"Environment variable {key} contains a NUL byte.")
            assignments.append(f"{key}={shlex.quote(value)}")
        parts.append("export " + " ".join(assignments))
    text = _command_text(command)
    if isinstance(command, str):
        text = "{ " + text + "\n}"
    parts.append(text)
    return " && ".join(parts)


def _shown(command: Command) -> str:
    text = command if isinstance(command, str) else shlex.join(str(a) for a in command)
    text = " ".join(text.split())
    return text if len(text) <= _MAX_CMD_SHOWN else text[: _MAX_CMD_SHOWN - 3] + "..."


def _last_line(text: str) -> str:
    for line in reversed(text.strip().splitlines()):
        if line.strip():
            return line.strip()[:300]
    return ""


def _decode(chunks: list[bytes]) -> str:
    return b"".join(chunks).decode("utf-8", errors="replace")


def _strip_pid_line(stderr: str) -> tuple[str, int | None]:
    """Remove the pid marker line that qc's wrapper prints first; return (stderr, pid)."""
    pid: int | None = None
    kept: list[str] = []
    for line in stderr.splitlines(keepends=True):
        if pid is None and line.startswith(_PID_MARK):
            with contextlib.suppress(ValueError):
                pid = int(line[len(_PID_MARK) :].strip())
                continue
        kept.append(line)
    return "".join(kept), pid


def _deadline_from(deadline_s: float | None, default_s: float) -> float:
    value = default_s if deadline_s is None else deadline_s
    if not value > 0:
        raise DeviceError(f"A deadline must be positive, got {value!r} s.")
    return time.monotonic() + value


# ----------------------------------------------------------------------------------------------------
# Local file helpers shared by both transports


def _local_files(local_dir: Path) -> tuple[list[str], list[tuple[str, Path, int]]]:
    """Relative folders and (relative path, absolute path, size) of the regular files below ``local_dir``.

    Symlinks to files are followed (their target is sent); symlinked folders are not descended into.
    """
    if not local_dir.is_dir():
        raise DeviceError(f"Local folder {local_dir} does not exist or is not a folder.")
    dirs: list[str] = []
    files: list[tuple[str, Path, int]] = []
    for root, dirnames, filenames in os.walk(local_dir):
        rel_root = Path(root).relative_to(local_dir)
        dirnames.sort()
        for name in dirnames:
            full = Path(root) / name
            if not full.is_symlink():
                dirs.append((rel_root / name).as_posix())
        for name in sorted(filenames):
            full = Path(root) / name
            try:
                st = full.stat()
            except OSError:
                continue  # dangling symlink
            if stat.S_ISREG(st.st_mode):
                files.append(((rel_root / name).as_posix(), full, st.st_size))
    return dirs, files


def _tmp_sibling(path: Path) -> Path:
    return path.with_name(f".{path.name}.qc-part-{uuid.uuid4().hex[:12]}")


def _merge_tree(staging: Path, target: Path) -> None:
    """Move every file of ``staging`` to the same relative path below ``target`` (replacing files)."""
    target.mkdir(parents=True, exist_ok=True)
    for root, _dirnames, filenames in os.walk(staging):
        rel = Path(root).relative_to(staging)
        (target / rel).mkdir(parents=True, exist_ok=True)
        for name in filenames:
            os.replace(Path(root) / name, target / rel / name)


def _check_tree_sizes(where: str, folder: Path, expected: Mapping[str, int]) -> None:
    for rel, size in expected.items():
        path = folder / rel
        try:
            got = path.stat().st_size
        except OSError:
            raise DeviceError(f"{where}: {rel} is missing after the transfer.") from None
        if got != size:
            raise DeviceError(f"{where}: {rel} has {got} bytes after the transfer, expected {size}.")


# ----------------------------------------------------------------------------------------------------
# Local transport


class LocalTransport:
    """Runs commands with :mod:`subprocess` and copies files on this machine (an SDK installed locally)."""

    def __init__(self, *, default_transfer_deadline_s: float = 3600.0) -> None:
        self.default_transfer_deadline_s = default_transfer_deadline_s

    def __repr__(self) -> str:
        return "LocalTransport()"

    def __enter__(self) -> LocalTransport:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        pass

    def run(
        self,
        command: Command,
        *,
        deadline_s: float,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        idempotent: bool = False,
        check: bool = False,
    ) -> CommandResult:
        del idempotent  # a local run cannot lose its connection
        deadline = _deadline_from(deadline_s, deadline_s)
        full_env = {**os.environ, **(env or {})}
        for key in env or {}:
            if not _ENV_NAME.match(key):
                raise DeviceError(f"Invalid environment variable name {key!r}.")
        _command_text(command)  # validates argv items
        args: str | list[str] = command if isinstance(command, str) else list(command)
        start = time.monotonic()
        try:
            proc = subprocess.Popen(
                args,
                shell=isinstance(command, str),
                cwd=cwd,
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            raise DeviceError(f"Cannot start '{_shown(command)}' on this machine: {exc.strerror or exc}.") from None
        try:
            out, err = proc.communicate(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise DeviceError(
                f"Command '{_shown(command)}' on this machine exceeded its deadline of {deadline_s:g} s; "
                f"its process group {proc.pid} was killed."
            ) from None
        result = CommandResult(
            rc=proc.returncode,
            stdout=out.decode("utf-8", errors="replace"),
            stderr=err.decode("utf-8", errors="replace"),
            duration_s=time.monotonic() - start,
        )
        return result.check(f"Command '{_shown(command)}' on this machine") if check else result

    def put(
        self,
        local: str | os.PathLike[str],
        remote: str,
        *,
        deadline_s: float | None = None,
        progress: Progress | None = None,
    ) -> None:
        self._copy_file(Path(local), Path(remote), progress)

    def get(
        self,
        remote: str,
        local: str | os.PathLike[str],
        *,
        deadline_s: float | None = None,
        progress: Progress | None = None,
    ) -> None:
        self._copy_file(Path(remote), Path(local), progress)

    def put_tree(
        self,
        local_dir: str | os.PathLike[str],
        remote_dir: str,
        *,
        deadline_s: float | None = None,
        progress: Progress | None = None,
    ) -> None:
        self._copy_tree(Path(local_dir), Path(remote_dir), progress)

    def get_tree(
        self,
        remote_dir: str,
        local_dir: str | os.PathLike[str],
        *,
        deadline_s: float | None = None,
        progress: Progress | None = None,
    ) -> None:
        self._copy_tree(Path(remote_dir), Path(local_dir), progress)

    @staticmethod
    def _copy_file(src: Path, dst: Path, progress: Progress | None) -> None:
        if not src.is_file():
            raise DeviceError(f"Cannot copy {src}: not a regular file.")
        size = src.stat().st_size
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = _tmp_sibling(dst)
        try:
            shutil.copyfile(src, tmp)
            got = tmp.stat().st_size
            if got != size:
                raise DeviceError(f"Copy of {src} to {dst} is {got} bytes, expected {size}.")
            os.replace(tmp, dst)
        except OSError as exc:
            raise DeviceError(f"Cannot copy {src} to {dst}: {exc.strerror or exc}.") from None
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()
        if progress is not None:
            progress(size)

    @staticmethod
    def _copy_tree(src: Path, dst: Path, progress: Progress | None) -> None:
        _dirs, files = _local_files(src)
        dst.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".qc-tree-", dir=dst.parent))
        try:
            done = 0
            for rel in _dirs:
                (staging / rel).mkdir(parents=True, exist_ok=True)
            for rel, path, _size in files:
                (staging / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, staging / rel)
                done += _size
                if progress is not None:
                    progress(done)
            _check_tree_sizes(f"Copy of {src} to {dst}", staging, {rel: size for rel, _p, size in files})
            _merge_tree(staging, dst)
        except OSError as exc:
            raise DeviceError(f"Cannot copy {src} to {dst}: {exc.strerror or exc}.") from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)


# ----------------------------------------------------------------------------------------------------
# SSH transport


class _Secret:
    """A string that never shows itself in repr/str (so not in logs, tracebacks or pytest's locals either)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "<secret>"

    __str__ = __repr__


@dataclass(frozen=True)
class SshConfig:
    """How to reach one device over SSH. Holds no secret: only the NAMES of the variables that hold them.

    Auth: ``key_file`` (its passphrase, if any, in environment variable ``passphrase_env``), the SSH agent
    when ``use_agent``, and/or a password in environment variable ``password_env``. Variables are looked up
    in the environment first, then in ``dotenv_path`` (a ``.env`` file, read without changing the
    environment).

    Host keys are checked against ``known_hosts``; an unknown key is refused unless ``trust_new_host_key`` is
    set, which records it in that file. A changed key is always refused.
    """

    host: str
    port: int = 22
    username: str | None = None
    key_file: Path | None = None
    passphrase_env: str | None = None
    password_env: str | None = None
    dotenv_path: Path | None = None
    use_agent: bool = False
    known_hosts: Path = field(default_factory=lambda: Path.home() / ".ssh" / "known_hosts")
    trust_new_host_key: bool = False
    connect_timeout_s: float = 10.0
    io_timeout_s: float = 60.0
    keepalive_s: int = 15
    max_attempts: int = 3
    backoff_s: float = 0.5
    backoff_max_s: float = 8.0
    sftp_max_prefetch: int = 32
    default_transfer_deadline_s: float = 3600.0

    def __post_init__(self) -> None:
        if not self.host:
            raise DeviceError("SshConfig.host is empty.")
        if not 0 < self.port < 65536:
            raise DeviceError(f"SshConfig.port {self.port} is not a TCP port.")
        if self.max_attempts < 1:
            raise DeviceError("SshConfig.max_attempts must be at least 1.")
        for name in (self.password_env, self.passphrase_env):
            if name is not None and not _ENV_NAME.match(name):
                raise DeviceError(f"{name!r} is not a valid environment variable name.")

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


class _ConnectionLostError(Exception):
    """The SSH connection died under an operation. ``started``: the remote side may have acted already."""

    def __init__(self, what: str, *, started: bool) -> None:
        super().__init__(what)
        self.started = started


class _UnreachableError(DeviceError):
    """The device did not answer (refused, timed out, no route)."""


class _DeadlineExceededError(Exception):
    pass


def _fingerprint(key: paramiko.PKey) -> str:
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


class _UnknownHostKeyError(Exception):
    def __init__(self, hostname: str, key: paramiko.PKey) -> None:
        super().__init__(hostname)
        self.hostname = hostname
        self.key = key


class _RejectUnknownPolicy(paramiko.MissingHostKeyPolicy):
    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        raise _UnknownHostKeyError(hostname, key)


class _RecordNewHostKeyPolicy(paramiko.MissingHostKeyPolicy):
    """Accept an unknown host key and append it to the known_hosts file (trust on first use, on request)."""

    def __init__(self, known_hosts: Path) -> None:
        self.known_hosts = known_hosts

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        client.get_host_keys().add(hostname, key.get_name(), key)
        self.known_hosts.parent.mkdir(parents=True, exist_ok=True)
        line = paramiko.hostkeys.HostKeyEntry([hostname], key).to_line() or ""
        existed = self.known_hosts.exists()
        with self.known_hosts.open("a", encoding="utf-8") as fh:
            fh.write(line)
        if not existed:
            os.chmod(self.known_hosts, 0o600)
        log.warning(
            "Recorded the new host key of %s (%s %s) in %s.",
            hostname,
            key.get_name(),
            _fingerprint(key),
            self.known_hosts,
        )


_LOST_ERRORS: tuple[type[Exception], ...] = (paramiko.SSHException, EOFError, OSError)
_TAR_OR_LOST_ERRORS: tuple[type[Exception], ...] = (tarfile.TarError, *_LOST_ERRORS)
_NETWORK_ERRNOS = frozenset(
    {errno.ECONNRESET, errno.ECONNABORTED, errno.EPIPE, errno.ENOTCONN, errno.ETIMEDOUT, errno.EHOSTUNREACH}
)


class _ChannelWriter:
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
                raise _DeadlineExceededError
            _drain_stderr(self.chan, self.stderr)
            self.chan.settimeout(min(self.io_timeout, remaining))
            n = self.chan.send(bytes(view[:_CHUNK]))
            if n <= 0:
                raise OSError(errno.EPIPE, "the remote side closed the channel")
            view = view[n:]
            self.sent += n
            if self.progress is not None:
                self.progress(self.sent)
        return len(data)

    def flush(self) -> None:
        pass


class _ChannelReader:
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
            raise _DeadlineExceededError
        _drain_stderr(self.chan, self.stderr)
        self.chan.settimeout(min(self.io_timeout, remaining))
        data: bytes = self.chan.recv(_CHUNK if size is None or size < 0 else max(1, min(size, _CHUNK)))
        self.received += len(data)
        if self.progress is not None and data:
            self.progress(self.received)
        return data


def _close_quietly(chan: paramiko.Channel) -> None:
    with contextlib.suppress(Exception):
        chan.close()


def _has_exit_status(chan: paramiko.Channel) -> bool:
    """Whether the server sent an exit status (paramiko's exit_status_ready() is also true once closed)."""
    return chan.status_event.is_set() and chan.exit_status != -1


def _drain_stderr(chan: paramiko.Channel, sink: list[bytes], limit: int = 1 << 20) -> None:
    while chan.recv_stderr_ready():
        data = chan.recv_stderr(_CHUNK)
        if not data:
            return
        if sum(len(c) for c in sink) < limit:
            sink.append(data)


class SshTransport:
    """:class:`Transport` over SSH with paramiko. Connects lazily; reconnects after a dropped connection.

    Idempotent steps (transfers, and ``run(..., idempotent=True)``) are retried on a lost connection with
    exponential backoff, at most ``config.max_attempts`` times. A command that may have started is not re-run
    unless it is marked idempotent.
    """

    def __init__(self, config: SshConfig) -> None:
        self.config = config
        self._client: paramiko.SSHClient | None = None
        self._sftp_client: paramiko.SFTPClient | None = None
        self._lock = threading.RLock()
        self._password: _Secret | None = None
        self._passphrase: _Secret | None = None
        self._secrets_loaded = False
        self._closed = False

    def __repr__(self) -> str:
        user = self.config.username or "<current user>"
        return f"SshTransport({user}@{self.config.address})"

    def __enter__(self) -> SshTransport:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ---------------------------------------------------------------- connection

    def _secret(self, env_name: str | None, what: str) -> _Secret | None:
        if env_name is None:
            return None
        value = os.environ.get(env_name)
        if value is None and self.config.dotenv_path is not None and self.config.dotenv_path.is_file():
            value = dotenv_values(self.config.dotenv_path).get(env_name)
        if value is None:
            where = f" or in {self.config.dotenv_path}" if self.config.dotenv_path is not None else ""
            raise DeviceError(
                f"The {what} for {self.config.address} is not set: define {env_name} in the environment{where}."
            )
        return _Secret(value)

    def _load_secrets(self) -> None:
        if not self._secrets_loaded:
            self._password = self._secret(self.config.password_env, "SSH password")
            self._passphrase = self._secret(self.config.passphrase_env, "key passphrase")
            self._secrets_loaded = True

    def connect(self) -> None:
        """Open the connection now (otherwise the first operation does)."""
        self._ensure_client()

    def _ensure_client(self) -> paramiko.SSHClient:
        with self._lock:
            if self._closed:
                raise DeviceError(f"{self!r} is closed.")
            client = self._client
            if client is not None:
                transport = client.get_transport()
                if transport is not None and transport.is_active():
                    return client
                self._drop_client()
            self._client = self._open_client()
            return self._client

    def _auth_methods(self) -> str:
        methods = []
        if self.config.key_file is not None:
            methods.append(f"key {self.config.key_file}")
        if self.config.use_agent:
            methods.append("agent")
        if self.config.password_env is not None:
            methods.append(f"password from ${self.config.password_env}")
        return ", ".join(methods) or "no method configured"

    def _open_client(self) -> paramiko.SSHClient:
        cfg = self.config
        self._load_secrets()
        client = paramiko.SSHClient()
        known_hosts = cfg.known_hosts.expanduser()
        if known_hosts.is_file():
            try:
                client.load_host_keys(str(known_hosts))
            except (OSError, paramiko.SSHException) as exc:
                raise DeviceError(f"Cannot read known_hosts file {known_hosts}: {exc}.") from None
        if cfg.trust_new_host_key:
            client.set_missing_host_key_policy(_RecordNewHostKeyPolicy(known_hosts))
        else:
            client.set_missing_host_key_policy(_RejectUnknownPolicy())
        username = cfg.username or _current_user()
        key_filename = str(cfg.key_file.expanduser()) if cfg.key_file is not None else None
        if key_filename is not None and not Path(key_filename).is_file():
            raise DeviceError(f"SSH key file {key_filename} for {cfg.address} does not exist.")
        try:
            client.connect(
                cfg.host,
                port=cfg.port,
                username=username,
                password=self._password.reveal() if self._password is not None else None,
                passphrase=self._passphrase.reveal() if self._passphrase is not None else None,
                key_filename=key_filename,
                timeout=cfg.connect_timeout_s,
                banner_timeout=cfg.connect_timeout_s,
                auth_timeout=cfg.connect_timeout_s,
                channel_timeout=cfg.connect_timeout_s,
                allow_agent=cfg.use_agent,
                look_for_keys=False,
            )
        except _UnknownHostKeyError as exc:
            client.close()
            raise DeviceError(
                f"Host key of {cfg.address} ({exc.key.get_name()} {_fingerprint(exc.key)}) "
                f"is not in {known_hosts}; "
                "refusing to connect. Check the fingerprint, then connect once with trust_new_host_key=True "
                "to record it."
            ) from None
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise DeviceError(
                f"Host key of {cfg.address} changed: got {exc.key.get_name()} {_fingerprint(exc.key)}, "
                f"{known_hosts} has {_fingerprint(exc.expected_key)}; "
                "possible man-in-the-middle, refusing to connect."
            ) from None
        except paramiko.AuthenticationException:
            client.close()
            raise DeviceError(
                f"Authentication as {username} to {cfg.address} failed (tried: {self._auth_methods()})."
            ) from None
        except paramiko.PasswordRequiredException:
            client.close()
            raise DeviceError(
                f"SSH key {key_filename} is encrypted: set passphrase_env to the variable holding its passphrase."
            ) from None
        except TimeoutError:
            client.close()
            raise _UnreachableError(
                f"Device {cfg.address} is unreachable: no answer within {cfg.connect_timeout_s:g} s."
            ) from None
        except paramiko.ssh_exception.NoValidConnectionsError as exc:
            client.close()
            reasons = sorted(
                {os.strerror(e.errno) if isinstance(e, OSError) and e.errno else str(e) for e in exc.errors.values()}
            )
            raise _UnreachableError(f"Device {cfg.address} is unreachable: {'; '.join(reasons)}.") from None
        except paramiko.SSHException as exc:
            client.close()
            msg = " ".join(str(exc).split()) or type(exc).__name__
            raise _UnreachableError(
                f"SSH handshake with {cfg.address} failed: no usable SSH answer within "
                f"{cfg.connect_timeout_s:g} s ({msg})."
            ) from None
        except OSError as exc:
            client.close()
            reason = exc.strerror or " ".join(str(exc).split()) or type(exc).__name__
            raise _UnreachableError(f"Device {cfg.address} is unreachable: {reason}.") from None
        transport = client.get_transport()
        if transport is None:  # pragma: no cover - connect() always sets it
            raise DeviceError(f"SSH connection to {cfg.address} has no transport.")
        transport.set_keepalive(cfg.keepalive_s)
        log.debug("Connected to %s@%s.", username, cfg.address)
        return client

    def _drop_client(self) -> None:
        with self._lock:
            if self._sftp_client is not None:
                with contextlib.suppress(Exception):
                    self._sftp_client.close()
            self._sftp_client = None
            if self._client is not None:
                with contextlib.suppress(Exception):
                    self._client.close()
            self._client = None

    def disconnect(self) -> None:
        """Close the connection (the next operation reconnects). Also simulates a drop in tests."""
        self._drop_client()

    def close(self) -> None:
        self._drop_client()
        self._closed = True

    def open_sftp(self) -> paramiko.SFTPClient:
        """The SFTP client of the current connection (opened on demand, shared)."""
        client = self._ensure_client()
        with self._lock:
            if self._sftp_client is None:
                sftp = client.open_sftp()
                sftp.get_channel().settimeout(self.config.io_timeout_s)  # type: ignore[union-attr]
                self._sftp_client = sftp
            return self._sftp_client

    def _alive(self) -> bool:
        client = self._client
        if client is None:
            return False
        transport = client.get_transport()
        return transport is not None and transport.is_active()

    def _retrying(self, what: str, op: Callable[[paramiko.SSHClient], T], *, idempotent: bool) -> T:
        cfg = self.config
        attempt = 0
        had_client = self._client is not None
        while True:
            attempt += 1
            try:
                client = self._ensure_client()
            except _UnreachableError:
                if not had_client or attempt >= cfg.max_attempts:
                    raise
                self._sleep_backoff(attempt)
                continue
            had_client = True
            try:
                return op(client)
            except _ConnectionLostError as exc:
                self._drop_client()
                if exc.started and not idempotent:
                    raise DeviceError(
                        f"{what} on {cfg.address}: the connection was lost while it ran ({exc}); "
                        "not retried because it is not idempotent."
                    ) from None
                if attempt >= cfg.max_attempts:
                    raise DeviceError(
                        f"{what} on {cfg.address} failed: connection lost ({exc}) after {attempt} attempt(s)."
                    ) from None
                log.warning(
                    "%s on %s: connection lost (%s); retry %d of %d.",
                    what,
                    cfg.address,
                    exc,
                    attempt,
                    cfg.max_attempts - 1,
                )
                self._sleep_backoff(attempt)

    def _sleep_backoff(self, attempt: int) -> None:
        time.sleep(min(self.config.backoff_max_s, self.config.backoff_s * 2 ** (attempt - 1)))

    def _alive_settled(self, wait_s: float = 0.3) -> bool:
        """Like _alive(), but gives paramiko's transport thread a moment to notice a dead socket.

        When a connection drops, paramiko closes the channels before it marks the transport inactive, so an
        error seen on a channel may come a little before ``is_active()`` turns false.
        """
        end = time.monotonic() + wait_s
        while self._alive():
            if time.monotonic() >= end:
                return True
            time.sleep(0.02)
        return False

    def _dropped(self, chan: paramiko.Channel) -> bool:
        """Whether a channel ended because the connection died (closed with no EOF and no exit status)."""
        if chan.closed and not chan.eof_received and not _has_exit_status(chan):
            return True
        return not self._alive_settled()

    def _lost_or_error(self, what: str, exc: BaseException, *, started: bool) -> Exception:
        """Classify an exception raised mid-operation: a dead connection, or a real error of the operation."""
        text = " ".join(str(exc).split()) or type(exc).__name__
        if isinstance(exc, EOFError | TimeoutError):
            return _ConnectionLostError(text, started=started)
        answered = isinstance(exc, OSError) and exc.errno is not None and exc.errno not in _NETWORK_ERRNOS
        if not (answered and self._alive()) and not self._alive_settled():
            return _ConnectionLostError(text, started=started)
        reason = getattr(exc, "strerror", None) or text
        return DeviceError(f"{what} on {self.config.address} failed: {reason}.")

    # ---------------------------------------------------------------- commands

    def run(
        self,
        command: Command,
        *,
        deadline_s: float,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        idempotent: bool = False,
        check: bool = False,
    ) -> CommandResult:
        """Run a command on the device (see :class:`Transport`); DeviceError when the deadline passes."""
        deadline = _deadline_from(deadline_s, deadline_s)
        script = build_shell_command(command, env=env, cwd=cwd)
        wrapped = f"printf '{_PID_MARK}%s\\n' \"$$\" >&2; {script}"
        shown = _shown(command)
        log.debug("run on %s: %s%s", self.config.address, shown, f" (env: {', '.join(env)})" if env else "")

        def op(client: paramiko.SSHClient) -> CommandResult:
            return self._exec(client, wrapped, shown, deadline, deadline_s)

        result = self._retrying(f"Command '{shown}'", op, idempotent=idempotent)
        return result.check(f"Command '{shown}' on {self.config.address}") if check else result

    def _open_channel(self, client: paramiko.SSHClient, command: str) -> paramiko.Channel:
        transport = client.get_transport()
        if transport is None or not transport.is_active():
            raise _ConnectionLostError("SSH session not active", started=False)
        try:
            chan = transport.open_session(timeout=self.config.connect_timeout_s)
        except _LOST_ERRORS as exc:
            if not transport.is_active():
                raise _ConnectionLostError(" ".join(str(exc).split()) or type(exc).__name__, started=False) from None
            raise DeviceError(f"Cannot open an SSH channel to {self.config.address}: {exc}.") from None
        try:
            chan.exec_command(command)
        except _LOST_ERRORS as exc:
            _close_quietly(chan)
            raise self._lost_or_error("Starting a command", exc, started=True) from None
        return chan

    def _exec(
        self, client: paramiko.SSHClient, wrapped: str, shown: str, deadline: float, deadline_s: float
    ) -> CommandResult:
        start = time.monotonic()
        chan = self._open_channel(client, wrapped)
        out: list[bytes] = []
        err: list[bytes] = []
        try:
            while True:
                got = False
                while chan.recv_ready():
                    data = chan.recv(_CHUNK)
                    if not data:
                        break
                    out.append(data)
                    got = True
                while chan.recv_stderr_ready():
                    data = chan.recv_stderr(_CHUNK)
                    if not data:
                        break
                    err.append(data)
                    got = True
                remaining = deadline - time.monotonic()
                if remaining <= 0 and not (chan.closed or (chan.eof_received and chan.exit_status_ready())):
                    stderr, pid = _strip_pid_line(_decode(err))
                    self._kill_remote(client, pid)
                    log.debug("Partial stderr of timed-out command %s: %s", shown, stderr[-2000:])
                    raise DeviceError(
                        f"Command '{shown}' on {self.config.address} exceeded its deadline of "
                        f"{deadline_s:g} s; "
                        + (f"its process group {pid} was killed." if pid else "its channel was closed.")
                    )
                if got:
                    continue
                if chan.closed or (chan.eof_received and chan.exit_status_ready()):
                    break
                if not self._alive():
                    raise _ConnectionLostError("connection dropped while the command ran", started=True)
                select.select([chan], [], [], min(0.1, max(0.0, remaining)))
            if not _has_exit_status(chan) and (not chan.eof_received or not self._alive()):
                # Closed without EOF: the transport unlinked the channel because the connection died.
                raise _ConnectionLostError("connection dropped while the command ran", started=True)
            rc = chan.exit_status if _has_exit_status(chan) else -1
        except _LOST_ERRORS as exc:
            raise self._lost_or_error(f"Command '{shown}'", exc, started=True) from None
        finally:
            _close_quietly(chan)
        stderr, _pid = _strip_pid_line(_decode(err))
        return CommandResult(rc=rc, stdout=_decode(out), stderr=stderr, duration_s=time.monotonic() - start)

    def _kill_remote(self, client: paramiko.SSHClient, pid: int | None) -> None:
        """Kill the process group of a timed-out command (sshd makes each session command a group leader)."""
        if pid is None or pid <= 1:
            return
        script = f"kill -TERM -- -{pid} 2>/dev/null; sleep 0.5; kill -KILL -- -{pid} 2>/dev/null; exit 0"
        try:
            chan = self._open_channel(client, script)
        except (DeviceError, _ConnectionLostError):
            return
        try:
            end = time.monotonic() + 10.0
            while not chan.exit_status_ready() and time.monotonic() < end:
                select.select([chan], [], [], 0.1)
                while chan.recv_ready():
                    chan.recv(_CHUNK)
        except _LOST_ERRORS:
            pass
        finally:
            _close_quietly(chan)

    def _finish(self, chan: paramiko.Channel, deadline: float, stderr: list[bytes], what: str) -> int:
        """Wait for a transfer command's exit status (draining its output); -1 when none came."""
        while not (chan.closed or (chan.eof_received and chan.exit_status_ready())):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _DeadlineExceededError
            _drain_stderr(chan, stderr)
            while chan.recv_ready():
                chan.recv(_CHUNK)
            if not self._alive():
                raise _ConnectionLostError(f"connection dropped during {what}", started=True)
            select.select([chan], [], [], min(0.1, remaining))
        _drain_stderr(chan, stderr)
        if not _has_exit_status(chan) and (not chan.eof_received or not self._alive()):
            raise _ConnectionLostError(f"connection dropped during {what}", started=True)
        return chan.exit_status if _has_exit_status(chan) else -1

    # ---------------------------------------------------------------- single files (SFTP)

    def put(
        self,
        local: str | os.PathLike[str],
        remote: str,
        *,
        deadline_s: float | None = None,
        progress: Progress | None = None,
    ) -> None:
        """Upload one file via SFTP to a temporary name, check its size, then rename it into place."""
        src = Path(local)
        if not src.is_file():
            raise DeviceError(f"Cannot upload {src}: not a regular file.")
        size = src.stat().st_size
        deadline = _deadline_from(deadline_s, self.config.default_transfer_deadline_s)
        what = f"Upload of {src} to {remote}"
        orphans: list[str] = []

        def op(client: paramiko.SSHClient) -> None:
            del client
            sftp = self._sftp_or_lost()
            for orphan in orphans:  # a temporary file of an attempt whose connection died
                with contextlib.suppress(*_LOST_ERRORS):
                    sftp.remove(orphan)
            orphans.clear()
            tmp = posixpath.join(
                posixpath.dirname(remote), f".{posixpath.basename(remote)}.qc-part-{uuid.uuid4().hex[:12]}"
            )
            try:
                sftp.put(str(src), tmp, callback=_sftp_callback(deadline, progress), confirm=True)
                got = sftp.stat(tmp).st_size
                if got != size:
                    if not self._alive_settled():
                        raise _ConnectionLostError(f"the device has {got} of {size} bytes", started=True)
                    raise DeviceError(f"{what}: the device has {got} bytes, expected {size}.")
                try:
                    sftp.posix_rename(tmp, remote)
                except OSError:
                    if not self._alive_settled():
                        raise
                    with contextlib.suppress(OSError):
                        sftp.remove(remote)
                    sftp.rename(tmp, remote)
            except _DeadlineExceededError:
                self._remove_quietly(sftp, tmp)
                raise DeviceError(f"{what} exceeded its deadline; the partial file was removed.") from None
            except DeviceError:
                self._remove_quietly(sftp, tmp)
                raise
            except _ConnectionLostError:
                orphans.append(tmp)
                raise
            except _LOST_ERRORS as exc:
                if self._alive():
                    self._remove_quietly(sftp, tmp)
                else:
                    orphans.append(tmp)
                raise self._lost_or_error(what, exc, started=True) from None

        self._retrying(what, op, idempotent=True)

    def get(
        self,
        remote: str,
        local: str | os.PathLike[str],
        *,
        deadline_s: float | None = None,
        progress: Progress | None = None,
    ) -> None:
        """Download one file via SFTP (bounded prefetch) to a temporary sibling, check its size, rename it."""
        dst = Path(local)
        deadline = _deadline_from(deadline_s, self.config.default_transfer_deadline_s)
        what = f"Download of {remote} to {dst}"
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DeviceError(f"{what}: cannot create {dst.parent}: {exc.strerror or exc}.") from None

        def op(client: paramiko.SSHClient) -> None:
            del client
            sftp = self._sftp_or_lost()
            tmp = _tmp_sibling(dst)
            try:
                try:
                    size = sftp.stat(remote).st_size
                except FileNotFoundError:
                    raise DeviceError(f"{what}: {remote} does not exist on {self.config.address}.") from None
                sftp.get(
                    remote,
                    str(tmp),
                    callback=_sftp_callback(deadline, progress),
                    prefetch=True,
                    max_concurrent_prefetch_requests=self.config.sftp_max_prefetch,
                )
                got = tmp.stat().st_size
                if got != size:
                    # paramiko ends a download quietly when the connection drops: only the size tells.
                    if not self._alive_settled():
                        _join_prefetch_threads()
                        raise _ConnectionLostError(f"received {got} of {size} bytes", started=False)
                    raise DeviceError(f"{what}: received {got} bytes, expected {size}.")
                os.replace(tmp, dst)
            except _DeadlineExceededError:
                raise DeviceError(f"{what} exceeded its deadline; the partial file was removed.") from None
            except _LOST_ERRORS as exc:
                error = self._lost_or_error(what, exc, started=False)
                if isinstance(error, _ConnectionLostError):
                    _join_prefetch_threads()
                raise error from None
            finally:
                with contextlib.suppress(OSError):
                    tmp.unlink()

        self._retrying(what, op, idempotent=True)

    def _sftp_or_lost(self) -> paramiko.SFTPClient:
        try:
            return self.open_sftp()
        except _LOST_ERRORS as exc:
            if self._alive():
                raise DeviceError(f"Cannot start SFTP on {self.config.address}: {exc}.") from None
            raise _ConnectionLostError(" ".join(str(exc).split()) or type(exc).__name__, started=False) from None

    @staticmethod
    def _remove_quietly(sftp: paramiko.SFTPClient, path: str) -> None:
        with contextlib.suppress(*_LOST_ERRORS):
            sftp.remove(path)

    # ---------------------------------------------------------------- trees (one tar stream)

    def remote_sizes(self, remote_dir: str, *, deadline_s: float = 120.0) -> dict[str, int]:
        """Sizes of the regular files below ``remote_dir``, keyed by POSIX path relative to it."""
        return self._retrying(
            f"Listing {remote_dir}",
            lambda client: self._remote_sizes(client, remote_dir, deadline_s),
            idempotent=True,
        )

    def _remote_sizes(self, client: paramiko.SSHClient, remote_dir: str, deadline_s: float) -> dict[str, int]:
        script = f"cd -- {quote_remote_path(remote_dir)} && find . -type f -exec wc -c {{}} +"
        wrapped = f"printf '{_PID_MARK}%s\\n' \"$$\" >&2; {script}"
        result = self._exec(client, wrapped, script, time.monotonic() + deadline_s, deadline_s)
        if result.rc != 0:
            raise DeviceError(
                f"Listing {remote_dir} on {self.config.address} failed with exit status {result.rc}: "
                f"{_last_line(result.stderr) or 'no output'}"
            )
        return _parse_wc(result.stdout)

    def put_tree(
        self,
        local_dir: str | os.PathLike[str],
        remote_dir: str,
        *,
        deadline_s: float | None = None,
        progress: Progress | None = None,
    ) -> None:
        """Send a local folder as one tar stream into ``remote_dir`` (created), then check file sizes."""
        src = Path(local_dir)
        dirs, files = _local_files(src)
        deadline = _deadline_from(deadline_s, self.config.default_transfer_deadline_s)
        what = f"Upload of folder {src} to {remote_dir}"
        qdir = quote_remote_path(remote_dir)
        command = f"mkdir -p -- {qdir} && tar -C {qdir} -xf -"

        def op(client: paramiko.SSHClient) -> None:
            chan = self._open_channel(client, command)
            writer = _ChannelWriter(chan, deadline, self.config.io_timeout_s, progress)
            try:
                try:
                    with tarfile.open(fileobj=writer, mode="w|", format=tarfile.GNU_FORMAT) as tar:  # type: ignore[call-overload]
                        for rel in dirs:
                            tar.addfile(_dir_info(rel))
                        for rel, path, size in files:
                            with path.open("rb") as fh:
                                tar.addfile(_file_info(rel, path, size), fh)
                    chan.shutdown_write()
                    rc = self._finish(chan, deadline, writer.stderr, what)
                except _DeadlineExceededError:
                    raise DeviceError(f"{what} exceeded its deadline.") from None
                except _LOST_ERRORS as exc:
                    if isinstance(exc, OSError) and exc.filename is not None:
                        raise DeviceError(f"{what}: cannot read {exc.filename}: {exc.strerror}.") from None
                    if _has_exit_status(chan):
                        _drain_stderr(chan, writer.stderr)
                        stderr, _pid = _strip_pid_line(_decode(writer.stderr))
                        raise DeviceError(
                            f"{what}: tar on {self.config.address} stopped early (exit status {chan.exit_status}): "
                            f"{_last_line(stderr) or exc}"
                        ) from None
                    raise self._lost_or_error(what, exc, started=True) from None
            finally:
                _close_quietly(chan)
            stderr, _pid = _strip_pid_line(_decode(writer.stderr))
            if rc != 0:
                raise DeviceError(
                    f"{what}: tar on {self.config.address} failed with exit status {rc}: "
                    f"{_last_line(stderr) or 'no output'}"
                )
            remaining = max(1.0, deadline - time.monotonic())
            sizes = self._remote_sizes(client, remote_dir, remaining)
            for rel, _path, size in files:
                got = sizes.get(rel)
                if got != size:
                    raise DeviceError(
                        f"{what}: {rel} has {'no file' if got is None else f'{got} bytes'} on the device, "
                        f"expected {size}."
                    )

        self._retrying(what, op, idempotent=True)

    def get_tree(
        self,
        remote_dir: str,
        local_dir: str | os.PathLike[str],
        *,
        deadline_s: float | None = None,
        progress: Progress | None = None,
    ) -> None:
        """Fetch a remote folder as one tar stream into ``local_dir``.

        The stream is unpacked into a staging folder (with tarfile's ``data`` filter: no absolute paths,
        no ``..``, no links out); only when tar succeeded and every file's size matches the device's listing
        are the files moved into ``local_dir``.
        """
        dst = Path(local_dir)
        deadline = _deadline_from(deadline_s, self.config.default_transfer_deadline_s)
        what = f"Download of folder {remote_dir} to {dst}"
        command = f"tar -C {quote_remote_path(remote_dir)} -cf - ."
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DeviceError(f"{what}: cannot create {dst.parent}: {exc.strerror or exc}.") from None

        def op(client: paramiko.SSHClient) -> None:
            expected = self._remote_sizes(client, remote_dir, max(1.0, deadline - time.monotonic()))
            staging = Path(tempfile.mkdtemp(prefix=".qc-get-", dir=dst.parent))
            try:
                chan = self._open_channel(client, command)
                reader = _ChannelReader(chan, deadline, self.config.io_timeout_s, progress)
                try:
                    try:
                        with tarfile.open(fileobj=reader, mode="r|") as tar:  # type: ignore[call-overload]
                            tar.extractall(staging, filter="data")
                        rc = self._finish(chan, deadline, reader.stderr, what)
                    except _DeadlineExceededError:
                        raise DeviceError(f"{what} exceeded its deadline; nothing was kept.") from None
                    except _TAR_OR_LOST_ERRORS as exc:
                        if self._dropped(chan):
                            raise _ConnectionLostError(
                                " ".join(str(exc).split()) or type(exc).__name__, started=False
                            ) from None
                        if isinstance(exc, tarfile.FilterError):
                            raise DeviceError(f"{what}: refused an unsafe tar member: {exc}.") from None
                        with contextlib.suppress(_DeadlineExceededError, _ConnectionLostError, *_LOST_ERRORS):
                            self._finish(chan, min(deadline, time.monotonic() + 5.0), reader.stderr, what)
                        stderr, _pid = _strip_pid_line(_decode(reader.stderr))
                        raise DeviceError(
                            f"{what}: the tar stream from {self.config.address} broke off ({exc}): "
                            f"{_last_line(stderr) or 'no message'}"
                        ) from None
                finally:
                    _close_quietly(chan)
                stderr, _pid = _strip_pid_line(_decode(reader.stderr))
                if rc != 0:
                    raise DeviceError(
                        f"{what}: tar on {self.config.address} failed with exit status {rc}: "
                        f"{_last_line(stderr) or 'no output'}"
                    )
                _check_tree_sizes(what, staging, expected)
                _merge_tree(staging, dst)
            finally:
                shutil.rmtree(staging, ignore_errors=True)

        self._retrying(what, op, idempotent=True)


def _join_prefetch_threads(timeout_s: float = 2.0) -> None:
    """Wait for paramiko's SFTP prefetch threads to end after a dropped connection.

    They die with "Socket is closed" once the connection is gone; waiting here keeps that (paramiko's own,
    harmless) thread exception inside the failed download instead of surfacing later somewhere else.
    """
    end = time.monotonic() + timeout_s
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and thread.name.endswith("(_prefetch_thread)"):
            thread.join(max(0.0, end - time.monotonic()))


def _sftp_callback(deadline: float, progress: Progress | None) -> Callable[[int, int], None]:
    def callback(done: int, total: int) -> None:
        del total
        if time.monotonic() > deadline:
            raise _DeadlineExceededError
        if progress is not None:
            progress(done)

    return callback


def _dir_info(rel: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(rel)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    info.mtime = int(time.time())
    return info


def _file_info(rel: str, path: Path, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(rel)
    st = path.stat()
    info.size = size
    info.mode = stat.S_IMODE(st.st_mode)
    info.mtime = int(st.st_mtime)
    return info


_WC_LINE = re.compile(r"^\s*(\d+) (.*)$")


def _parse_wc(text: str) -> dict[str, int]:
    """Parse ``find . -type f -exec wc -c {} +`` output into {relative path: size} (skips "total")."""
    sizes: dict[str, int] = {}
    for line in text.splitlines():
        match = _WC_LINE.match(line)
        if match is None:
            continue
        name = match.group(2)
        if not name.startswith("./"):
            continue  # "total" lines of wc
        sizes[name[2:]] = int(match.group(1))
    return sizes


def _current_user() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError):
        return os.environ.get("USER") or os.environ.get("USERNAME") or "root"
