"""SshTransport: the Transport contract over SSH with paramiko (connection, retries, commands, deadlines).

paramiko is imported when an :class:`SshTransport` is created, never at import time: ``import qc.device``
and a local-only run do not pay for it.

Deadlines are total. Every operation runs under a watchdog: when the operation outlives its deadline by
:data:`WATCHDOG_GRACE_S` (a stalled device: no reply, so no read returns), the watchdog shuts the connection's
socket, which wakes every blocked read and write at once; the call then raises a DeviceError naming the
deadline. Retries and reconnects never start after the deadline. A command that outlives its deadline is
killed through a second session (see :mod:`qc.device.transport.commands`); the error says what was killed,
or that the device could not be reached to kill it.

Secrets (passwords, key passphrases) are only ever read from environment variables or a ``.env`` file named in
:class:`SshConfig`; they never appear in logs, reprs or exception texts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar

from dotenv import dotenv_values

from qc.device.transport import commands, transfer
from qc.device.transport.channel import (
    NETWORK_ERRNOS,
    ConnectionLostError,
    DeadlinePassedError,
    UnreachableError,
    close_quietly,
    has_exit_status,
    lost_errors,
)
from qc.device.transport.protocol import (
    Command,
    CommandResult,
    Progress,
    build_shell_command,
    deadline_from,
    shown,
)
from qc.device.transport.sshconfig import (
    Secret,
    SshConfig,
    UnknownHostKeyError,
    current_user,
    fingerprint,
    host_key_policies,
    load_paramiko,
)
from qc.errors import DeviceError

if TYPE_CHECKING:
    import paramiko

__all__ = ["SshConfig", "SshTransport"]

log = logging.getLogger("qc.device")

T = TypeVar("T")

WATCHDOG_GRACE_S = 0.25
"""How long after its deadline an operation may still block before the watchdog closes the connection."""


class _Watchdog:
    """Aborts the connection of ``owner`` at ``fire_at`` (monotonic) unless the ``with`` block ended first."""

    def __init__(self, owner: SshTransport, fire_at: float) -> None:
        self.owner = owner
        self.fired = False
        self._lock = threading.Lock()
        self._timer = self._arm(fire_at)

    def _arm(self, fire_at: float) -> threading.Timer:
        timer = threading.Timer(max(0.0, fire_at - time.monotonic()), self._fire)
        timer.daemon = True
        return timer

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with self._lock:
            self._timer.cancel()

    def postpone(self, fire_at: float) -> None:
        """Fire at ``fire_at`` instead (used while a timed-out command is being killed)."""
        with self._lock:
            if not self.fired:
                self._timer.cancel()
                self._timer = self._arm(fire_at)
                self._timer.start()

    def _fire(self) -> None:
        with self._lock:
            if self.fired:
                return
            self.fired = True
        log.debug("%r: an operation outlived its deadline; closing the connection.", self.owner)
        self.owner.abort()


class SshTransport:
    """:class:`Transport` over SSH with paramiko. Connects lazily; reconnects after a dropped connection.

    Idempotent steps (transfers, and ``run(..., idempotent=True)``) are retried on a lost connection with
    exponential backoff, at most ``config.max_attempts`` times. A command that may have started is not re-run
    unless it is marked idempotent.
    """

    def __init__(self, config: SshConfig) -> None:
        load_paramiko()  # an SSH transport is being made: now (and only now) paramiko is needed
        self.config = config
        self._client: paramiko.SSHClient | None = None
        self._sock: socket.socket | None = None  # the TCP socket of the current (or connecting) client
        self._aborted = False  # the watchdog closed the current connection
        self._watch = threading.local()  # the watchdog of the operation running in this thread
        self._sftp_client: paramiko.SFTPClient | None = None
        self._lock = threading.RLock()
        self._password: Secret | None = None
        self._passphrase: Secret | None = None
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

    def _secret(self, env_name: str | None, what: str) -> Secret | None:
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
        return Secret(value)

    def _load_secrets(self) -> None:
        if not self._secrets_loaded:
            self._password = self._secret(self.config.password_env, "SSH password")
            self._passphrase = self._secret(self.config.passphrase_env, "key passphrase")
            self._secrets_loaded = True

    def connect(self) -> None:
        """Open the connection now (otherwise the first operation does)."""
        deadline = time.monotonic() + 3 * self.config.connect_timeout_s
        with _Watchdog(self, deadline):
            self._ensure_client()

    def abort(self) -> None:
        """Close the connection's socket at once, from any thread, without waiting for a lock.

        Every read or write blocked on it (in paramiko's thread or in an operation) fails at once; the next
        operation reconnects. Used by the deadline watchdog against a device that stopped answering.
        """
        self._aborted = True
        sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        client = self._client
        transport = client.get_transport() if client is not None else None
        if transport is not None:
            with contextlib.suppress(Exception):
                transport.close()

    def postpone_watchdog(self, until: float) -> None:
        """Let the current operation of this thread block until ``until`` (+ the grace) before the watchdog fires."""
        dog: _Watchdog | None = getattr(self._watch, "dog", None)
        if dog is not None:
            dog.postpone(until + WATCHDOG_GRACE_S)

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

    def _connect_socket(self) -> socket.socket:
        """The TCP connection to the device, kept in ``self._sock`` so that the watchdog can shut it."""
        cfg = self.config
        try:
            sock = socket.create_connection((cfg.host, cfg.port), timeout=cfg.connect_timeout_s)
        except TimeoutError:
            raise UnreachableError(
                f"Device {cfg.address} is unreachable: no answer within {cfg.connect_timeout_s:g} s."
            ) from None
        except OSError as exc:
            reason = exc.strerror or " ".join(str(exc).split()) or type(exc).__name__
            raise UnreachableError(f"Device {cfg.address} is unreachable: {reason}.") from None
        self._sock = sock
        self._aborted = False
        return sock

    def _open_client(self) -> paramiko.SSHClient:
        cfg = self.config
        self._load_secrets()
        import paramiko

        reject_unknown, record_new = host_key_policies()
        client = paramiko.SSHClient()
        known_hosts = cfg.known_hosts.expanduser()
        if known_hosts.is_file():
            try:
                client.load_host_keys(str(known_hosts))
            except (OSError, paramiko.SSHException) as exc:
                raise DeviceError(f"Cannot read known_hosts file {known_hosts}: {exc}.") from None
        if cfg.trust_new_host_key:
            client.set_missing_host_key_policy(record_new(known_hosts))
        else:
            client.set_missing_host_key_policy(reject_unknown())
        username = cfg.username or current_user()
        key_filename = str(cfg.key_file.expanduser()) if cfg.key_file is not None else None
        if key_filename is not None and not Path(key_filename).is_file():
            raise DeviceError(f"SSH key file {key_filename} for {cfg.address} does not exist.")
        sock = self._connect_socket()
        try:
            client.connect(
                cfg.host,
                sock=sock,
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
        except UnknownHostKeyError as exc:
            client.close()
            raise DeviceError(
                f"Host key of {cfg.address} ({exc.key.get_name()} {fingerprint(exc.key)}) "
                f"is not in {known_hosts}; "
                "refusing to connect. Check the fingerprint, then connect once with trust_new_host_key=True "
                "to record it."
            ) from None
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise DeviceError(
                f"Host key of {cfg.address} changed: got {exc.key.get_name()} {fingerprint(exc.key)}, "
                f"{known_hosts} has {fingerprint(exc.expected_key)}; "
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
            raise UnreachableError(
                f"Device {cfg.address} is unreachable: no answer within {cfg.connect_timeout_s:g} s."
            ) from None
        except paramiko.SSHException as exc:
            client.close()
            msg = " ".join(str(exc).split()) or type(exc).__name__
            raise UnreachableError(
                f"SSH handshake with {cfg.address} failed: no usable SSH answer within "
                f"{cfg.connect_timeout_s:g} s ({msg})."
            ) from None
        except OSError as exc:
            client.close()
            reason = exc.strerror or " ".join(str(exc).split()) or type(exc).__name__
            raise UnreachableError(f"Device {cfg.address} is unreachable: {reason}.") from None
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
            self._sock = None

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

    def _retrying(
        self,
        what: str,
        op: Callable[[paramiko.SSHClient], T],
        *,
        idempotent: bool,
        deadline: float,
        deadline_s: float,
        stalled: str = "",
    ) -> T:
        """Run ``op`` on a live connection under the deadline watchdog, retrying a lost connection.

        No attempt, reconnect or backoff starts after ``deadline``. When the watchdog had to close the
        connection (the device stopped answering), raises DeadlinePassedError ending with ``stalled``.
        """
        cfg = self.config
        attempt = 0
        had_client = self._client is not None
        while True:
            attempt += 1
            if time.monotonic() >= deadline:
                raise DeadlinePassedError(
                    f"{what} on {cfg.address} exceeded its deadline of {deadline_s:g} s "
                    f"after {attempt - 1} attempt(s) that lost the connection."
                )
            dog = _Watchdog(self, deadline + WATCHDOG_GRACE_S)
            self._watch.dog = dog
            try:
                with dog:
                    client = self._ensure_client()
                    had_client = True
                    return op(client)
            except DeadlinePassedError:
                raise
            except Exception as exc:
                if not dog.fired:
                    if not isinstance(exc, UnreachableError | ConnectionLostError):
                        raise
                    if isinstance(exc, UnreachableError) and (not had_client or attempt >= cfg.max_attempts):
                        raise
                if dog.fired or time.monotonic() >= deadline:
                    self._drop_client()
                    raise DeadlinePassedError(
                        f"{what} on {cfg.address} exceeded its deadline of {deadline_s:g} s: the device stopped "
                        f"answering, so the connection was closed{stalled}."
                    ) from None
                if isinstance(exc, ConnectionLostError):
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
                self._sleep_backoff(attempt, deadline)

    def _sleep_backoff(self, attempt: int, deadline: float) -> None:
        pause = min(self.config.backoff_max_s, self.config.backoff_s * 2 ** (attempt - 1))
        time.sleep(max(0.0, min(pause, deadline - time.monotonic())))

    def _alive_settled(self, wait_s: float = 0.3) -> bool:
        """Like _alive(), but gives paramiko's transport thread a moment to notice a dead socket.

        When a connection drops, paramiko closes the channels before it marks the transport inactive, so an
        error seen on a channel may come a little before ``is_active()`` turns false.
        """
        end = time.monotonic() + wait_s
        while self._alive() and not self._aborted:
            if time.monotonic() >= end:
                return True
            time.sleep(0.02)
        return False

    def _dropped(self, chan: paramiko.Channel) -> bool:
        """Whether a channel ended because the connection died (closed with no EOF and no exit status)."""
        if chan.closed and not chan.eof_received and not has_exit_status(chan):
            return True
        return not self._alive_settled()

    def _lost_or_error(self, what: str, exc: BaseException, *, started: bool) -> Exception:
        """Classify an exception raised mid-operation: a dead connection, or a real error of the operation."""
        text = " ".join(str(exc).split()) or type(exc).__name__
        if isinstance(exc, EOFError | TimeoutError):
            return ConnectionLostError(text, started=started)
        answered = isinstance(exc, OSError) and exc.errno is not None and exc.errno not in NETWORK_ERRNOS
        if not (answered and self._alive()) and not self._alive_settled():
            return ConnectionLostError(text, started=started)
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
        deadline = deadline_from(deadline_s, deadline_s)
        script = build_shell_command(command, env=env, cwd=cwd)
        text = shown(command)
        log.debug("run on %s: %s%s", self.config.address, text, f" (env: {', '.join(env)})" if env else "")

        def op(client: paramiko.SSHClient) -> CommandResult:
            return commands.exec_script(self, client, script, text, deadline, deadline_s)

        result = self._retrying(
            f"Command '{text}'",
            op,
            idempotent=idempotent,
            deadline=deadline,
            deadline_s=deadline_s,
            stalled="; nothing could be killed, the command may still be running there",
        )
        return result.check(f"Command '{text}' on {self.config.address}") if check else result

    def _open_channel(
        self, client: paramiko.SSHClient, command: str, *, timeout_s: float | None = None
    ) -> paramiko.Channel:
        transport = client.get_transport()
        if transport is None or not transport.is_active():
            raise ConnectionLostError("SSH session not active", started=False)
        try:
            chan = transport.open_session(timeout=timeout_s or self.config.connect_timeout_s)
        except lost_errors() as exc:
            if not transport.is_active():
                raise ConnectionLostError(" ".join(str(exc).split()) or type(exc).__name__, started=False) from None
            raise DeviceError(f"Cannot open an SSH channel to {self.config.address}: {exc}.") from None
        try:
            chan.exec_command(command)
        except lost_errors() as exc:
            close_quietly(chan)
            raise self._lost_or_error("Starting a command", exc, started=True) from None
        return chan

    # ---------------------------------------------------------------- transfers (see transfer.py)

    def _sftp_or_lost(self) -> paramiko.SFTPClient:
        try:
            return self.open_sftp()
        except lost_errors() as exc:
            if self._alive():
                raise DeviceError(f"Cannot start SFTP on {self.config.address}: {exc}.") from None
            raise ConnectionLostError(" ".join(str(exc).split()) or type(exc).__name__, started=False) from None

    def put(
        self,
        local: str | os.PathLike[str],
        remote: str,
        *,
        deadline_s: float | None = None,
        progress: Progress | None = None,
    ) -> None:
        """Upload one file via SFTP to a temporary name, check its size, then rename it into place."""
        total = deadline_s or self.config.default_transfer_deadline_s
        transfer.sftp_put(self, local, remote, deadline_from(total, total), total, progress)

    def get(
        self,
        remote: str,
        local: str | os.PathLike[str],
        *,
        deadline_s: float | None = None,
        progress: Progress | None = None,
    ) -> None:
        """Download one file via SFTP (bounded prefetch) to a temporary sibling, check its size, rename it."""
        total = deadline_s or self.config.default_transfer_deadline_s
        transfer.sftp_get(self, remote, local, deadline_from(total, total), total, progress)

    def remote_sizes(self, remote_dir: str, *, deadline_s: float = 120.0) -> dict[str, int]:
        """Sizes of the regular files below ``remote_dir``, keyed by POSIX path relative to it."""
        deadline = deadline_from(deadline_s, deadline_s)
        return self._retrying(
            f"Listing {remote_dir}",
            lambda client: transfer.remote_sizes(self, client, remote_dir, deadline, deadline_s),
            idempotent=True,
            deadline=deadline,
            deadline_s=deadline_s,
        )

    def put_tree(
        self,
        local_dir: str | os.PathLike[str],
        remote_dir: str,
        *,
        deadline_s: float | None = None,
        progress: Progress | None = None,
    ) -> None:
        """Send a local folder as one tar stream into ``remote_dir`` (created), then check file sizes."""
        total = deadline_s or self.config.default_transfer_deadline_s
        transfer.tar_put_tree(self, local_dir, remote_dir, deadline_from(total, total), total, progress)

    def get_tree(
        self,
        remote_dir: str,
        local_dir: str | os.PathLike[str],
        *,
        deadline_s: float | None = None,
        progress: Progress | None = None,
    ) -> None:
        """Fetch a remote folder as one tar stream into ``local_dir`` (see :func:`transfer.tar_get_tree`)."""
        total = deadline_s or self.config.default_transfer_deadline_s
        transfer.tar_get_tree(self, remote_dir, local_dir, deadline_from(total, total), total, progress)
