"""``SnpeRunner``: a DLC run with the SNPE tools on a device (over SSH) or on this machine (``local: true``).

One *session* (:meth:`SnpeRunner.session`) leases a device of the target's pool (a file lock valid across
pytest-xdist workers) and opens its transport for the ``with`` block. A stage holds one session for its whole pass
(``ModelStages`` does); a call made outside a session opens one just for itself. The lease is per stage, not per
runner: with ``pytest -n 2`` the gates of one model may run in two workers, and a worker holding the device until
the session ends would make the other wait for ever (the controller only ends a worker's session once every test,
including the waiting one, is done).

The first session on a device creates ``<remote_root>/qc-<run id>/`` and uploads the DLC into it; later sessions of
the runner on that device reuse both. Each batch works in its own ``b<NNNN>/`` inside, removed once its results are
back. :meth:`SnpeRunner.close` removes the run folder (``ModelStages.close``, at the end of the pytest session);
after a failure it is kept when ``keep_on_failure``. Every tool call gets the device's ``setup`` line and ``env``;
every path is an argv item (shell-quoted by the transport).

Data path of :meth:`SnpeRunner.run_batch` / :meth:`SnpeRunner.run_all_batch` (one ``snpe-net-run`` per batch):

* inputs are written as raw files in the DLC's layout (the matched permutation, NHWC for 4-D images) and type:
  float32, or with ``native_io`` the input's native type (``uFxp_8`` -> uint8 ...) quantized with its encoding
  from ``snpe-dlc-info`` and read with ``--use_native_input_files``; one ``input_list.txt`` line per image
  (relative paths, so a remote root with spaces cannot break SNPE's whitespace-separated list);
* the inputs go up and the ``Result_<i>`` folders come back as ONE tar stream each way;
* ``--debug`` runs (every layer's output, float32) get the nested folders of tensor names holding ``/`` created
  first, and on ``Failed to write data to: <path>`` the folder is created and the call retried;
* final outputs use ``--use_native_output_files --userbuffer_auto`` when ``native_io`` and are dequantized with
  the DLC's encodings, ``real = scale * (q + offset)``;
* every file's size is checked against shape x dtype from ``snpe-dlc-info``: no partial file is accepted;
* arrays come back in the ONNX layout (the permutation of :func:`qc.compare.matching.match_layout`), keyed by the
  DLC tensor name for ``run_all`` (the ``target`` of the tensor map) and by the ONNX output name for ``run``.

Speed: :meth:`SnpeRunner.speed` runs ``snpe-throughput-net-run``; FPS is its ``Total throughput`` line. The tool
reports no per-inference times, so the mean latency is ``1000 / fps`` ms (one thread runs inferences back to back)
and the percentiles are NaN (unknown, never invented). :meth:`SnpeRunner.layer_times` profiles ``runs`` inferences
(``--profiling_level detailed``) and reads ``SNPEDiag.log`` with ``snpe-diagview --csv_format_version 2``, falling
back to the text form; op types come from ``snpe-dlc-info``.

``snpe-dlc-info`` and ``snpe-diagview`` run on this machine when they are on its PATH, else on the device.

Every ``snpe-net-run`` call is checked against what it printed: an input file named more often than
``input_list.txt`` lists it means the input buffers are set up wrong (:func:`qc.snpe.tools.check_processed_inputs`).

The work is split by concern: :mod:`qc.snpe.tensors` (dlc-info index, input files, output files and
dequantization), :mod:`qc.snpe.tools` (tool calls, ``snpe-net-run`` retries and checks), :mod:`qc.snpe.profile`
(diagview and the layer profile); this module holds the runner: sessions, batching, matching, the Runner API.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import posixpath
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np

from qc import progress
from qc.compare.matching import NHWC_TO_NCHW, LayoutMatch, match_layout, tensor_map_rows
from qc.config import DeviceSpec, SnpeTarget
from qc.device.pool import DevicePool
from qc.device.rundir import RunDir
from qc.device.transport import CommandResult, LocalTransport, Transport
from qc.errors import DeviceError, ModelError, ParseError
from qc.runners.base import GraphTensors, TensorDict
from qc.snpe.parsers import DlcInfo, parse_dlc_info_text, parse_throughput
from qc.snpe.profile import layer_profile, read_layer_times
from qc.snpe.tensors import (
    NATIVE_DTYPES,
    Plan,
    TensorSpec,
    as_read,
    debug_folders,
    dequantize,
    index_dlc,
    quantize,
    read_output,
    write_inputs,
)
from qc.snpe.tools import (
    NET_RUN_RUNTIME_FLAGS,
    THROUGHPUT_RUNTIME_FLAGS,
    RunRecord,
    Session,
    device_label,
    failure,
    make_transport,
    mkdirs,
    net_run,
    net_run_argv,
    remove_run_dirs,
    run_tool,
)
from qc.speed import LatencyStats, LayerProfile

__all__ = [
    "DIAG_LOGS",
    "NATIVE_DTYPES",
    "NET_RUN_RUNTIME_FLAGS",
    "THROUGHPUT_RUNTIME_FLAGS",
    "SnpeRunner",
    "dequantize",
    "device_label",
    "make_transport",
    "maybe_session",
    "quantize",
]

log = logging.getLogger("qc.snpe")

DIAG_LOGS = ("SNPEDiag.log", "SNPEDiag_0.log")
_RUN_FOLDERS = itertools.count(1)


class SnpeRunner:
    """:class:`qc.runners.base.Runner` (and ``BatchRunner``) for a ``kind: snpe`` target."""

    def __init__(
        self,
        name: str,
        spec: SnpeTarget,
        devices: Sequence[DeviceSpec],
        *,
        reference: Callable[[], GraphTensors],
        lock_dir: Path,
        input_layout: str = "NCHW",
        cache_dir: Path | None = None,
        run_id: str | None = None,
        lease_timeout_s: float = 1800.0,
        tool_deadline_s: float = 1800.0,
        transport_factory: Callable[[DeviceSpec], Transport] = make_transport,
    ) -> None:
        self.name = name
        self.spec = spec
        self.batch_size = spec.batch_size
        by_name = {d.name: d for d in devices}
        missing = [d for d in spec.devices if d not in by_name]
        if missing:
            known = sorted(by_name) or "none"
            raise DeviceError(f"{name}: device(s) {missing} are not in the models.yaml 'devices' list ({known}).")
        self._pool = DevicePool({d: by_name[d] for d in spec.devices}, lock_dir)
        self._reference = reference
        self._input_layout = input_layout
        self._cache_dir = cache_dir
        self._run_id = run_id or secrets.token_hex(4)
        self._lease_timeout_s = lease_timeout_s
        self._deadline_s = tool_deadline_s
        self._transport_factory = transport_factory
        self._session: Session | None = None
        self._sessions = 0
        self._info: DlcInfo | None = None
        self._graph: GraphTensors | None = None
        self._tensors: dict[str, TensorSpec] = {}
        self._producer_inputs: dict[str, list[str]] = {}
        self._map: list[LayoutMatch] | None = None
        self.write_retries = 0
        """How many times ``snpe-net-run`` was re-run after ``Failed to write data to``."""
        self.run_dirs: list[RunRecord] = []
        """The run folder on each device this runner used, in order of first use."""

    def __repr__(self) -> str:
        return f"SnpeRunner({self.name!r}, {str(self.spec.dlc)!r})"

    # -- Runner basics ----------------------------------------------------------------------------------------
    def model_path(self) -> Path:
        return self.spec.dlc

    def prepare(self) -> None:
        self.tensor_map()

    def __enter__(self) -> SnpeRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Remove this runner's run folder on every device it used (kept after a failure with keep_on_failure)."""
        remove_run_dirs(self.name, self.run_dirs, self._transport_factory, keep_on_failure=self.spec.keep_on_failure)

    # -- dlc-info -------------------------------------------------------------------------------------------
    def dlc_info(self) -> DlcInfo:
        """``snpe-dlc-info -i <dlc>`` parsed (on this machine if the tool is on PATH, else on the device)."""
        if self._info is None:
            self._info = self._load_dlc_info()
            self._index(self._info)
        return self._info

    def _dlc_info_cache(self) -> Path | None:
        if self._cache_dir is None:
            return None
        from qc.data.images import file_sha256

        return self._cache_dir / "dlc-info" / f"{file_sha256(self.spec.dlc)}.txt"

    def _load_dlc_info(self) -> DlcInfo:
        cached = self._dlc_info_cache()
        if cached is not None and cached.is_file():
            return self._parse_dlc_info(cached.read_text(encoding="utf-8"), f"cached {cached}")
        if not self.spec.dlc.is_file():
            raise ModelError(f"{self.name}: DLC file not found: {self.spec.dlc}.")
        host_tool = shutil.which("snpe-dlc-info")
        if host_tool is not None:
            where = "this machine"
            result = LocalTransport().run([host_tool, "-i", str(self.spec.dlc)], deadline_s=self._deadline_s)
        else:
            with self.session() as sess:
                where = sess.label
                result = self._tool(sess, ["snpe-dlc-info", "-i", sess.dlc], cwd=sess.rundir.path)
        if result.rc != 0:
            raise DeviceError(self._failure("snpe-dlc-info", result, where))
        info = self._parse_dlc_info(result.stdout, where)
        if cached is not None:
            from qc.cache import atomic_write_text

            cached.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(cached, result.stdout)
        return info

    def _parse_dlc_info(self, text: str, where: str) -> DlcInfo:
        try:
            return parse_dlc_info_text(text)
        except ParseError as exc:
            raise ParseError(f"{self.name}: {exc} [snpe-dlc-info -i {self.spec.dlc} on {where}]") from None

    def _index(self, info: DlcInfo) -> None:
        index = index_dlc(info)
        self._tensors = index.tensors
        self._producer_inputs = index.producer_inputs
        self._graph = index.graph

    def graph(self) -> GraphTensors:
        """The DLC's tensors as dlc-info lists them (DLC names, DLC layout), in layer order."""
        self.dlc_info()
        assert self._graph is not None
        return self._graph

    # -- name and layout matching -----------------------------------------------------------------------------
    def tensor_map(self) -> list[LayoutMatch]:
        """Reference (ONNX) tensor -> DLC tensor and axis permutation, for every reference tensor."""
        if self._map is None:
            reference = self._reference()
            known: dict[str, tuple[int, ...]] = {}
            for name, dims in reference.inputs.items():
                if len(dims) == 4:  # qc writes 4-D image inputs in the DLC's layout: NHWC from the ONNX layout
                    known[name] = NHWC_TO_NCHW if self._input_layout == "NCHW" else (0, 1, 2, 3)
            self._map = match_layout(reference, self.graph(), target_inputs=self._producer_inputs, known=known)
        return self._map

    def tensor_map_rows(self) -> list[dict[str, str]]:
        return tensor_map_rows(self.tensor_map())

    def _matched(self) -> dict[str, LayoutMatch]:
        """Reference name -> its match, for matched tensors only."""
        return {m.reference.name: m for m in self.tensor_map() if m.target is not None}

    def _io_plan(self, names: Sequence[str], what: str) -> list[Plan]:
        matched = self._matched()
        rows = {m.reference.name: m for m in self.tensor_map()}
        plans = []
        for name in names:
            m = matched.get(name)
            if m is None or m.target is None or m.permutation is None:
                reason = rows[name].reason if name in rows else "not in the reference graph"
                raise ModelError(
                    f"{self.name}: the model {what} {name!r} has no unambiguous counterpart in {self.spec.dlc.name}: "
                    f"{reason}. See tensor_map.csv."
                )
            plans.append(Plan(name, self._tensors[m.target], m.permutation))
        return plans

    def _input_plans(self) -> list[Plan]:
        return self._io_plan(list(self._reference().inputs), "input")

    def _output_plans(self) -> list[Plan]:
        return self._io_plan(list(self._reference().outputs), "output")

    def _debug_plans(self) -> list[Plan]:
        return [
            Plan(m.target, self._tensors[m.target], m.permutation)
            for m in self.tensor_map()
            if m.target is not None and m.permutation is not None
        ]

    # -- sessions -------------------------------------------------------------------------------------------
    @contextmanager
    def session(self) -> Iterator[Session]:
        """Lease a device and hold it, with its transport, for the ``with`` block (re-entrant: nested uses share it).

        The first session on a device creates the run folder ``<remote_root>/qc-<run id>/`` and uploads the DLC;
        later sessions of this runner on that device reuse both (one upload per model and device per run). An
        exception marks the folder failed (kept at :meth:`close` with ``keep_on_failure``).
        """
        if self._session is not None:
            yield self._session
            return
        with ExitStack() as stack:
            lease = stack.enter_context(self._pool.lease(timeout_s=self._lease_timeout_s))
            device = lease.device
            label = device_label(device)
            transport = self._transport_factory(device)
            stack.callback(transport.close)
            record = next((r for r in self.run_dirs if r.device.name == device.name and not r.removed), None)
            if record is not None and not record.kept:
                rundir = RunDir(transport, device.remote_root, record.run_id, keep_on_failure=self.spec.keep_on_failure)
                dlc = rundir.join("model.dlc")
                if not transport.run(["test", "-f", dlc], deadline_s=60, idempotent=True).ok:
                    record = None  # removed behind our back: start afresh
            if record is None or record.kept:
                record = self._new_run_dir(transport, device, label)
                rundir = RunDir(transport, device.remote_root, record.run_id, keep_on_failure=self.spec.keep_on_failure)
            sess = Session(
                device=device,
                label=label,
                transport=transport,
                rundir=rundir,
                record=record,
                dlc=rundir.join("model.dlc"),
                runtime=self.spec.runtime or device.runtime,
                perf_profile=self.spec.perf_profile or device.perf_profile,
                who=self.name,
                deadline_s=self._deadline_s,
            )
            self._session = sess
            try:
                yield sess
            except BaseException:
                record.failed = True
                raise
            finally:
                self._session = None

    def _new_run_dir(self, transport: Transport, device: DeviceSpec, label: str) -> RunRecord:
        self._sessions += 1
        run_id = f"{self._run_id}-{os.getpid()}-{next(_RUN_FOLDERS)}"  # unique across the runners of a process
        rundir = RunDir(transport, device.remote_root, run_id, keep_on_failure=self.spec.keep_on_failure)
        try:
            rundir.create()
        except DeviceError as exc:
            raise DeviceError(f"{self.name}: cannot create the run folder on {label}: {exc}") from None
        record = RunRecord(device, run_id, rundir.path, rundir.path)
        self.run_dirs.append(record)
        try:
            physical = transport.run(
                ["sh", "-c", 'cd -P -- "$1" && pwd -P', "sh", rundir.path], deadline_s=60, idempotent=True
            ).stdout.strip()
            record.physical = physical or rundir.path
            transport.put(self.spec.dlc, rundir.join("model.dlc"), deadline_s=self._deadline_s)
        except BaseException:
            record.failed = True
            raise
        log.debug("%s: run folder %s on %s", self.name, rundir.path, label)
        return record

    # -- tool calls -----------------------------------------------------------------------------------------
    def _tool(self, sess: Session, argv: Sequence[str], *, cwd: str, deadline_s: float | None = None) -> CommandResult:
        return run_tool(sess, argv, cwd=cwd, deadline_s=deadline_s)

    def _failure(self, tool: str, result: CommandResult, where: str) -> str:
        return failure(self.name, tool, result, where)

    def _net_run(self, sess: Session, argv: list[str], cwd: str, images: int, input_list: str) -> CommandResult:
        result, retries = net_run(
            sess,
            argv,
            cwd,
            images=images,
            batch_size=self.spec.batch_size,
            input_list=input_list,
            tensors=len(self._tensors),
        )
        self.write_retries += retries
        return result

    def _net_run_argv(self, sess: Session, *, debug: bool, native_out: bool, profile: bool = False) -> list[str]:
        return net_run_argv(sess, native_in=self.spec.native_io, native_out=native_out, debug=debug, profile=profile)

    def _write_inputs(
        self, folder: Path, feeds: Sequence[Mapping[str, np.ndarray]], repeat: int = 1
    ) -> list[dict[str, np.ndarray]]:
        """Write the raw input files and ``input_list.txt``; return, per image, what was written (DLC layout)."""
        return write_inputs(self.name, folder, self._input_plans(), feeds, native=self.spec.native_io, repeat=repeat)

    def _execute(
        self, feeds: Sequence[Mapping[str, np.ndarray]], *, debug: bool, outputs: bool
    ) -> list[tuple[TensorDict, TensorDict]]:
        """One ``snpe-net-run``: per image (every matched tensor when ``debug``, the final outputs when ``outputs``).

        In a debug run the final outputs are the run's own dumps of the output tensors (float32, the dequantized
        values the device computed), read with the output plans (ONNX names): one execution gives both.
        """
        if not feeds:
            return []
        native_out = self.spec.native_io and not debug
        plans = self._debug_plans() if debug else []
        out_plans = self._output_plans() if outputs else []
        out: list[tuple[TensorDict, TensorDict]] = []
        with self.session() as sess, tempfile.TemporaryDirectory(prefix="qc-snpe-") as tmp:
            remote = sess.next_dir()
            local_in = Path(tmp) / "in"
            written = self._write_inputs(local_in, feeds)
            sess.transport.put_tree(local_in, remote, deadline_s=self._deadline_s)
            folders = debug_folders(self._tensors, len(feeds)) if debug else []
            if folders:  # snpe-net-run --debug does not create the folders of tensor names with "/"
                mkdirs(sess, folders, remote)
            argv = self._net_run_argv(sess, debug=debug, native_out=native_out)
            listing = (local_in / "input_list.txt").read_text(encoding="utf-8")
            self._net_run(sess, argv, remote, len(feeds), listing)
            local_out = Path(tmp) / "out"
            sess.transport.get_tree(posixpath.join(remote, "out"), local_out, deadline_s=self._deadline_s)
            for j in range(len(feeds)):
                folder = local_out / f"Result_{j}"
                result: TensorDict = {}
                if debug:  # --debug dumps layer outputs, not the network inputs: those are what qc wrote
                    for plan in self._input_plans():
                        data = written[j][plan.tensor.name]
                        result[plan.tensor.name] = as_read(plan, data, native=self.spec.native_io)
                for plan in plans:
                    if plan.key in result:
                        continue
                    value = read_output(
                        self.name, folder, plan, image=j, native=native_out, required=False, label=sess.label
                    )
                    if value is not None:
                        result[plan.key] = value
                finals: TensorDict = {}
                for plan in out_plans:
                    value = read_output(
                        self.name, folder, plan, image=j, native=native_out, required=True, label=sess.label
                    )
                    assert value is not None  # required=True raises instead
                    finals[plan.key] = value
                out.append((result, finals))
            sess.rundir.remove(remote)
        return out

    # -- Runner API -----------------------------------------------------------------------------------------
    def run_batch(self, feeds: Sequence[Mapping[str, np.ndarray]]) -> list[TensorDict]:
        """Final outputs (ONNX names, ONNX layout), one ``snpe-net-run`` per ``batch_size`` images."""
        return [finals for _, finals in self._batches(feeds, debug=False, outputs=True)]

    def run_all_batch(self, feeds: Sequence[Mapping[str, np.ndarray]]) -> list[TensorDict]:
        """Every matched tensor (DLC names, ONNX layout) from ``snpe-net-run --debug``, per ``batch_size`` images."""
        return [tensors for tensors, _ in self._batches(feeds, debug=True, outputs=False)]

    def run_pass_batch(self, feeds: Sequence[Mapping[str, np.ndarray]]) -> list[tuple[TensorDict, TensorDict]]:
        """:meth:`run_all_batch` and the final outputs (ONNX names) from the same ``snpe-net-run --debug`` call."""
        return self._batches(feeds, debug=True, outputs=True)

    def _batches(
        self, feeds: Sequence[Mapping[str, np.ndarray]], *, debug: bool, outputs: bool
    ) -> list[tuple[TensorDict, TensorDict]]:
        out: list[tuple[TensorDict, TensorDict]] = []
        stage = "snpe-net-run --debug" if debug else "snpe-net-run"
        with progress.task(self.name, stage, len(feeds)) as bar:  # images, a batch at a time
            for start in range(0, len(feeds), self.batch_size):
                chunk = feeds[start : start + self.batch_size]
                out += self._execute(chunk, debug=debug, outputs=outputs)
                bar.advance(len(chunk))
        return out

    def run(self, feeds: Mapping[str, np.ndarray]) -> TensorDict:
        return self.run_batch([feeds])[0]

    def run_all(self, feeds: Mapping[str, np.ndarray]) -> TensorDict:
        return self.run_all_batch([feeds])[0]

    def speed(self, feeds: Mapping[str, np.ndarray], *, rounds: int = 0, warmup: int = 0) -> LatencyStats:
        """``snpe-throughput-net-run --duration <throughput_duration_s>`` (random input; ``feeds``, ``rounds`` and
        ``warmup`` are not used: the tool times itself)."""
        del feeds, rounds, warmup
        duration = self.spec.throughput_duration_s
        with progress.task(self.name, "speed", 1) as bar, self.session() as sess:
            argv = [
                "snpe-throughput-net-run",
                "--container",
                sess.dlc,
                "--duration",
                str(duration),
                "--perf_profile",
                sess.perf_profile,
                *THROUGHPUT_RUNTIME_FLAGS[sess.runtime],
            ]
            result = self._tool(sess, argv, cwd=sess.rundir.path, deadline_s=3 * duration + 300)
            if result.rc == 137:
                raise DeviceError(
                    f"{self.name}: snpe-throughput-net-run on {sess.label} was killed (exit status 137), most likely "
                    "out of memory on the device."
                )
            if result.rc != 0:
                raise DeviceError(self._failure("snpe-throughput-net-run", result, sess.label))
            text = result.stdout if "Total throughput:" in result.stdout else result.stdout + "\n" + result.stderr
            try:
                parsed = parse_throughput(text)
            except ParseError as exc:
                raise ParseError(f"{self.name}: {exc} [on {sess.label}]") from None
            label, runtime = sess.label, sess.runtime
            bar.advance(note=f"snpe-throughput-net-run {duration} s on {label}")
        fps = parsed.total_infs_per_sec
        images = sum(t.images_processed or 0 for t in parsed.threads)
        kinds = ", ".join(sorted({t.runtime for t in parsed.threads})) or runtime
        return LatencyStats(
            fps=fps,
            latency_ms_mean=1000.0 / fps if fps > 0 else math.inf,
            latency_ms_p50=math.nan,
            latency_ms_p90=math.nan,
            latency_ms_p99=math.nan,
            rounds=images,
            source=(
                f"snpe-throughput-net-run {' '.join(THROUGHPUT_RUNTIME_FLAGS[runtime])} ({kinds}) on {label}, "
                f"{duration} s; mean latency = 1000/fps, percentiles unknown (the tool reports none)"
            ),
        )

    def layer_times(self, feeds: Mapping[str, np.ndarray], *, runs: int = 10) -> LayerProfile:
        """Per-layer time of ``runs`` profiled inferences from ``snpe-diagview`` (DSP: cycles, compare shares)."""
        with (
            progress.task(self.name, "profile", 1) as step,
            self.session() as sess,
            tempfile.TemporaryDirectory(prefix="qc-snpe-") as tmp,
        ):
            remote = sess.next_dir()
            local_in = Path(tmp) / "in"
            self._write_inputs(local_in, [feeds], repeat=max(1, runs))
            sess.transport.put_tree(local_in, remote, deadline_s=self._deadline_s)
            argv = self._net_run_argv(sess, debug=False, native_out=self.spec.native_io, profile=True)
            listing = (local_in / "input_list.txt").read_text(encoding="utf-8")
            self._net_run(sess, argv, remote, max(1, runs), listing)
            found = sess.transport.run(
                "for f in " + " ".join(f"out/{n}" for n in DIAG_LOGS) + '; do if [ -f "$f" ]; then echo "$f"; '
                "break; fi; done",
                deadline_s=60,
                cwd=remote,
                idempotent=True,
            ).stdout.strip()
            if not found:
                raise DeviceError(
                    f"{self.name}: snpe-net-run on {sess.label} left no {' or '.join(DIAG_LOGS)} in its output folder."
                )
            times = read_layer_times(sess, remote, found, Path(tmp))
            sess.rundir.remove(remote)
            step.advance(note=f"{max(1, runs)} profiled runs on {sess.label}")
        return layer_profile(times, self.dlc_info())


@contextlib.contextmanager
def maybe_session(runner: object) -> Iterator[None]:
    """``runner.session()`` for a runner that has one (SNPE), else nothing: one device lease for a whole stage."""
    if isinstance(runner, SnpeRunner):
        with runner.session():
            yield
    else:
        yield
