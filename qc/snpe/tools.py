"""Running the SNPE tools on a device: the session record, the tool command line, ``snpe-net-run`` with its
``Failed to write data to`` retry, its out-of-memory advice and the check of the inputs it says it processed."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import posixpath
import shlex
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from qc.config import DeviceSpec
from qc.device.rundir import RunDir
from qc.device.transport import CommandResult, LocalTransport, SshConfig, SshTransport, Transport
from qc.errors import DeviceError, ParseError
from qc.snpe.parsers import parse_failed_write, parse_processed_inputs

__all__ = [
    "MKDIR_CHUNK",
    "NET_RUN_RUNTIME_FLAGS",
    "THROUGHPUT_RUNTIME_FLAGS",
    "RunRecord",
    "Session",
    "check_processed_inputs",
    "device_label",
    "failure",
    "last_line",
    "make_transport",
    "mkdirs",
    "net_run",
    "net_run_argv",
    "run_tool",
]

log = logging.getLogger("qc.snpe")

NET_RUN_RUNTIME_FLAGS: dict[str, tuple[str, ...]] = {
    "dsp": ("--use_dsp",),
    "gpu": ("--use_gpu",),
    "gpu_fp16": ("--use_gpu_fp16",),
    "cpu": (),  # snpe-net-run runs on the CPU unless told otherwise
}
THROUGHPUT_RUNTIME_FLAGS: dict[str, tuple[str, ...]] = {
    "dsp": ("--use_dsp",),
    "gpu": ("--use_gpu",),
    "gpu_fp16": ("--use_gpu_fp16",),
    "cpu": ("--use_cpu",),
}
MKDIR_CHUNK = 400


def device_label(device: DeviceSpec) -> str:
    """``name (user@host:port)`` or ``name (this machine)``: what messages call the device (never a secret)."""
    if device.local:
        return f"{device.name} (this machine)"
    return f"{device.name} ({device.user}@{device.host}:{device.port})"


def make_transport(device: DeviceSpec) -> Transport:
    """The transport of a device: SSH (auth from :class:`qc.config.SshAuth`, host keys checked) or local."""
    if device.local:
        return LocalTransport()
    assert device.host is not None  # DeviceSpec validates host, user and auth of SSH devices
    assert device.auth is not None
    auth = device.auth
    config = SshConfig(
        host=device.host,
        port=device.port,
        username=device.user,
        key_file=auth.key_file,
        passphrase_env=auth.passphrase_env,
        password_env=auth.password_env,
        dotenv_path=auth.dotenv,
        use_agent=auth.agent,
        trust_new_host_key=device.trust_new_host_key,
        connect_timeout_s=device.connect_timeout_s,
    )
    if device.known_hosts is not None:
        config = dataclasses.replace(config, known_hosts=device.known_hosts)
    return SshTransport(config)


@dataclass
class RunRecord:
    """The run folder of a runner on one device: created by the first session there, holding the DLC, removed
    by :meth:`SnpeRunner.close` (kept when a session failed and ``keep_on_failure``)."""

    device: DeviceSpec
    run_id: str
    path: str
    physical: str
    failed: bool = False
    removed: bool = False
    kept: bool = False
    batches: int = 0
    """Batch folders ``b0001``... used so far: a name is never reused (a failed batch's files stay where they are)."""


def remove_run_dirs(
    who: str,
    records: Sequence[RunRecord],
    transport_factory: Callable[[DeviceSpec], Transport],
    *,
    keep_on_failure: bool,
) -> None:
    """Remove each run folder a runner used (kept after a failure with ``keep_on_failure``); records are marked.

    The device is not leased for this (nothing runs on it); a folder that cannot be removed is an error.
    """
    problems = []
    for record in records:
        if record.removed or record.kept:
            continue
        try:
            with contextlib.closing(transport_factory(record.device)) as transport:
                rundir = RunDir(transport, record.device.remote_root, record.run_id, keep_on_failure=keep_on_failure)
                rundir.cleanup(failed=record.failed)
        except DeviceError as exc:
            problems.append(f"{record.path} on {device_label(record.device)}: {exc}")
            continue
        record.kept = record.failed and keep_on_failure
        record.removed = not record.kept
    if problems:
        raise DeviceError(f"{who}: could not remove run folder(s): {'; '.join(problems)}")


@dataclass
class Session:
    device: DeviceSpec
    label: str
    transport: Transport
    rundir: RunDir
    record: RunRecord
    dlc: str
    runtime: str
    perf_profile: str
    who: str = "snpe"
    """The runner's name, for messages."""
    deadline_s: float = 1800.0

    @property
    def physical(self) -> str:
        return self.record.physical

    def next_dir(self) -> str:
        self.record.batches += 1
        return self.rundir.join(f"b{self.record.batches:04d}")


def last_line(text: str) -> str:
    for line in reversed(text.strip().splitlines()):
        if line.strip():
            return line.strip()[:300]
    return ""


def _command(sess: Session, argv: Sequence[str]) -> str:
    text = shlex.join(argv)
    setup = (sess.device.setup or "").strip()
    if not setup:
        return text
    return (
        f"{setup}\n"
        "__qc_rc=$?; if [ $__qc_rc -ne 0 ]; then "
        'echo "qc: the device setup line failed with exit status $__qc_rc" >&2; exit 97; fi\n'
        f"{text}"
    )


def run_tool(sess: Session, argv: Sequence[str], *, cwd: str, deadline_s: float | None = None) -> CommandResult:
    """Run one SNPE tool on the device, the device's setup line and env applied (never raises on rc)."""
    return sess.transport.run(
        _command(sess, argv),
        deadline_s=deadline_s or sess.deadline_s,
        env=dict(sess.device.env) or None,
        cwd=cwd,
    )


def failure(who: str, tool: str, result: CommandResult, where: str) -> str:
    tail = last_line(result.stderr) or last_line(result.stdout) or "no output"
    hint = ""
    if result.rc == 127:
        hint = " (command not found: check the device's 'setup' line and PATH)"
    elif result.rc == 97 and tail.startswith("qc: the device setup line failed"):
        hint = " (fix the device's 'setup' line in models.yaml)"
    return f"{who}: {tool} on {where} failed with exit status {result.rc}{hint}: {tail}"


def mkdirs(sess: Session, folders: Sequence[str], cwd: str) -> None:
    items = sorted(set(folders))
    for start in range(0, len(items), MKDIR_CHUNK):
        part = items[start : start + MKDIR_CHUNK]
        result = sess.transport.run(["mkdir", "-p", "--", *part], deadline_s=120, cwd=cwd, idempotent=True)
        if result.rc != 0:
            raise DeviceError(failure(sess.who, "mkdir", result, sess.label))


def _inside(sess: Session, path: str, cwd: str) -> str:
    """A path SNPE printed, as a path inside the run folder (refused when it lies elsewhere)."""
    absolute = path if path.startswith("/") else posixpath.join(cwd, path)
    absolute = posixpath.normpath(absolute)
    if sess.physical != sess.rundir.path and (absolute == sess.physical or absolute.startswith(sess.physical + "/")):
        absolute = sess.rundir.path + absolute[len(sess.physical) :]
    if not sess.rundir.contains(absolute):
        raise DeviceError(
            f"{sess.who}: snpe-net-run on {sess.label} could not write {path}, which is outside the run "
            f"folder {sess.rundir.path}; qc creates folders only inside it."
        )
    return absolute


def _failed_writes(result: CommandResult) -> list[str]:
    paths = []
    for line in (result.stderr + "\n" + result.stdout).splitlines():
        if "Failed to write data to" in line:
            path = parse_failed_write(line)
            if path:
                paths.append(path)
    return paths


def net_run_argv(
    sess: Session, *, native_in: bool, native_out: bool, debug: bool = False, profile: bool = False
) -> list[str]:
    argv = [
        "snpe-net-run",
        "--container",
        sess.dlc,
        "--input_list",
        "input_list.txt",
        "--output_dir",
        "out",
        *NET_RUN_RUNTIME_FLAGS[sess.runtime],
        "--perf_profile",
        sess.perf_profile,
    ]
    if debug:
        argv.append("--debug")
    if profile:
        argv += ["--profiling_level", "detailed"]
    if native_in:
        argv.append("--use_native_input_files")
    if native_out:
        argv.append("--use_native_output_files")
    if native_in or native_out:
        argv.append("--userbuffer_auto")
    return argv


def check_processed_inputs(sess: Session, stdout: str, input_list: str) -> None:
    """Fail when ``snpe-net-run`` names an input file more often than ``input_list.txt`` lists it.

    snpe-net-run prints the input file(s) of each execution under ``Processing DNN input(s):``: once per file when
    the input buffers are set up right, two or more times when they are not (a file holding several tensors' worth
    of data for the buffer type used is run as several inferences: the known trap of native input files).
    """
    listed: Counter[str] = Counter()
    for line in input_list.splitlines():
        if line.strip() and line.strip()[0] not in "#%":
            listed.update(token.partition(":=")[2] if ":=" in token else token for token in line.split())
    try:
        seen = parse_processed_inputs(stdout)
    except ParseError as exc:
        raise ParseError(f"{sess.who}: {exc} [on {sess.label}]") from None
    if not seen.executions:
        log.warning(
            "%s: snpe-net-run on %s printed no 'Processing DNN input(s):' block; the input buffers cannot be checked",
            sess.who,
            sess.label,
        )
        return
    for path, count in seen.counts.items():
        expected = listed.get(path, 0)
        if count > expected:
            raise DeviceError(
                f"{sess.who}: snpe-net-run on {sess.label} printed the input file {path} {count} times, but "
                f"input_list.txt lists it {expected} time(s): it ran that file as {count} inferences. The input "
                "buffers are set up wrong: the file holds more than one tensor's worth of data for the buffer type "
                "snpe-net-run used (a known trap of native input files: --use_native_input_files needs a "
                "--userbuffer_* type matching the file's data type). The outputs of such a run are not those of "
                "the images qc sent, so none is used."
            )


def net_run(
    sess: Session, argv: list[str], cwd: str, *, images: int, batch_size: int, input_list: str, tensors: int
) -> tuple[CommandResult, int]:
    """snpe-net-run with the ``Failed to write data to`` retry, the rc 137 (out of memory) advice and the check of
    the inputs it processed (:func:`check_processed_inputs`). Returns the result and the number of retries."""
    retries = 0
    created: set[str] = set()
    limit = tensors + 5
    for _attempt in range(limit + 1):
        result = run_tool(sess, argv, cwd=cwd)
        failed = _failed_writes(result)
        if failed:
            folders = {posixpath.dirname(_inside(sess, p, cwd)) for p in failed}
            new = sorted(folders - created)
            if not new:
                raise DeviceError(
                    f"{sess.who}: snpe-net-run on {sess.label} still cannot write {failed[0]} after qc "
                    f"created {posixpath.dirname(failed[0])}: check the free space and permissions there."
                )
            mkdirs(sess, new, cwd)
            created.update(new)
            retries += 1
            log.info(
                "%s: snpe-net-run could not write %s; created %d folder(s), retrying", sess.who, failed[0], len(new)
            )
            continue
        if result.rc == 137:
            raise DeviceError(
                f"{sess.who}: snpe-net-run on {sess.label} was killed (exit status 137), most likely out of "
                f"memory on the device, while running {images} input(s) in one call: lower target.batch_size "
                f"in models.yaml (now {batch_size})."
            )
        if result.rc != 0:
            raise DeviceError(failure(sess.who, "snpe-net-run", result, sess.label))
        check_processed_inputs(sess, result.stdout, input_list)
        return result, retries
    raise DeviceError(f"{sess.who}: snpe-net-run on {sess.label} kept failing to write its outputs.")
