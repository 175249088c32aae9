"""Deadlines are promises: against a device that stops answering, every call returns within its deadline + 1 s.

The stall is real: the sshd processes serving the test's own SSH connection are frozen with SIGSTOP (the TCP
connection stays open, the server just says nothing), before the call or in the middle of it. Every test thaws
them again (SIGCONT) in a ``finally``, whatever happens.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from qc.device import SshTransport
from qc.errors import DeviceError
from tests.integration.device.conftest import ConfigFactory
from tests.sshd import SshdServer, Stall

PROMISE_S = 1.0
"""A call returns at most this long after its deadline (the transport's documented promise)."""

DEADLINE_S = 3.0
BIG = 64 * 1024 * 1024

# paramiko's SFTP prefetch thread dies with "Socket is closed" when the connection is closed under it.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")


def _client_port(transport: SshTransport) -> int:
    client = transport._client
    ssh = client.get_transport() if client is not None else None
    assert ssh is not None, "the transport has no connection"
    port: int = ssh.sock.getsockname()[1]  # type: ignore[union-attr]
    return port


def _kill_marked(marker: str) -> None:
    """Kill what a stalled test left running (the command the device could not be asked to kill)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if marker in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    os.kill(int(entry.name), signal.SIGKILL)


@pytest.fixture
def stalled_transport(ssh_config: ConfigFactory) -> Iterator[SshTransport]:
    # io_timeout_s well above the deadline: a per-read timeout must not be what saves the deadline.
    with SshTransport(ssh_config(io_timeout_s=20.0, max_attempts=3)) as transport:
        yield transport


def _timed(call: Callable[[], object]) -> tuple[float, DeviceError]:
    start = time.monotonic()
    with pytest.raises(DeviceError) as info:
        call()
    return time.monotonic() - start, info.value


def _report(name: str, elapsed: float, error: DeviceError) -> None:
    print(f"\nSTALL {name}: returned after {elapsed:.2f} s, deadline {DEADLINE_S:g} s: {error}")


@pytest.mark.parametrize("when", ["before", "during"])
def test_run_returns_within_its_deadline_when_the_device_stalls(
    stalled_transport: SshTransport, sshd_server: SshdServer, when: str
) -> None:
    transport = stalled_transport
    marker = f"{40 + int.from_bytes(os.urandom(2), 'big') / 100000:.5f}"
    transport.connect()
    stall = sshd_server.stall(_client_port(transport))
    timer = threading.Timer(0.5, stall.stop)
    try:
        with stall:
            if when == "before":
                stall.stop()
            else:
                timer.start()
            elapsed, error = _timed(lambda: transport.run(["sleep", marker], deadline_s=DEADLINE_S))
            timer.cancel()
            assert stall.stopped_at is not None
    finally:
        timer.cancel()
        _kill_marked(f"sleep {marker}")
    _report(f"run ({when})", elapsed, error)
    message = str(error)
    assert elapsed < DEADLINE_S + PROMISE_S, message
    assert f"deadline of {DEADLINE_S:g} s" in message
    assert f"Command 'sleep {marker}'" in message
    # The device could not be asked to kill anything: the message must not claim it was.
    assert "killed" not in message.replace("could not be killed", "").replace("nothing could be killed", "")
    assert "may still be running" in message
    assert transport.run(["echo", "back"], deadline_s=10).stdout == "back\n"  # reconnects once it answers


def _big_file(path: Path) -> Path:
    with path.open("wb") as fh:
        fh.truncate(BIG)  # sparse: fast to make, still 64 MB to move
    return path


def _stop_after(stall: Stall, threshold: int) -> Callable[[int], None]:
    def progress(done: int) -> None:
        if done >= threshold:
            stall.stop()

    return progress


@pytest.mark.parametrize("when", ["before", "during"])
@pytest.mark.parametrize("operation", ["get", "put", "get_tree", "put_tree"])
def test_transfer_returns_within_its_deadline_when_the_device_stalls(
    stalled_transport: SshTransport, sshd_server: SshdServer, tmp_path: Path, operation: str, when: str
) -> None:
    transport = stalled_transport
    device = tmp_path / "device"
    device.mkdir()
    local = tmp_path / "local"
    local.mkdir()
    _big_file(device / "big.raw")
    _big_file(local / "big.raw")
    if operation == "get":
        transport.open_sftp()
    transport.connect()
    stall = sshd_server.stall(_client_port(transport))
    progress = _stop_after(stall, 1024 * 1024)
    calls: dict[str, Callable[[], None]] = {
        "get": lambda: transport.get(
            str(device / "big.raw"), tmp_path / "out" / "big.raw", deadline_s=DEADLINE_S, progress=progress
        ),
        "put": lambda: transport.put(
            local / "big.raw", str(device / "up.raw"), deadline_s=DEADLINE_S, progress=progress
        ),
        "get_tree": lambda: transport.get_tree(str(device), tmp_path / "out", deadline_s=DEADLINE_S, progress=progress),
        "put_tree": lambda: transport.put_tree(local, str(device / "tree"), deadline_s=DEADLINE_S, progress=progress),
    }
    with stall:
        if when == "before":
            stall.stop()
        elapsed, error = _timed(calls[operation])
        assert stall.stopped_at is not None, "the transfer ended before the stall"
    _report(f"{operation} ({when})", elapsed, error)
    message = str(error)
    assert elapsed < DEADLINE_S + PROMISE_S, message
    assert f"deadline of {DEADLINE_S:g} s" in message
    assert ("Download" if operation.startswith("get") else "Upload") in message
    assert not (tmp_path / "out" / "big.raw").exists()  # nothing partial at the final path
    assert not (device / "up.raw").exists()
