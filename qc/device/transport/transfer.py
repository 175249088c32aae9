"""Moving files: the staging helpers both transports use, and the SSH transfers (SFTP for one file, one tar
stream over an exec channel for a folder).

Every transfer first lands in a temporary sibling (a ``.qc-part-`` file or a ``.qc-get-`` staging folder) and is
only moved to its final path after its size matched: a broken or timed-out transfer leaves no partial file there.
The SSH functions take the :class:`~qc.device.transport.ssh.SshTransport` whose connection, retries and deadline
watchdog they run under.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
import shutil
import stat
import tarfile
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from qc.device.transport import commands
from qc.device.transport.channel import (
    ChannelReader,
    ChannelWriter,
    ConnectionLostError,
    DeadlineExceededError,
    DeadlinePassedError,
    close_quietly,
    drain_stderr,
    has_exit_status,
    lost_errors,
    tar_or_lost_errors,
)
from qc.device.transport.protocol import Progress, decode, last_line, quote_remote_path, strip_pid_line
from qc.errors import DeviceError

if TYPE_CHECKING:
    import paramiko

    from qc.device.transport.ssh import SshTransport

# ----------------------------------------------------------------------------------------------------
# Local staging helpers shared by both transports


def local_files(local_dir: Path) -> tuple[list[str], list[tuple[str, Path, int]]]:
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


def tmp_sibling(path: Path) -> Path:
    return path.with_name(f".{path.name}.qc-part-{uuid.uuid4().hex[:12]}")


def merge_tree(staging: Path, target: Path) -> None:
    """Move every file of ``staging`` to the same relative path below ``target`` (replacing files)."""
    target.mkdir(parents=True, exist_ok=True)
    for root, _dirnames, filenames in os.walk(staging):
        rel = Path(root).relative_to(staging)
        (target / rel).mkdir(parents=True, exist_ok=True)
        for name in filenames:
            os.replace(Path(root) / name, target / rel / name)


def check_tree_sizes(where: str, folder: Path, expected: Mapping[str, int]) -> None:
    for rel, size in expected.items():
        path = folder / rel
        try:
            got = path.stat().st_size
        except OSError:
            raise DeviceError(f"{where}: {rel} is missing after the transfer.") from None
        if got != size:
            raise DeviceError(f"{where}: {rel} has {got} bytes after the transfer, expected {size}.")


# ----------------------------------------------------------------------------------------------------
# SSH: one file over SFTP


def sftp_put(
    t: SshTransport,
    local: str | os.PathLike[str],
    remote: str,
    deadline: float,
    deadline_s: float,
    progress: Progress | None,
) -> None:
    """Upload one file via SFTP to a temporary name, check its size, then rename it into place."""
    src = Path(local)
    if not src.is_file():
        raise DeviceError(f"Cannot upload {src}: not a regular file.")
    size = src.stat().st_size
    what = f"Upload of {src} to {remote}"
    orphans: list[str] = []

    def op(client: paramiko.SSHClient) -> None:
        del client
        sftp = t._sftp_or_lost()
        for orphan in orphans:  # a temporary file of an attempt whose connection died
            with contextlib.suppress(*lost_errors()):
                sftp.remove(orphan)
        orphans.clear()
        tmp = posixpath.join(
            posixpath.dirname(remote), f".{posixpath.basename(remote)}.qc-part-{uuid.uuid4().hex[:12]}"
        )
        try:
            sftp.put(str(src), tmp, callback=sftp_callback(deadline, progress), confirm=True)
            got = sftp.stat(tmp).st_size
            if got != size:
                if not t._alive_settled():
                    raise ConnectionLostError(f"the device has {got} of {size} bytes", started=True)
                raise DeviceError(f"{what}: the device has {got} bytes, expected {size}.")
            try:
                sftp.posix_rename(tmp, remote)
            except OSError:
                if not t._alive_settled():
                    raise
                with contextlib.suppress(OSError):
                    sftp.remove(remote)
                sftp.rename(tmp, remote)
        except DeadlineExceededError:
            _remove_quietly(sftp, tmp)
            raise DeadlinePassedError(
                f"{what} on {t.config.address} exceeded its deadline of {deadline_s:g} s; the partial file was removed."
            ) from None
        except DeviceError:
            _remove_quietly(sftp, tmp)
            raise
        except ConnectionLostError:
            orphans.append(tmp)
            raise
        except lost_errors() as exc:
            if t._alive():
                _remove_quietly(sftp, tmp)
            else:
                orphans.append(tmp)
            raise t._lost_or_error(what, exc, started=True) from None

    t._retrying(what, op, idempotent=True, deadline=deadline, deadline_s=deadline_s)


def sftp_get(
    t: SshTransport,
    remote: str,
    local: str | os.PathLike[str],
    deadline: float,
    deadline_s: float,
    progress: Progress | None,
) -> None:
    """Download one file via SFTP (bounded prefetch) to a temporary sibling, check its size, rename it."""
    dst = Path(local)
    what = f"Download of {remote} to {dst}"
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DeviceError(f"{what}: cannot create {dst.parent}: {exc.strerror or exc}.") from None

    def op(client: paramiko.SSHClient) -> None:
        del client
        sftp = t._sftp_or_lost()
        tmp = tmp_sibling(dst)
        try:
            try:
                size = sftp.stat(remote).st_size
            except FileNotFoundError:
                raise DeviceError(f"{what}: {remote} does not exist on {t.config.address}.") from None
            sftp.get(
                remote,
                str(tmp),
                callback=sftp_callback(deadline, progress),
                prefetch=True,
                max_concurrent_prefetch_requests=t.config.sftp_max_prefetch,
            )
            got = tmp.stat().st_size
            if got != size:
                # paramiko ends a download quietly when the connection drops: only the size tells.
                if not t._alive_settled():
                    join_prefetch_threads(min(2.0, deadline - time.monotonic()))
                    raise ConnectionLostError(f"received {got} of {size} bytes", started=False)
                raise DeviceError(f"{what}: received {got} bytes, expected {size}.")
            os.replace(tmp, dst)
        except DeadlineExceededError:
            raise DeadlinePassedError(
                f"{what} on {t.config.address} exceeded its deadline of {deadline_s:g} s; nothing was kept."
            ) from None
        except lost_errors() as exc:
            error = t._lost_or_error(what, exc, started=False)
            if isinstance(error, ConnectionLostError):
                join_prefetch_threads(min(2.0, deadline - time.monotonic()))
            raise error from None
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()

    t._retrying(what, op, idempotent=True, deadline=deadline, deadline_s=deadline_s)


def _remove_quietly(sftp: paramiko.SFTPClient, path: str) -> None:
    with contextlib.suppress(*lost_errors()):
        sftp.remove(path)


# ----------------------------------------------------------------------------------------------------
# SSH: folders as one tar stream


def remote_sizes(
    t: SshTransport, client: paramiko.SSHClient, remote_dir: str, deadline: float, deadline_s: float
) -> dict[str, int]:
    """Sizes of the regular files below ``remote_dir``, keyed by POSIX path relative to it."""
    script = f"cd -- {quote_remote_path(remote_dir)} && find . -type f -exec wc -c {{}} +"
    result = commands.exec_script(t, client, script, script, deadline, deadline_s)
    if result.rc != 0:
        raise DeviceError(
            f"Listing {remote_dir} on {t.config.address} failed with exit status {result.rc}: "
            f"{last_line(result.stderr) or 'no output'}"
        )
    return parse_wc(result.stdout)


def tar_put_tree(
    t: SshTransport,
    local_dir: str | os.PathLike[str],
    remote_dir: str,
    deadline: float,
    deadline_s: float,
    progress: Progress | None,
) -> None:
    """Send a local folder as one tar stream into ``remote_dir`` (created), then check file sizes."""
    src = Path(local_dir)
    dirs, files = local_files(src)
    what = f"Upload of folder {src} to {remote_dir}"
    qdir = quote_remote_path(remote_dir)
    command = f"mkdir -p -- {qdir} && tar -C {qdir} -xf -"

    def op(client: paramiko.SSHClient) -> None:
        chan = t._open_channel(client, command)
        writer = ChannelWriter(chan, deadline, t.config.io_timeout_s, progress)
        try:
            try:
                with tarfile.open(fileobj=writer, mode="w|", format=tarfile.GNU_FORMAT) as tar:  # type: ignore[call-overload]
                    for rel in dirs:
                        tar.addfile(_dir_info(rel))
                    for rel, path, size in files:
                        with path.open("rb") as fh:
                            tar.addfile(_file_info(rel, path, size), fh)
                chan.shutdown_write()
                rc = commands.finish(t, chan, deadline, writer.stderr, what)
            except DeadlineExceededError:
                raise DeadlinePassedError(
                    f"{what} on {t.config.address} exceeded its deadline of {deadline_s:g} s; files already sent "
                    f"may remain in {remote_dir} on the device."
                ) from None
            except lost_errors() as exc:
                if isinstance(exc, OSError) and exc.filename is not None:
                    raise DeviceError(f"{what}: cannot read {exc.filename}: {exc.strerror}.") from None
                if has_exit_status(chan):
                    drain_stderr(chan, writer.stderr)
                    stderr, _pid = strip_pid_line(decode(writer.stderr))
                    raise DeviceError(
                        f"{what}: tar on {t.config.address} stopped early (exit status {chan.exit_status}): "
                        f"{last_line(stderr) or exc}"
                    ) from None
                raise t._lost_or_error(what, exc, started=True) from None
        finally:
            close_quietly(chan)
        stderr, _pid = strip_pid_line(decode(writer.stderr))
        if rc != 0:
            raise DeviceError(
                f"{what}: tar on {t.config.address} failed with exit status {rc}: {last_line(stderr) or 'no output'}"
            )
        sizes = remote_sizes(t, client, remote_dir, deadline, deadline_s)
        for rel, _path, size in files:
            got = sizes.get(rel)
            if got != size:
                raise DeviceError(
                    f"{what}: {rel} has {'no file' if got is None else f'{got} bytes'} on the device, expected {size}."
                )

    t._retrying(what, op, idempotent=True, deadline=deadline, deadline_s=deadline_s)


def tar_get_tree(
    t: SshTransport,
    remote_dir: str,
    local_dir: str | os.PathLike[str],
    deadline: float,
    deadline_s: float,
    progress: Progress | None,
) -> None:
    """Fetch a remote folder as one tar stream into ``local_dir``.

    The stream is unpacked into a staging folder (with tarfile's ``data`` filter: no absolute paths,
    no ``..``, no links out); only when tar succeeded and every file's size matches the device's listing
    are the files moved into ``local_dir``.
    """
    dst = Path(local_dir)
    what = f"Download of folder {remote_dir} to {dst}"
    command = f"tar -C {quote_remote_path(remote_dir)} -cf - ."
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DeviceError(f"{what}: cannot create {dst.parent}: {exc.strerror or exc}.") from None

    def op(client: paramiko.SSHClient) -> None:
        expected = remote_sizes(t, client, remote_dir, deadline, deadline_s)
        staging = Path(tempfile.mkdtemp(prefix=".qc-get-", dir=dst.parent))
        try:
            chan = t._open_channel(client, command)
            reader = ChannelReader(chan, deadline, t.config.io_timeout_s, progress)
            try:
                try:
                    with tarfile.open(fileobj=reader, mode="r|") as tar:  # type: ignore[call-overload]
                        tar.extractall(staging, filter="data")
                    rc = commands.finish(t, chan, deadline, reader.stderr, what)
                except DeadlineExceededError:
                    raise DeadlinePassedError(
                        f"{what} on {t.config.address} exceeded its deadline of {deadline_s:g} s; nothing was kept."
                    ) from None
                except tar_or_lost_errors() as exc:
                    if t._dropped(chan):
                        raise ConnectionLostError(
                            " ".join(str(exc).split()) or type(exc).__name__, started=False
                        ) from None
                    if isinstance(exc, tarfile.FilterError):
                        raise DeviceError(f"{what}: refused an unsafe tar member: {exc}.") from None
                    with contextlib.suppress(DeadlineExceededError, ConnectionLostError, *lost_errors()):
                        commands.finish(t, chan, min(deadline, time.monotonic() + 5.0), reader.stderr, what)
                    stderr, _pid = strip_pid_line(decode(reader.stderr))
                    raise DeviceError(
                        f"{what}: the tar stream from {t.config.address} broke off ({exc}): "
                        f"{last_line(stderr) or 'no message'}"
                    ) from None
            finally:
                close_quietly(chan)
            stderr, _pid = strip_pid_line(decode(reader.stderr))
            if rc != 0:
                raise DeviceError(
                    f"{what}: tar on {t.config.address} failed with exit status {rc}: "
                    f"{last_line(stderr) or 'no output'}"
                )
            check_tree_sizes(what, staging, expected)
            merge_tree(staging, dst)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    t._retrying(what, op, idempotent=True, deadline=deadline, deadline_s=deadline_s)


def join_prefetch_threads(timeout_s: float) -> None:
    """Wait for paramiko's SFTP prefetch threads to end after a dropped connection.

    They die with "Socket is closed" once the connection is gone; waiting here keeps that (paramiko's own,
    harmless) thread exception inside the failed download instead of surfacing later somewhere else.
    """
    end = time.monotonic() + timeout_s
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and thread.name.endswith("(_prefetch_thread)"):
            thread.join(max(0.0, end - time.monotonic()))


def sftp_callback(deadline: float, progress: Progress | None) -> Callable[[int, int], None]:
    def callback(done: int, total: int) -> None:
        del total
        if time.monotonic() > deadline:
            raise DeadlineExceededError
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


def parse_wc(text: str) -> dict[str, int]:
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
