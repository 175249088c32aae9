"""Transport pieces that need no SSH server: quoting, results, LocalTransport, config and secrets."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qc.device import CommandResult, LocalTransport, SshConfig, SshTransport, Transport, build_shell_command
from qc.device.transport.protocol import strip_pid_line
from qc.device.transport.sshconfig import Secret as _Secret
from qc.device.transport.transfer import parse_wc
from qc.errors import DeviceError

PROMISE_S = 1.0
"""A call returns at most this long after its deadline (the transport's documented promise)."""


def _sh(script: str) -> str:
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True).stdout


def test_argv_items_are_quoted_for_the_shell(tmp_path: Path) -> None:
    canary = tmp_path / "INJECTED"
    argv = ["printf", "%s\\n", f"a b; touch {canary}", "$(touch x)", "`id`", "it's", '"q"', "", "*"]
    script = build_shell_command(argv)
    assert _sh(script).split("\n")[:-1] == argv[2:]
    assert not canary.exists()


def test_env_and_cwd_are_quoted(tmp_path: Path) -> None:
    folder = tmp_path / "a dir; rm -rf nothing 'x'"
    folder.mkdir()
    script = build_shell_command(["sh", "-c", 'printf "%s|%s" "$V" "$PWD"'], env={"V": "$(id) 'y'"}, cwd=str(folder))
    assert _sh(script) == f"$(id) 'y'|{folder}"


def test_string_commands_run_after_cd_only(tmp_path: Path) -> None:
    script = build_shell_command("echo one; echo two", cwd=str(tmp_path / "missing"))
    proc = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=False)
    assert proc.returncode != 0
    assert proc.stdout == ""


@pytest.mark.parametrize("bad", [{"A-B": "1"}, {"1A": "1"}, {"A B": "1"}, {"": "x"}])
def test_invalid_env_names_are_refused(bad: dict[str, str]) -> None:
    with pytest.raises(DeviceError, match="environment variable name"):
        build_shell_command(["true"], env=bad)


def test_nul_bytes_and_empty_argv_are_refused() -> None:
    with pytest.raises(DeviceError, match="NUL"):
        build_shell_command(["echo", "a\x00b"])
    with pytest.raises(DeviceError, match="empty argv"):
        build_shell_command([])


def test_command_result_check() -> None:
    ok = CommandResult(rc=0, stdout="x", stderr="", duration_s=0.1)
    assert ok.check() is ok
    assert ok.ok
    bad = CommandResult(rc=2, stdout="", stderr="warning\nfatal: no such file\n", duration_s=0.1)
    with pytest.raises(DeviceError, match="snpe-net-run failed with exit status 2: fatal: no such file"):
        bad.check("snpe-net-run")


def test_pid_marker_line_is_stripped() -> None:
    assert strip_pid_line("__qc_pid__=123\nreal error\n") == ("real error\n", 123)
    assert strip_pid_line("noise\n__qc_pid__=7\n") == ("noise\n", 7)
    assert strip_pid_line("plain\n") == ("plain\n", None)


def test_parse_wc_listing() -> None:
    text = "   12 ./a.raw\n3 ./sub dir/b c.raw\n 15 total\n0 ./ x\n"
    assert parse_wc(text) == {"a.raw": 12, "sub dir/b c.raw": 3, " x": 0}


def test_local_transport_satisfies_the_protocol() -> None:
    assert isinstance(LocalTransport(), Transport)
    assert isinstance(SshTransport(SshConfig(host="127.0.0.1")), Transport)


def test_local_run(tmp_path: Path) -> None:
    t = LocalTransport()
    result = t.run(["sh", "-c", 'echo "$X"; pwd; echo e >&2'], deadline_s=10, env={"X": "v w"}, cwd=str(tmp_path))
    assert result.stdout == f"v w\n{tmp_path}\n"
    assert result.stderr == "e\n"
    assert result.rc == 0
    assert t.run("exit 4", deadline_s=10).rc == 4
    with pytest.raises(DeviceError, match="exit status 4"):
        t.run("exit 4", deadline_s=10, check=True)
    with pytest.raises(DeviceError, match="Cannot start"):
        t.run(["/no/such/program"], deadline_s=10)


def test_local_run_deadline_kills_the_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    start = time.monotonic()
    with pytest.raises(DeviceError, match=r"deadline of 0\.5 s") as info:
        LocalTransport().run(f"sleep 30 & echo $! > '{pid_file}'; wait", deadline_s=0.5)
    assert time.monotonic() - start < 0.5 + PROMISE_S  # the deadline is a promise
    assert re.search(r"killed 2 process\(es\) of it \(process group \d+\): \d+ \d+; none is left", str(info.value))
    child = int(pid_file.read_text())
    end = time.monotonic() + 5
    while Path(f"/proc/{child}").exists() and time.monotonic() < end:
        time.sleep(0.05)
    stat = Path(f"/proc/{child}/stat")
    assert not stat.exists() or stat.read_text().split(") ")[1].startswith("Z")


def test_local_deadline_kill_reaches_a_setsid_grandchild(tmp_path: Path) -> None:
    started, survived = tmp_path / "started", tmp_path / "survived"
    grandchild = f"touch {shlex.quote(str(started))}; sleep 1.5; touch {shlex.quote(str(survived))}"
    with pytest.raises(DeviceError, match=r"deadline of 0\.5 s") as info:
        LocalTransport().run(f"setsid sh -c {shlex.quote(grandchild)} & sleep 30", deadline_s=0.5)
    assert started.exists(), "the grandchild never started: the test proves nothing"
    assert re.search(r"killed [3-9] process\(es\) of it .*; none is left", str(info.value)), info.value
    time.sleep(2)  # past the moment the grandchild would have written its file
    assert not survived.exists(), "the setsid grandchild survived the kill"


def test_importing_qc_device_and_running_locally_does_not_load_paramiko() -> None:
    code = (
        "import sys, qc.device, qc.device.rundir, qc.device.pool\n"
        "from qc.device.transport import LocalTransport, SshConfig, SshTransport\n"
        "LocalTransport().run(['true'], deadline_s=30, check=True)\n"
        "SshConfig(host='127.0.0.1')\n"
        "assert 'paramiko' not in sys.modules, 'paramiko was imported'\n"
        "SshTransport(SshConfig(host='127.0.0.1'))\n"
        "assert 'paramiko' in sys.modules, 'an SshTransport did not load paramiko'\n"
    )
    root = Path(__file__).resolve().parents[3]
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=root, check=False)
    assert proc.returncode == 0, proc.stderr


def test_local_copies(tmp_path: Path) -> None:
    t = LocalTransport()
    src = tmp_path / "a.bin"
    src.write_bytes(os.urandom(5000))
    t.put(src, str(tmp_path / "dev" / "a.bin"))
    t.get(str(tmp_path / "dev" / "a.bin"), tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == src.read_bytes()
    tree = tmp_path / "tree"
    for i in range(20):
        (tree / f"d{i % 3}").mkdir(parents=True, exist_ok=True)
        (tree / f"d{i % 3}" / f"f{i}.raw").write_bytes(bytes([i]) * i)
    t.put_tree(tree, str(tmp_path / "dev" / "tree"))
    t.get_tree(str(tmp_path / "dev" / "tree"), tmp_path / "tree back")
    assert sorted(
        p.relative_to(tmp_path / "tree back").as_posix() for p in (tmp_path / "tree back").rglob("*.raw")
    ) == sorted(p.relative_to(tree).as_posix() for p in tree.rglob("*.raw"))
    with pytest.raises(DeviceError, match="not a regular file"):
        t.put(tmp_path / "missing", str(tmp_path / "x"))
    with pytest.raises(DeviceError, match="is not a folder"):
        t.put_tree(tmp_path / "missing", str(tmp_path / "x"))


def test_secret_never_shows_itself() -> None:
    secret = _Secret("hunter2-XYZ")
    assert "hunter2" not in repr(secret)
    assert "hunter2" not in str(secret)
    assert "hunter2" not in f"{secret}"
    assert secret.reveal() == "hunter2-XYZ"


def test_config_validation_and_repr() -> None:
    config = SshConfig(host="10.0.0.2", password_env="QC_PW")
    assert config.address == "10.0.0.2:22"
    assert "QC_PW" in repr(config)
    with pytest.raises(DeviceError, match="port"):
        SshConfig(host="h", port=0)
    with pytest.raises(DeviceError, match="environment variable name"):
        SshConfig(host="h", password_env="not valid")
    with pytest.raises(DeviceError, match="max_attempts"):
        SshConfig(host="h", max_attempts=0)


def test_password_read_from_dotenv_is_not_exposed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QC_UNIT_PW", raising=False)
    env_file = tmp_path / ".env"
    env_file.write_text("QC_UNIT_PW=from-dotenv-123\n")
    transport = SshTransport(SshConfig(host="127.0.0.1", password_env="QC_UNIT_PW", dotenv_path=env_file))
    transport._load_secrets()
    assert transport._password is not None
    assert transport._password.reveal() == "from-dotenv-123"
    assert "from-dotenv-123" not in repr(transport)
    assert "from-dotenv-123" not in repr(vars(transport))
    assert "QC_UNIT_PW" not in os.environ  # the .env file does not leak into the environment


def test_missing_password_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QC_UNIT_MISSING", raising=False)
    transport = SshTransport(SshConfig(host="127.0.0.1", password_env="QC_UNIT_MISSING", dotenv_path=tmp_path / ".e"))
    with pytest.raises(DeviceError, match=r"define QC_UNIT_MISSING in the environment or in .*\.e"):
        transport.connect()
