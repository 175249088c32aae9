"""A throwaway OpenSSH server on 127.0.0.1 for transport tests (a pytest plugin, loaded from tests/conftest.py).

``sshd_server`` (session scope) starts ``/usr/sbin/sshd -D -e -f <cfg>`` as the current user on a free port of
127.0.0.1 with a fresh ed25519 host key and a fresh client key, both made with ``ssh-keygen`` in a temporary folder.
Public-key login works for the current user; password authentication is enabled (``UsePAM no``, so passwords are
checked against the shadow file) so that a wrong password is refused by the server and not by the client.

``sshd_password_user`` (session scope, root only) adds a throwaway system user with a random password via
``useradd`` and ``chpasswd`` and removes it again at the end of the session.

If ``sshd`` is missing it is installed with ``apt-get install openssh-server`` when running as root on a system with
apt-get; otherwise the fixture fails with a message saying what to install.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from filelock import FileLock

SSHD = "/usr/sbin/sshd"
START_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class SshdServer:
    """A running throwaway sshd."""

    host: str
    port: int
    user: str
    client_key: Path
    known_hosts: Path
    host_key_line: str
    folder: Path
    log_path: Path
    pid: int

    def session_pids(self) -> list[int]:
        """Pids of the per-connection sshd processes (children of the listening sshd)."""
        pids: list[int] = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ")".
            fields = stat[stat.rfind(")") + 2 :].split()
            if len(fields) > 1 and int(fields[1]) == self.pid:
                pids.append(int(entry.name))
        return pids

    def kill_sessions(self) -> int:
        """SIGKILL every per-connection sshd process: every open SSH connection drops. Returns how many."""
        killed = 0
        for pid in self.session_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed += 1
        return killed

    def connection_pids(self, client_port: int) -> list[int]:
        """The sshd processes serving the connection from 127.0.0.1:``client_port`` (found via /proc/net/tcp).

        That is the listener's child whose process tree holds the connection's socket, and every sshd process
        below it (with privilege separation, the monitor and the unprivileged network child); not the user's
        commands, which keep running.
        """
        inode = _connection_inode(self.port, client_port)
        if inode is None:
            raise AssertionError(f"no TCP connection 127.0.0.1:{client_port} -> 127.0.0.1:{self.port} in /proc/net/tcp")
        for child in self.session_pids():
            tree = [pid for pid in [child, *_descendants(child)] if _comm(pid).startswith("sshd")]
            if any(inode in _socket_inodes(pid) for pid in tree):
                return tree
        raise AssertionError(f"no sshd process of {self.pid} holds the connection from port {client_port}")

    def stall(self, client_port: int) -> Stall:
        """A handle that freezes (SIGSTOP) and thaws (SIGCONT) the sshd serving one connection."""
        return Stall(self.connection_pids(client_port))

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class Stall:
    """SIGSTOP the sshd processes of one connection: the server keeps the TCP connection open and says nothing.

    Use as a context manager: whatever happens, the processes get SIGCONT again on exit (they then notice the
    closed connection and exit).
    """

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.stopped_at: float | None = None

    def stop(self) -> None:
        if self.stopped_at is None:
            for pid in self.pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGSTOP)
            self.stopped_at = time.monotonic()

    def resume(self) -> None:
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def __enter__(self) -> Stall:
        return self

    def __exit__(self, *exc: object) -> None:
        self.resume()


def _tcp_rows() -> list[list[str]]:
    rows: list[list[str]] = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            rows += [line.split() for line in Path(table).read_text().splitlines()[1:]]
    return rows


def _port(address: str) -> int:
    return int(address.rsplit(":", 1)[1], 16)


def _connection_inode(server_port: int, client_port: int) -> str | None:
    """The inode of the server side of the TCP connection client_port -> server_port."""
    for row in _tcp_rows():
        if len(row) > 9 and _port(row[1]) == server_port and _port(row[2]) == client_port:
            return row[9]
    return None


def _listening_inodes(port: int) -> set[str]:
    return {row[9] for row in _tcp_rows() if len(row) > 9 and _port(row[1]) == port and row[3] == "0A"}


def _socket_inodes(pid: int) -> set[str]:
    inodes: set[str] = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[len("socket:[") : -1])
    return inodes


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = (entry / "stat").read_text()
                children.setdefault(int(stat[stat.rfind(")") + 2 :].split()[1]), []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


@dataclass(frozen=True)
class PasswordUser:
    name: str
    password: str


def _ensure_sshd() -> str:
    if Path(SSHD).exists() or shutil.which("sshd"):
        return SSHD if Path(SSHD).exists() else str(shutil.which("sshd"))
    if os.geteuid() == 0 and shutil.which("apt-get"):
        proc = subprocess.run(
            ["apt-get", "install", "-y", "--no-install-recommends", "openssh-server"],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
        if proc.returncode != 0 or not Path(SSHD).exists():
            pytest.fail(
                "sshd is missing and 'apt-get install -y openssh-server' failed "
                f"(rc {proc.returncode}): {proc.stderr.strip()[-500:]}",
                pytrace=False,
            )
        return SSHD
    pytest.fail(
        "OpenSSH server (sshd) is not installed: install the 'openssh-server' package "
        "(e.g. 'sudo apt-get install openssh-server') to run the transport tests.",
        pytrace=False,
    )


def _keygen(path: Path) -> None:
    keygen = shutil.which("ssh-keygen")
    if keygen is None:
        pytest.fail("ssh-keygen is not installed: install the 'openssh-client' package.", pytrace=False)
    subprocess.run(
        [keygen, "-q", "-t", "ed25519", "-N", "", "-C", "qc-test", "-f", str(path)],
        check=True,
        capture_output=True,
    )


def free_port() -> int:
    """A TCP port of 127.0.0.1 that was free a moment ago (also used to get a surely closed port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_for_banner(port: int, proc: subprocess.Popen[bytes], deadline: float) -> bool:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
                if sock.recv(64).startswith(b"SSH-"):
                    return True
        except OSError:
            time.sleep(0.05)
    return False


def _config(folder: Path, port: int, user: str) -> str:
    root_login = "yes" if user == "root" else "no"
    return "\n".join(
        [
            f"Port {port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {folder / 'host_ed25519'}",
            f"PidFile {folder / 'sshd.pid'}",
            f"AuthorizedKeysFile {folder / 'authorized_keys'}",
            "StrictModes no",
            f"PermitRootLogin {root_login}",
            "PubkeyAuthentication yes",
            "PasswordAuthentication yes",
            "PermitEmptyPasswords no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "UseDNS no",
            "PrintMotd no",
            "PrintLastLog no",
            "X11Forwarding no",
            "AllowTcpForwarding no",
            "MaxStartups 100:30:200",
            "MaxSessions 64",
            "MaxAuthTries 6",
            "LoginGraceTime 30",
            "ClientAliveInterval 0",
            "Subsystem sftp internal-sftp",
            "LogLevel VERBOSE",
            "",
        ]
    )


@pytest.fixture(scope="session")
def sshd_server() -> Iterator[SshdServer]:
    """Start a throwaway sshd on 127.0.0.1 (session scope; one per xdist worker)."""
    sshd = _ensure_sshd()
    user = os.environ.get("USER") or os.environ.get("LOGNAME") or ""
    try:
        import pwd

        user = pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError):
        pass
    if os.geteuid() == 0:
        # Privilege-separation folder that sshd insists on when it runs as root (normally made by systemd).
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="qc-sshd-"))
    _keygen(folder / "host_ed25519")
    _keygen(folder / "client_ed25519")
    (folder / "authorized_keys").write_text((folder / "client_ed25519.pub").read_text())
    host_pub = (folder / "host_ed25519.pub").read_text().split()
    log_path = folder / "sshd.log"
    proc: subprocess.Popen[bytes] | None = None
    port = 0
    for _ in range(5):  # the port may be taken between probing and binding: try again
        port = free_port()
        (folder / "sshd_config").write_text(_config(folder, port, user))
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                [sshd, "-D", "-e", "-f", str(folder / "sshd_config")],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        if _wait_for_banner(port, proc, time.monotonic() + START_TIMEOUT_S) and _listening_inodes(
            port
        ) & _socket_inodes(proc.pid):
            break  # the banner came from OUR sshd (another rig may have taken the port in between)
        proc.kill()
        proc.wait()
        proc = None
    if proc is None:
        tail = log_path.read_text(errors="replace")[-2000:]
        shutil.rmtree(folder, ignore_errors=True)
        pytest.fail(f"The throwaway sshd did not start; its log ends with:\n{tail}", pytrace=False)
    host_key_line = f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}"
    known_hosts = folder / "known_hosts"
    known_hosts.write_text(host_key_line + "\n")
    server = SshdServer(
        host="127.0.0.1",
        port=port,
        user=user,
        client_key=folder / "client_ed25519",
        known_hosts=known_hosts,
        host_key_line=host_key_line,
        folder=folder,
        log_path=log_path,
        pid=proc.pid,
    )
    try:
        yield server
    finally:
        server.kill_sessions()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def sshd_password_user(sshd_server: SshdServer) -> Iterator[PasswordUser]:
    """A throwaway system user with a random password (root only; removed at the end of the session)."""
    if os.geteuid() != 0 or not (shutil.which("useradd") and shutil.which("chpasswd")):
        why = "a password login test needs root and useradd/chpasswd to create a throwaway user"
        if os.environ.get("CI"):  # in CI a missing component fails, never skips
            pytest.fail(why)
        pytest.skip(why)
    name = f"qcpw{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(18)
    # useradd/userdel lock /etc/passwd and give up when another worker holds it: serialise them.
    lock = FileLock(os.path.join(tempfile.gettempdir(), "qc-sshd-useradd.lock"))
    with lock:
        subprocess.run(
            ["useradd", "--no-create-home", "--home-dir", str(sshd_server.folder), "--shell", "/bin/sh", name],
            check=True,
            capture_output=True,
        )
        subprocess.run(["chpasswd"], input=f"{name}:{password}\n", text=True, check=True, capture_output=True)
    try:
        yield PasswordUser(name=name, password=password)
    finally:
        _remove_user(name, lock)


def _remove_user(name: str, lock: FileLock) -> None:
    """Kill what still runs as the throwaway user (sshd session processes exit asynchronously), then userdel."""
    import pwd

    try:
        uid = pwd.getpwnam(name).pw_uid
    except KeyError:
        return
    deadline = time.monotonic() + 10
    while True:
        for status in Path("/proc").glob("[0-9]*/status"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                uid_line = next(line for line in status.read_text().splitlines() if line.startswith("Uid:"))
                if int(uid_line.split()[1]) == uid:
                    os.kill(int(status.parent.name), signal.SIGKILL)
        with lock:
            proc = subprocess.run(["userdel", name], check=False, capture_output=True, text=True)
        if proc.returncode == 0:
            return
        if time.monotonic() > deadline:
            with lock:
                forced = subprocess.run(["userdel", "-f", name], check=False, capture_output=True, text=True)
            if forced.returncode != 0:
                warnings.warn(f"could not remove throwaway user {name}: {proc.stderr.strip()}", stacklevel=1)
            return
        time.sleep(0.2)
