"""SshTransport against a real OpenSSH server on 127.0.0.1 (tests/sshd.py)."""

from __future__ import annotations

import logging
import os
import re
import secrets
import shlex
import socket
import threading
import time
from pathlib import Path

import pytest

from qc.device import RunDir, SshTransport
from qc.errors import DeviceError
from tests.integration.device.conftest import ConfigFactory
from tests.sshd import PasswordUser, SshdServer, free_port

PROMISE_S = 1.0
"""A call returns at most this long after its deadline (the transport's documented promise)."""

NASTY = "we ird 'q\"uote; touch INJECTED $(touch INJECTED2) `touch INJECTED3`"


def _tree(root: Path, count: int, size: int = 100) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for i in range(count):
        rel = f"d{i % 7}/sub {i % 3}/file_{i:04d}.bin" if i % 2 else f"top_{i:04d}.raw"
        data = os.urandom(size + i)
        files[rel] = data
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


def _read_tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _processes_with(needle: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if needle in cmdline:
                found.append(int(entry.name))
    return found


# ------------------------------------------------------------------------------------------------ commands


def test_run_argv_env_and_cwd(transport: SshTransport, tmp_path: Path) -> None:
    workdir = tmp_path / "work dir; x"
    workdir.mkdir()
    result = transport.run(
        ["sh", "-c", 'printf "%s|%s|%s" "$1" "$QC_VALUE" "$(pwd)"', "sh", "a b; c"],
        deadline_s=10,
        env={"QC_VALUE": "it's $HOME"},
        cwd=str(workdir),
    )
    assert result.rc == 0, result.stderr
    assert result.stdout == f"a b; c|it's $HOME|{workdir}"
    assert result.stderr == ""  # qc's pid marker line is stripped
    assert result.duration_s >= 0


def test_run_string_command_and_exit_status(transport: SshTransport) -> None:
    result = transport.run("echo out; echo err >&2; exit 3", deadline_s=10)
    assert (result.rc, result.stdout, result.stderr) == (3, "out\n", "err\n")
    with pytest.raises(DeviceError, match="exit status 3: err"):
        transport.run("echo err >&2; exit 3", deadline_s=10, check=True)


def test_run_drains_stdout_and_stderr_together(transport: SshTransport) -> None:
    # 4 MB to stderr before anything goes to stdout: reading only stdout would stall once the window fills.
    result = transport.run("head -c 4000000 /dev/zero >&2; head -c 3000000 /dev/zero", deadline_s=60)
    assert result.rc == 0
    assert len(result.stdout) == 3_000_000
    assert len(result.stderr) == 4_000_000


def test_command_timeout_kills_the_process(transport: SshTransport) -> None:
    marker = f"{30 + secrets.randbelow(1000) / 1000:.3f}"
    start = time.monotonic()
    with pytest.raises(DeviceError, match=r"deadline of 1 s") as info:
        transport.run(["sleep", marker], deadline_s=1)
    assert time.monotonic() - start < 1 + PROMISE_S  # the deadline is a promise
    assert "\n" not in str(info.value)
    assert re.search(r"killed \d+ process\(es\) of it .*none is left", str(info.value)), info.value
    end = time.monotonic() + 5
    while _processes_with(f"sleep {marker}") and time.monotonic() < end:
        time.sleep(0.1)
    assert _processes_with(f"sleep {marker}") == []
    assert transport.run(["true"], deadline_s=10).rc == 0  # the connection is still usable


def test_deadline_holds_while_output_keeps_flowing(transport: SshTransport) -> None:
    start = time.monotonic()
    with pytest.raises(DeviceError, match="deadline"):
        transport.run("while :; do echo flood; done", deadline_s=1)
    assert time.monotonic() - start < 1 + PROMISE_S  # the deadline is a promise


def test_reconnects_after_a_drop(transport: SshTransport, sshd_server: SshdServer) -> None:
    assert transport.run(["true"], deadline_s=10).rc == 0
    transport.disconnect()
    assert transport.run(["echo", "again"], deadline_s=10).stdout == "again\n"
    assert sshd_server.kill_sessions() >= 1
    time.sleep(0.2)
    assert transport.run(["echo", "and again"], deadline_s=10).stdout == "and again\n"


def test_running_command_is_not_rerun_after_a_drop(transport: SshTransport, sshd_server: SshdServer) -> None:
    assert transport.run(["true"], deadline_s=10).rc == 0
    timer = threading.Timer(0.5, sshd_server.kill_sessions)
    timer.start()
    try:
        with pytest.raises(DeviceError, match="not retried because it is not idempotent"):
            transport.run(["sleep", "5"], deadline_s=20)
    finally:
        timer.cancel()


# ------------------------------------------------------------------------------------------------ transfers


def test_put_and_get_one_file(transport: SshTransport, tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    src = tmp_path / "model.dlc"
    src.write_bytes(data)
    remote = str(tmp_path / "remote" / "model.dlc")
    (tmp_path / "remote").mkdir()
    seen: list[int] = []
    transport.put(src, remote, progress=seen.append)
    assert Path(remote).read_bytes() == data
    assert seen[-1] == len(data)
    back = tmp_path / "back" / "model.dlc"
    transport.get(remote, back)
    assert back.read_bytes() == data
    assert sorted(p.name for p in (tmp_path / "remote").iterdir()) == ["model.dlc"]  # no temporary left


def test_get_missing_file_is_a_device_error(transport: SshTransport, tmp_path: Path) -> None:
    with pytest.raises(DeviceError, match="does not exist"):
        transport.get(str(tmp_path / "nope.raw"), tmp_path / "nope.raw")
    assert not (tmp_path / "nope.raw").exists()


def test_put_tree_and_get_tree_200_files(transport: SshTransport, tmp_path: Path) -> None:
    src = tmp_path / "src"
    files = _tree(src, 200)
    (src / "empty folder").mkdir()
    remote = tmp_path / "device" / "inputs"
    transport.put_tree(src, str(remote))
    assert _read_tree(remote) == files
    assert (remote / "empty folder").is_dir()
    assert transport.remote_sizes(str(remote)) == {rel: len(data) for rel, data in files.items()}
    back = tmp_path / "back"
    transport.get_tree(str(remote), back)
    assert _read_tree(back) == files
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".qc-")] == []


def test_paths_with_spaces_quotes_and_semicolons(
    transport: SshTransport, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # where a locally injected "touch INJECTED" would land
    folder = tmp_path / NASTY
    src = tmp_path / "a.bin"
    src.write_bytes(b"x" * 1000)
    transport.run(["mkdir", "-p", str(folder)], deadline_s=10, check=True)
    remote_file = str(folder / f"file {NASTY}.bin")
    transport.put(src, remote_file)
    transport.get(remote_file, tmp_path / "b.bin")
    assert (tmp_path / "b.bin").read_bytes() == src.read_bytes()
    tree = tmp_path / "tree"
    (tree / NASTY).mkdir(parents=True)
    (tree / NASTY / f"{NASTY}.txt").write_text("hello")
    transport.put_tree(tree, str(folder / "tree"))
    transport.get_tree(str(folder / "tree"), tmp_path / "tree back")
    assert (tmp_path / "tree back" / NASTY / f"{NASTY}.txt").read_text() == "hello"
    result = transport.run(["ls", "-1"], deadline_s=10, cwd=str(folder), check=True)
    assert "tree" in result.stdout.splitlines()
    run_dir = RunDir(transport, str(folder), "nasty")
    with run_dir:
        transport.run(["touch", run_dir.join(NASTY)], deadline_s=10, check=True)
        run_dir.remove(NASTY)
        assert not Path(run_dir.join(NASTY)).exists()
    for name in ("INJECTED", "INJECTED2", "INJECTED3"):
        assert not list(tmp_path.rglob(name)), f"{name} was created: a path was executed by the shell"
        assert not Path("/root", name).exists()


# ------------------------------------------------------------------------------------------------ dropped connections


# paramiko's SFTP prefetch thread dies with "Socket is closed" when the connection drops under it (its own
# thread, outside qc's reach); the download itself reports the drop correctly.
_PREFETCH_THREAD = pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")


@_PREFETCH_THREAD
def test_drop_during_get_leaves_no_partial_file(
    ssh_config: ConfigFactory, sshd_server: SshdServer, tmp_path: Path
) -> None:
    big = tmp_path / "big.raw"
    big.write_bytes(os.urandom(24 * 1024 * 1024))
    target = tmp_path / "out" / "big.raw"
    fired: list[bool] = []

    def drop(done: int) -> None:
        if done > 2 * 1024 * 1024 and not fired:
            fired.append(True)
            sshd_server.kill_sessions()

    with SshTransport(ssh_config(max_attempts=1)) as transport, pytest.raises(DeviceError, match="connection lost"):
        transport.get(str(big), target, progress=drop)
    assert fired
    assert not target.exists()
    assert list((tmp_path / "out").iterdir()) == []


@_PREFETCH_THREAD
def test_drop_during_get_is_retried(ssh_config: ConfigFactory, tmp_path: Path) -> None:
    data = os.urandom(16 * 1024 * 1024)
    big = tmp_path / "big.raw"
    big.write_bytes(data)
    target = tmp_path / "out" / "big.raw"
    with SshTransport(ssh_config(max_attempts=3)) as transport:
        fired: list[bool] = []

        def drop(done: int) -> None:
            if done > 2 * 1024 * 1024 and not fired:
                fired.append(True)
                transport.disconnect()

        transport.get(str(big), target, progress=drop)
    assert fired
    assert target.read_bytes() == data
    assert sorted(p.name for p in target.parent.iterdir()) == ["big.raw"]


def test_drop_during_put_is_retried_without_leftovers(ssh_config: ConfigFactory, tmp_path: Path) -> None:
    data = os.urandom(16 * 1024 * 1024)
    src = tmp_path / "big.raw"
    src.write_bytes(data)
    remote_dir = tmp_path / "device"
    remote_dir.mkdir()
    with SshTransport(ssh_config(max_attempts=3)) as transport:
        fired: list[bool] = []

        def drop(done: int) -> None:
            if done > 2 * 1024 * 1024 and not fired:
                fired.append(True)
                transport.disconnect()

        transport.put(src, str(remote_dir / "big.raw"), progress=drop)
    assert fired
    assert (remote_dir / "big.raw").read_bytes() == data
    assert sorted(p.name for p in remote_dir.iterdir()) == ["big.raw"]


def test_drop_during_get_tree_keeps_nothing(ssh_config: ConfigFactory, sshd_server: SshdServer, tmp_path: Path) -> None:
    remote = tmp_path / "device"
    remote.mkdir()
    for i in range(40):
        (remote / f"out_{i:02d}.raw").write_bytes(os.urandom(512 * 1024))
    target = tmp_path / "results"
    fired: list[bool] = []

    def drop(done: int) -> None:
        if done > 4 * 1024 * 1024 and not fired:
            fired.append(True)
            sshd_server.kill_sessions()

    with SshTransport(ssh_config(max_attempts=1)) as transport, pytest.raises(DeviceError, match="connection lost"):
        transport.get_tree(str(remote), target, progress=drop)
    assert fired
    assert not target.exists() or list(target.iterdir()) == []
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".qc-")] == []


def test_drop_during_put_tree_is_retried(ssh_config: ConfigFactory, tmp_path: Path) -> None:
    src = tmp_path / "src"
    files = _tree(src, 30, size=300 * 1024)
    remote = tmp_path / "device"
    with SshTransport(ssh_config(max_attempts=3)) as transport:
        fired: list[bool] = []

        def drop(done: int) -> None:
            if done > 2 * 1024 * 1024 and not fired:
                fired.append(True)
                transport.disconnect()

        transport.put_tree(src, str(remote), progress=drop)
    assert fired
    assert _read_tree(remote) == files


# ------------------------------------------------------------------------------------------------ connecting


def test_unknown_host_key_is_refused(ssh_config: ConfigFactory, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("")
    with SshTransport(ssh_config(known_hosts=known)) as transport, pytest.raises(DeviceError) as info:
        transport.run(["true"], deadline_s=10)
    message = str(info.value)
    assert "is not in" in message
    assert "SHA256:" in message
    assert "trust_new_host_key" in message
    assert known.read_text() == ""


def test_trust_new_host_key_records_it(ssh_config: ConfigFactory, sshd_server: SshdServer, tmp_path: Path) -> None:
    known = tmp_path / "ssh" / "known_hosts"
    with SshTransport(ssh_config(known_hosts=known, trust_new_host_key=True)) as transport:
        assert transport.run(["true"], deadline_s=10).rc == 0
    recorded = known.read_text().split()
    expected = sshd_server.host_key_line.split()
    assert recorded == expected
    assert oct(known.stat().st_mode & 0o777) == "0o600"
    with SshTransport(ssh_config(known_hosts=known)) as transport:  # now known: no trust needed
        assert transport.run(["true"], deadline_s=10).rc == 0


def test_changed_host_key_is_refused(ssh_config: ConfigFactory, sshd_server: SshdServer, tmp_path: Path) -> None:
    other = (sshd_server.folder / "client_ed25519.pub").read_text().split()
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{sshd_server.port} {other[0]} {other[1]}\n")
    with (
        SshTransport(ssh_config(known_hosts=known, trust_new_host_key=True)) as transport,
        pytest.raises(DeviceError, match="changed"),
    ):
        transport.run(["true"], deadline_s=10)


def test_wrong_password_does_not_leak(
    ssh_config: ConfigFactory, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    password = "S3cret-" + secrets.token_hex(12)
    monkeypatch.setenv("QC_TEST_SSH_PASSWORD", password)
    caplog.set_level(logging.DEBUG)
    config = ssh_config(key_file=None, password_env="QC_TEST_SSH_PASSWORD", max_attempts=1)
    transport = SshTransport(config)
    with pytest.raises(DeviceError) as info:
        transport.run(["true"], deadline_s=10)
    transport.close()
    texts = [str(info.value), repr(info.value), repr(transport), repr(config), caplog.text]
    texts += [str(getattr(info.value, "__cause__", "")), str(getattr(info.value, "__context__", ""))]
    assert "Authentication" in str(info.value)
    assert "QC_TEST_SSH_PASSWORD" in str(info.value)
    for text in texts:
        assert password not in text
    assert caplog.text  # paramiko logged the failed attempt at DEBUG: the check above is not vacuous


def test_missing_password_variable_is_named(ssh_config: ConfigFactory, tmp_path: Path) -> None:
    config = ssh_config(key_file=None, password_env="QC_NO_SUCH_VARIABLE", dotenv_path=tmp_path / ".env")
    with SshTransport(config) as transport, pytest.raises(DeviceError, match="QC_NO_SUCH_VARIABLE"):
        transport.connect()


def test_password_login_from_dotenv(
    ssh_config: ConfigFactory, sshd_password_user: PasswordUser, tmp_path: Path
) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(f"QC_DEVICE_PASSWORD='{sshd_password_user.password}'\n")
    config = ssh_config(
        username=sshd_password_user.name, key_file=None, password_env="QC_DEVICE_PASSWORD", dotenv_path=env_file
    )
    assert "QC_DEVICE_PASSWORD" not in os.environ
    with SshTransport(config) as transport:
        assert transport.run(["id", "-un"], deadline_s=10).stdout.strip() == sshd_password_user.name


def test_unreachable_device_fails_fast_on_one_line(ssh_config: ConfigFactory) -> None:
    port = free_port()  # nothing listens there any more
    config = ssh_config(port=port, connect_timeout_s=30.0)
    start = time.monotonic()
    with SshTransport(config) as transport, pytest.raises(DeviceError) as info:
        transport.run(["true"], deadline_s=60)
    # A refused connection is final: no wait for the connect timeout, no retries until the deadline.
    assert time.monotonic() - start < config.connect_timeout_s
    message = str(info.value)
    assert f"127.0.0.1:{port}" in message
    assert "unreachable" in message
    assert "\n" not in message


def test_silent_server_fails_within_the_connect_timeout(ssh_config: ConfigFactory) -> None:
    with socket.socket() as listener:  # accepts TCP connections (backlog) but never speaks SSH
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        port = listener.getsockname()[1]
        start = time.monotonic()
        with (
            SshTransport(ssh_config(port=port, connect_timeout_s=1.5)) as transport,
            pytest.raises(DeviceError) as info,
        ):
            transport.connect()
        # the handshake waits for the banner up to connect_timeout_s, then gives up (a deadline, generous bound)
        assert time.monotonic() - start < 1.5 + PROMISE_S
    assert f"127.0.0.1:{port}" in str(info.value)
    assert "\n" not in str(info.value)


def test_transfer_errors_on_the_device_are_reported(transport: SshTransport, tmp_path: Path) -> None:
    with pytest.raises(DeviceError, match=r"Listing .* failed with exit status"):
        transport.get_tree(str(tmp_path / "no such folder"), tmp_path / "out")
    assert not (tmp_path / "out").exists()
    blocker = tmp_path / "a file"
    blocker.write_text("x")
    src = tmp_path / "src"
    _tree(src, 3)
    with pytest.raises(DeviceError, match=r"tar on 127\.0\.0\.1:.* (failed|stopped early)"):
        transport.put_tree(src, str(blocker / "sub"))
    with pytest.raises(DeviceError, match="Upload of"):
        transport.put(src / "top_0000.raw", str(blocker / "x.raw"))


# ------------------------------------------------------------------------------------------------ run folder


def test_run_dir_over_ssh(transport: SshTransport, tmp_path: Path) -> None:
    outside = tmp_path / "precious.txt"
    outside.write_text("keep")
    (tmp_path / "root").mkdir()
    with RunDir(transport, str(tmp_path / "root"), "r1") as run_dir:
        assert Path(run_dir.path).is_dir()
        transport.run(["mkdir", "-p", run_dir.join("a/b")], deadline_s=10, check=True)
        transport.run(["ln", "-s", str(tmp_path), run_dir.join("escape")], deadline_s=10, check=True)
        for bad in ("../../precious.txt", str(outside), "a/../../x", "", ".", run_dir.path, "escape/precious.txt"):
            with pytest.raises(DeviceError, match="Refusing to delete"):
                run_dir.remove(bad)
        assert outside.read_text() == "keep"
        run_dir.remove("escape")  # the link itself is inside: removing it does not follow it
        assert outside.exists()
        assert tmp_path.is_dir()
        run_dir.remove("a")
        assert not Path(run_dir.path, "a").exists()
    assert not Path(run_dir.path).exists()


# ------------------------------------------------------------------------------------------------ killing for real


def test_deadline_kill_reaches_a_setsid_grandchild(transport: SshTransport, tmp_path: Path) -> None:
    """A process that left the command's session with setsid is killed too, and the message says what died."""
    survived = tmp_path / "survived"
    started = tmp_path / "started"
    grandchild = f"touch {shlex.quote(str(started))}; sleep 8; touch {shlex.quote(str(survived))}"
    command = f"setsid sh -c {shlex.quote(grandchild)} & sleep 30"
    start = time.monotonic()
    with pytest.raises(DeviceError) as info:
        transport.run(command, deadline_s=3)
    elapsed = time.monotonic() - start
    message = str(info.value)
    assert elapsed < 3 + PROMISE_S, message
    assert started.exists(), "the grandchild never started: the test proves nothing"
    assert "exceeded its deadline of 3 s" in message
    # the session shell, sleep 30, the setsid shell and its sleep 8
    assert re.search(r"killed [4-9] process\(es\) of it \(process group \d+\): [\d ]+; none is left", message), message
    time.sleep(6)  # past the moment the grandchild would have written its file
    assert not survived.exists(), "the setsid grandchild survived the kill"
