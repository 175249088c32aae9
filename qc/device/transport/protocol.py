"""The transport contract shared by every device transport, and the shell helpers both sides use.

:class:`Transport`:

* ``run`` takes an argv list (every item is shell-quoted with :func:`shlex.quote`) or a shell command
  string (passed to the remote shell verbatim: the caller quotes), and enforces a TOTAL deadline: when it
  passes, the command's processes are killed (as far as the device can be reached; the error says what
  was killed) and :class:`qc.errors.DeviceError` is raised within a second of the deadline.
* ``put``/``get`` move one file; ``put_tree``/``get_tree`` move a folder as ONE tar stream. A file is only
  ever accepted at its final path after its size has been checked: a broken transfer leaves no partial file.
  A transfer's ``deadline_s`` is total as well: a stalled device cannot hold a call past it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from qc.errors import DeviceError

__all__ = [
    "Command",
    "CommandResult",
    "Progress",
    "Transport",
    "build_shell_command",
    "quote_remote_path",
]

Command = str | Sequence[str]
"""A command: an argv list (quoted for the shell by qc) or a shell command string (used verbatim)."""

Progress = Callable[[int], None]
"""Called with the number of bytes moved so far."""

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
PID_MARK = "__qc_pid__="
MAX_CMD_SHOWN = 200


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
            tail = last_line(self.stderr) or last_line(self.stdout) or "no output"
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


def command_text(command: Command) -> str:
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
            if not ENV_NAME.match(key):
                raise DeviceError(f"Invalid environment variable name {key!r}.")
            if "\x00" in value:
                raise DeviceError(f"Environment variable {key} contains a NUL byte.")
            assignments.append(f"{key}={shlex.quote(value)}")
        parts.append("export " + " ".join(assignments))
    text = command_text(command)
    if isinstance(command, str):
        text = "{ " + text + "\n}"
    parts.append(text)
    return " && ".join(parts)


def shown(command: Command) -> str:
    text = command if isinstance(command, str) else shlex.join(str(a) for a in command)
    text = " ".join(text.split())
    return text if len(text) <= MAX_CMD_SHOWN else text[: MAX_CMD_SHOWN - 3] + "..."


def last_line(text: str) -> str:
    for line in reversed(text.strip().splitlines()):
        if line.strip():
            return line.strip()[:300]
    return ""


def decode(chunks: list[bytes]) -> str:
    return b"".join(chunks).decode("utf-8", errors="replace")


def strip_pid_line(stderr: str) -> tuple[str, int | None]:
    """Remove the pid marker line that qc's wrapper prints first; return (stderr, pid)."""
    pid: int | None = None
    kept: list[str] = []
    for line in stderr.splitlines(keepends=True):
        if pid is None and line.startswith(PID_MARK):
            with contextlib.suppress(ValueError):
                pid = int(line[len(PID_MARK) :].strip())
                continue
        kept.append(line)
    return "".join(kept), pid


def deadline_from(deadline_s: float | None, default_s: float) -> float:
    value = default_s if deadline_s is None else deadline_s
    if not value > 0:
        raise DeviceError(f"A deadline must be positive, got {value!r} s.")
    return time.monotonic() + value


# ----------------------------------------------------------------------------------------------------
# Killing a command that outlived its deadline (the same shell script locally and on a device)

TOKEN_VAR = "QC_RUN_TOKEN"
"""Every command qc runs exports ``QC_RUN_TOKEN=<random>``: its processes keep it even after ``setsid``."""

_KILL_SCRIPT = r"""{start}tok={token}
members() {{
  {{ [ "$g" = none ] || grep -l -E -e "^[0-9]+ \(.*\) [^Z] [0-9]+ $g " -e "^[0-9]+ \(.*\) [^Z] [0-9]+ [0-9]+ $g " \
      /proc/[0-9]*/stat 2>/dev/null
    grep -l -F -e "$tok" /proc/[0-9]*/environ 2>/dev/null; }} |
  while read -r f; do f=${{f#/proc/}}; echo "${{f%%/*}}"; done | sort -un
}}
killed=''
for i in 1 2 3 4 5 6; do
  now=$(members)
  [ -z "$now" ] && break
  kill -KILL $now 2>/dev/null
  killed="$killed $now"
  sleep 0.02
done
echo "killed:" $(printf '%s\n' $killed | sort -un)
echo "left:" $(members)
"""


def run_token() -> str:
    """A fresh value for :data:`TOKEN_VAR` (random, so that only this command's processes carry it)."""
    return uuid.uuid4().hex


def kill_script(token: str, pgid: int | None, *, on_go: bool = False) -> str:
    """Shell text that SIGKILLs every process of a command and reports ``killed: <pids>`` / ``left: <pids>``.

    With ``on_go`` the script first waits for a line ``go <pgid>`` on its stdin (and exits, killing nothing,
    at end of input): a kill made ready ahead of a deadline, so that pulling the trigger costs no new session.

    A process belongs to the command when it is in the command's process group or session ``pgid`` (the
    group leader's pid), or carries the command's token in its environment (which survives ``setsid`` and
    re-parenting). It reads ``/proc``: the devices qc drives run Linux.
    """
    if on_go:
        start = 'read -r go g || exit 0; [ "$go" = go ] || exit 0; [ -n "$g" ] || g=none; '
    else:
        start = f"g={pgid if pgid is not None and pgid > 1 else 'none'}; "
    return _KILL_SCRIPT.format(start=start, token=shlex.quote(f"{TOKEN_VAR}={token}"))


def kill_outcome(report: str, pgid: int | None) -> str:
    """What a kill script's report says, as the end of a deadline error message."""
    killed: list[str] = []
    left: list[str] = []
    seen = False
    for line in report.splitlines():
        if line.startswith("killed:"):
            killed = line[len("killed:") :].split()
            seen = True
        elif line.startswith("left:"):
            left = line[len("left:") :].split()
    if not seen:
        return f"the kill script gave no report, so it is unknown what was killed ({last_line(report) or 'no output'})"
    group = f" (process group {pgid})" if pgid else ""
    if not killed:
        text = f"no process of it was left to kill{group}"
    else:
        text = f"killed {len(killed)} process(es) of it{group}: {' '.join(killed)}"
    if left:
        return text + f"; still running after SIGKILL: {' '.join(left)}"
    return text + "; none is left"
