"""Commands over SSH: one exec session per command, and the kill that keeps a deadline's promise.

A command runs in a fresh session whose shell sshd makes a session and process-group leader. The shell prints
its pid first (stripped from stderr) and exports a random run token that every descendant inherits, even one
that leaves the group with ``setsid``. When the command is still running :data:`KILL_ARM_S` before its
deadline, a second session is opened that waits to kill it (:func:`~qc.device.transport.protocol.kill_script`);
at the deadline one line pulls the trigger, so the kill costs no session setup when time is shortest. The
kill gets :data:`KILL_BUDGET_S`; the error says what it killed, or that the device could not be reached.
"""

from __future__ import annotations

import logging
import select
import time
from typing import TYPE_CHECKING

from qc.device.transport.channel import (
    CHUNK,
    ConnectionLostError,
    DeadlineExceededError,
    DeadlinePassedError,
    close_quietly,
    drain_stderr,
    has_exit_status,
    kill_errors,
    lost_errors,
)
from qc.device.transport.protocol import (
    PID_MARK,
    TOKEN_VAR,
    CommandResult,
    decode,
    kill_outcome,
    kill_script,
    run_token,
    strip_pid_line,
)

if TYPE_CHECKING:
    import paramiko

    from qc.device.transport.ssh import SshTransport

log = logging.getLogger("qc.device")

KILL_BUDGET_S = 0.6
"""How long after its deadline a command's kill may take (the watchdog waits for it, plus the grace)."""

KILL_ARM_S = 2.0
"""How long before its deadline a still running command gets its kill made ready (a waiting second session)."""


def exec_script(
    t: SshTransport, client: paramiko.SSHClient, script: str, text: str, deadline: float, deadline_s: float
) -> CommandResult:
    """Run ``script`` (shown as ``text``) in a fresh session marked with a run token; kill it at the deadline.

    sshd makes each session's shell a session and process-group leader; the shell prints its pid first
    (stripped from stderr) and exports the token, which every descendant inherits, even one that left the
    group with ``setsid``.
    """
    start = time.monotonic()
    token = run_token()
    wrapped = f"{TOKEN_VAR}={token}; export {TOKEN_VAR}; printf '{PID_MARK}%s\\n' \"$$\" >&2; {script}"
    chan = t._open_channel(client, wrapped)
    out: list[bytes] = []
    err: list[bytes] = []
    arm_at = deadline - min(KILL_ARM_S, deadline_s / 2)
    killer: paramiko.Channel | None = None
    armed = False
    try:
        while True:
            if not armed and time.monotonic() >= arm_at:
                armed = True
                killer = arm_kill(t, client, token, deadline)
            got = False
            while chan.recv_ready():
                data = chan.recv(CHUNK)
                if not data:
                    break
                out.append(data)
                got = True
            while chan.recv_stderr_ready():
                data = chan.recv_stderr(CHUNK)
                if not data:
                    break
                err.append(data)
                got = True
            remaining = deadline - time.monotonic()
            if remaining <= 0 and not (chan.closed or (chan.eof_received and chan.exit_status_ready())):
                stderr, pid = strip_pid_line(decode(err))
                log.debug("Partial stderr of timed-out command %s: %s", text, stderr[-2000:])
                t.postpone_watchdog(deadline + KILL_BUDGET_S)
                outcome = kill_remote(t, client, token, pid, deadline + KILL_BUDGET_S, killer)
                killer = None
                raise DeadlinePassedError(
                    f"Command '{text}' on {t.config.address} exceeded its deadline of {deadline_s:g} s; {outcome}."
                )
            if got:
                continue
            if chan.closed or (chan.eof_received and chan.exit_status_ready()):
                break
            if not t._alive():
                raise ConnectionLostError("connection dropped while the command ran", started=True)
            select.select([chan], [], [], min(0.1, max(0.0, remaining)))
        if not has_exit_status(chan) and (not chan.eof_received or not t._alive()):
            # Closed without EOF: the transport unlinked the channel because the connection died.
            raise ConnectionLostError("connection dropped while the command ran", started=True)
        rc = chan.exit_status if has_exit_status(chan) else -1
    except lost_errors() as exc:
        raise t._lost_or_error(f"Command '{text}'", exc, started=True) from None
    finally:
        close_quietly(chan)
        if killer is not None:
            close_quietly(killer)  # end of input: the waiting kill exits without killing
    stderr, _pid = strip_pid_line(decode(err))
    return CommandResult(rc=rc, stdout=decode(out), stderr=stderr, duration_s=time.monotonic() - start)


def arm_kill(t: SshTransport, client: paramiko.SSHClient, token: str, deadline: float) -> paramiko.Channel | None:
    """Start a second session that waits to kill the command (None if the device does not answer in time)."""
    try:
        return t._open_channel(
            client, kill_script(token, None, on_go=True), timeout_s=max(0.05, deadline - time.monotonic())
        )
    except kill_errors() as exc:
        log.debug("Could not make the kill ready on %s: %r", t.config.address, exc)
        return None


def kill_remote(
    t: SshTransport,
    client: paramiko.SSHClient,
    token: str,
    pid: int | None,
    until: float,
    killer: paramiko.Channel | None,
) -> str:
    """SIGKILL every process of a timed-out command through a second channel; say truthfully what happened.

    Uses the ``killer`` session made ready before the deadline when there is one, else opens one. Gives up at
    ``until``: a device that cannot run the kill by then is treated as stalled, and the connection is closed.
    """
    chan = killer
    report: list[bytes] = []
    try:
        if chan is None:
            chan = t._open_channel(client, kill_script(token, pid), timeout_s=max(0.05, until - time.monotonic()))
        else:
            chan.settimeout(max(0.05, until - time.monotonic()))
            chan.sendall(f"go {pid if pid is not None and pid > 1 else 'none'}\n".encode())
            chan.shutdown_write()
        while not (chan.eof_received and chan.exit_status_ready()) and not chan.closed:
            remaining = until - time.monotonic()
            if remaining <= 0:
                break
            select.select([chan], [], [], min(0.05, remaining))
            while chan.recv_ready():
                report.append(chan.recv(CHUNK))
        while chan.recv_ready():
            report.append(chan.recv(CHUNK))
        done = chan.eof_received and chan.exit_status_ready()
    except kill_errors() as exc:
        log.debug("Killing a timed-out command on %s failed: %r", t.config.address, exc)
        done = False
    finally:
        if chan is not None:
            close_quietly(chan)
    if not done:
        t.abort()
        group = f"its process group {pid}" if pid else "its processes"
        return (
            f"it could not be killed: the device did not run the kill within {KILL_BUDGET_S:g} s, so the "
            f"connection was closed and {group} may still be running"
        )
    return kill_outcome(decode(report), pid)


def finish(t: SshTransport, chan: paramiko.Channel, deadline: float, stderr: list[bytes], what: str) -> int:
    """Wait for a transfer command's exit status (draining its output); -1 when none came."""
    while not (chan.closed or (chan.eof_received and chan.exit_status_ready())):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DeadlineExceededError
        drain_stderr(chan, stderr)
        while chan.recv_ready():
            chan.recv(CHUNK)
        if not t._alive():
            raise ConnectionLostError(f"connection dropped during {what}", started=True)
        select.select([chan], [], [], min(0.1, remaining))
    drain_stderr(chan, stderr)
    if not has_exit_status(chan) and (not chan.eof_received or not t._alive()):
        raise ConnectionLostError(f"connection dropped during {what}", started=True)
    return chan.exit_status if has_exit_status(chan) else -1
