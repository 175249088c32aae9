"""LocalTransport: the Transport contract on this machine (an SDK installed locally), with subprocess and copies."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from qc.device.transport.protocol import (
    ENV_NAME,
    TOKEN_VAR,
    Command,
    CommandResult,
    Progress,
    command_text,
    deadline_from,
    kill_outcome,
    kill_script,
    run_token,
    shown,
)
from qc.device.transport.transfer import check_tree_sizes, local_files, merge_tree, tmp_sibling
from qc.errors import DeviceError

__all__ = ["LocalTransport"]

_KILL_BUDGET_S = 0.8


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
        deadline = deadline_from(deadline_s, deadline_s)
        for key in env or {}:
            if not ENV_NAME.match(key):
                raise DeviceError(f"Invalid environment variable name {key!r}.")
        token = run_token()
        full_env = {**os.environ, **(env or {}), TOKEN_VAR: token}
        command_text(command)  # validates argv items
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
            raise DeviceError(f"Cannot start '{shown(command)}' on this machine: {exc.strerror or exc}.") from None
        try:
            out, err = proc.communicate(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            outcome = _kill(proc, token)
            raise DeviceError(
                f"Command '{shown(command)}' on this machine exceeded its deadline of {deadline_s:g} s; {outcome}."
            ) from None
        result = CommandResult(
            rc=proc.returncode,
            stdout=out.decode("utf-8", errors="replace"),
            stderr=err.decode("utf-8", errors="replace"),
            duration_s=time.monotonic() - start,
        )
        return result.check(f"Command '{shown(command)}' on this machine") if check else result

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
        tmp = tmp_sibling(dst)
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
        _dirs, files = local_files(src)
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
            check_tree_sizes(f"Copy of {src} to {dst}", staging, {rel: size for rel, _p, size in files})
            merge_tree(staging, dst)
        except OSError as exc:
            raise DeviceError(f"Cannot copy {src} to {dst}: {exc.strerror or exc}.") from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _kill(proc: subprocess.Popen[bytes], token: str) -> str:
    """Kill every process of a timed-out command (its session, and whatever carries its token); say what died."""
    env = {k: v for k, v in os.environ.items() if k != TOKEN_VAR}
    try:
        report = subprocess.run(
            ["sh", "-c", kill_script(token, proc.pid)],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=_KILL_BUDGET_S,
            check=False,
        ).stdout.decode("utf-8", errors="replace")
        outcome = kill_outcome(report, proc.pid)
    except (OSError, subprocess.TimeoutExpired) as exc:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        outcome = f"its process group {proc.pid} was sent SIGKILL (the kill script failed: {exc})"
    try:
        proc.communicate(timeout=0.2)
    except subprocess.TimeoutExpired:  # a survivor still holds the pipes: stop reading them
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=0.2)
    return outcome
