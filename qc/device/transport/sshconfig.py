"""How to reach a device over SSH: :class:`SshConfig`, secrets that never show themselves, host-key policies.

paramiko is only named in annotations here; :func:`load_paramiko` imports it when an SSH transport is made.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from qc.device.transport.protocol import ENV_NAME
from qc.errors import DeviceError

if TYPE_CHECKING:
    import paramiko

__all__ = ["SshConfig"]

log = logging.getLogger("qc.device")


def load_paramiko() -> ModuleType:
    """Import paramiko (the only place it is imported at run time), with a clear error if it is missing."""
    try:
        import paramiko
    except ImportError as exc:  # pragma: no cover - paramiko is a dependency of qc
        raise DeviceError(f"SSH devices need paramiko, which cannot be imported: {exc}.") from None
    return paramiko


class Secret:
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
            if name is not None and not ENV_NAME.match(name):
                raise DeviceError(f"{name!r} is not a valid environment variable name.")

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def fingerprint(key: paramiko.PKey) -> str:
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


class UnknownHostKeyError(Exception):
    def __init__(self, hostname: str, key: paramiko.PKey) -> None:
        super().__init__(hostname)
        self.hostname = hostname
        self.key = key


@functools.cache
def host_key_policies() -> tuple[
    Callable[[], paramiko.MissingHostKeyPolicy], Callable[[Path], paramiko.MissingHostKeyPolicy]
]:
    """(reject unknown keys, record new keys): classes made on first use, since they subclass paramiko's."""
    import paramiko

    class RejectUnknownPolicy(paramiko.MissingHostKeyPolicy):
        def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
            raise UnknownHostKeyError(hostname, key)

    class RecordNewHostKeyPolicy(paramiko.MissingHostKeyPolicy):
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
                fingerprint(key),
                self.known_hosts,
            )

    return RejectUnknownPolicy, RecordNewHostKeyPolicy


def current_user() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError):
        return os.environ.get("USER") or os.environ.get("USERNAME") or "root"
