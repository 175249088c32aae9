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
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import posixpath
import secrets
import shlex
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qc.compare.matching import NHWC_TO_NCHW, LayoutMatch, match_layout, tensor_map_rows
from qc.config import DeviceSpec, SnpeTarget
from qc.device.pool import DevicePool
from qc.device.rundir import RunDir
from qc.device.transport import CommandResult, LocalTransport, SshConfig, SshTransport, Transport
from qc.errors import DataError, DeviceError, ModelError, ParseError
from qc.runners.base import GraphTensors, TensorDict, TensorInfo
from qc.snpe.parsers import (
    DlcInfo,
    Encoding,
    LayerTimes,
    parse_diagview_csv,
    parse_diagview_text,
    parse_dlc_info_text,
    parse_failed_write,
    parse_throughput,
)
from qc.speed import LatencyStats, LayerProfile, LayerTimeRow

__all__ = [
    "NATIVE_DTYPES",
    "NET_RUN_RUNTIME_FLAGS",
    "THROUGHPUT_RUNTIME_FLAGS",
    "SnpeRunner",
    "dequantize",
    "device_label",
    "make_transport",
    "quantize",
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
NATIVE_DTYPES: dict[str, type[np.generic]] = {
    "uFxp_8": np.uint8,
    "uFxp_16": np.uint16,
    "uFxp_32": np.uint32,
    "Fxp_8": np.int8,
    "Fxp_16": np.int16,
    "Fxp_32": np.int32,
    "sFxp_8": np.int8,  # symmetric (QAIRT 2.3x): signed, offset 0
    "sFxp_16": np.int16,
    "sFxp_32": np.int32,
    "Float_16": np.float16,
    "Float_32": np.float32,
    "Int_8": np.int8,
    "Int_16": np.int16,
    "Int_32": np.int32,
    "Int_64": np.int64,
    "uInt_8": np.uint8,
    "uInt_16": np.uint16,
    "uInt_32": np.uint32,
    "uInt_64": np.uint64,
}
"""``snpe-dlc-info`` data types -> the numpy type of their native files (``--use_native_*_files``)."""

DIAG_LOGS = ("SNPEDiag.log", "SNPEDiag_0.log")
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


def _is_quantized(dtype: str | None) -> bool:
    return dtype is not None and "Fxp" in dtype


def _range(dtype: type[np.generic]) -> tuple[int, int]:
    info = np.iinfo(dtype)  # type: ignore[type-var]
    return int(info.min), int(info.max)


def quantize(x: np.ndarray, encoding: Encoding, dtype: type[np.generic]) -> np.ndarray:
    """Float values -> fixed point of ``dtype`` with ``real = scale * (q + offset)`` (rounded, clipped)."""
    if encoding.scale <= 0 or not math.isfinite(encoding.scale):
        raise DataError(f"encoding scale {encoding.scale} cannot quantize (it must be a positive number)")
    lo, hi = _range(dtype)
    q = np.round(x.astype(np.float64) / encoding.scale - encoding.offset)
    return np.clip(q, lo, hi).astype(dtype)


def dequantize(q: np.ndarray, encoding: Encoding) -> np.ndarray:
    """Fixed point -> float32: ``real = scale * (q + offset)`` (``offset`` is negative or zero in SNPE)."""
    return (encoding.scale * (q.astype(np.float64) + encoding.offset)).astype(np.float32)


def _raw_name(tensor: str) -> str | None:
    """``/model.24/Reshape_1_output_0`` -> ``model.24/Reshape_1_output_0.raw`` (None if it would leave the folder)."""
    rel = posixpath.normpath(tensor.lstrip("/") + ".raw")
    if rel.startswith("../") or rel == ".." or rel.startswith("/") or "\x00" in rel:
        return None
    return rel


@dataclass(frozen=True)
class _TensorSpec:
    """What dlc-info says about one tensor."""

    name: str
    dims: tuple[int, ...]
    dtype: str | None
    encoding: Encoding | None

    @property
    def elements(self) -> int:
        return int(np.prod(self.dims, dtype=np.int64)) if self.dims else 1


@dataclass(frozen=True)
class _Plan:
    """One tensor to read back: the DLC tensor, its permutation to the ONNX layout, the key it is returned under."""

    key: str
    tensor: _TensorSpec
    permutation: tuple[int, ...]


@dataclass
class _RunRecord:
    """The run folder of this runner on one device: created by the first session there, holding the DLC, removed
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


@dataclass
class _Session:
    device: DeviceSpec
    label: str
    transport: Transport
    rundir: RunDir
    record: _RunRecord
    dlc: str
    runtime: str
    perf_profile: str

    @property
    def physical(self) -> str:
        return self.record.physical

    def next_dir(self) -> str:
        self.record.batches += 1
        return self.rundir.join(f"b{self.record.batches:04d}")


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
        self._run_id = run_id or os.environ.get("QC_RUN_ID") or secrets.token_hex(4)
        self._lease_timeout_s = lease_timeout_s
        self._deadline_s = tool_deadline_s
        self._transport_factory = transport_factory
        self._session: _Session | None = None
        self._sessions = 0
        self._info: DlcInfo | None = None
        self._graph: GraphTensors | None = None
        self._tensors: dict[str, _TensorSpec] = {}
        self._producer_inputs: dict[str, list[str]] = {}
        self._map: list[LayoutMatch] | None = None
        self.write_retries = 0
        """How many times ``snpe-net-run`` was re-run after ``Failed to write data to``."""
        self.run_dirs: list[_RunRecord] = []
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
        """Remove this runner's run folder on every device it used (kept after a failure with keep_on_failure).

        The device is not leased for this (nothing runs on it); a folder that cannot be removed is an error.
        """
        problems = []
        for record in self.run_dirs:
            if record.removed or record.kept:
                continue
            label = device_label(record.device)
            try:
                with contextlib.closing(self._transport_factory(record.device)) as transport:
                    rundir = RunDir(
                        transport, record.device.remote_root, record.run_id, keep_on_failure=self.spec.keep_on_failure
                    )
                    rundir.cleanup(failed=record.failed)
            except DeviceError as exc:
                problems.append(f"{record.path} on {label}: {exc}")
                continue
            record.kept = record.failed and self.spec.keep_on_failure
            record.removed = not record.kept
        if problems:
            raise DeviceError(f"{self.name}: could not remove run folder(s): {'; '.join(problems)}")

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
        tensors: dict[str, _TensorSpec] = {}
        inputs: dict[str, tuple[int, ...]] = {}
        infos: list[TensorInfo] = []
        producers: dict[str, list[str]] = {}

        def add(name: str, dims: tuple[int, ...] | None, dtype: str | None, op: str, node: str) -> None:
            if name in tensors:
                return
            tensors[name] = _TensorSpec(name, tuple(dims or ()), dtype, info.encoding_of(name))
            infos.append(TensorInfo(len(infos), name, op, node, tuple(dims) if dims is not None else None, "float32"))

        for io in info.inputs:
            inputs[io.name] = tuple(io.dims or ())
            add(io.name, io.dims, io.dtype, "Input", "")
        for layer in info.layers:
            for cell in layer.inputs:
                if cell.is_network_input and cell.name not in inputs:
                    inputs[cell.name] = tuple(cell.dims or ())
                    add(cell.name, cell.dims, cell.dtype, "Input", "")
        for layer in info.layers:
            activations = [c.name for c in layer.inputs if (c.tensor_type or "").upper() != "STATIC"]
            for cell in layer.outputs:
                if cell.name not in tensors:
                    producers[cell.name] = activations
                add(cell.name, cell.dims, cell.dtype, layer.type, layer.name)
        outputs = [io.name for io in info.outputs]
        if not outputs:
            outputs = [c.name for layer in info.layers for c in layer.outputs if (c.tensor_type or "") == "APP_READ"]
        for io in info.outputs:  # the I/O table's type and encoding win over the layer cells'
            old = tensors.get(io.name)
            dims = tuple(io.dims) if io.dims is not None else (old.dims if old else ())
            tensors[io.name] = _TensorSpec(
                io.name, dims, io.dtype or (old.dtype if old else None), io.encoding or (old.encoding if old else None)
            )
        for io in info.inputs:
            old = tensors[io.name]
            tensors[io.name] = _TensorSpec(io.name, old.dims, io.dtype or old.dtype, io.encoding or old.encoding)
        self._tensors = tensors
        self._producer_inputs = producers
        self._graph = GraphTensors(inputs=dict(inputs), outputs=tuple(outputs), tensors=tuple(infos))

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

    def _io_plan(self, names: Sequence[str], what: str) -> list[_Plan]:
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
            plans.append(_Plan(name, self._tensors[m.target], m.permutation))
        return plans

    def _input_plans(self) -> list[_Plan]:
        return self._io_plan(list(self._reference().inputs), "input")

    def _output_plans(self) -> list[_Plan]:
        return self._io_plan(list(self._reference().outputs), "output")

    def _debug_plans(self) -> list[_Plan]:
        return [
            _Plan(m.target, self._tensors[m.target], m.permutation)
            for m in self.tensor_map()
            if m.target is not None and m.permutation is not None
        ]

    # -- sessions -------------------------------------------------------------------------------------------
    @contextmanager
    def session(self) -> Iterator[_Session]:
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
            sess = _Session(
                device=device,
                label=label,
                transport=transport,
                rundir=rundir,
                record=record,
                dlc=rundir.join("model.dlc"),
                runtime=self.spec.runtime or device.runtime,
                perf_profile=self.spec.perf_profile or device.perf_profile,
            )
            self._session = sess
            try:
                yield sess
            except BaseException:
                record.failed = True
                raise
            finally:
                self._session = None

    def _new_run_dir(self, transport: Transport, device: DeviceSpec, label: str) -> _RunRecord:
        self._sessions += 1
        run_id = f"{self._run_id}-{os.getpid()}-{self._sessions}"
        rundir = RunDir(transport, device.remote_root, run_id, keep_on_failure=self.spec.keep_on_failure)
        try:
            rundir.create()
        except DeviceError as exc:
            raise DeviceError(f"{self.name}: cannot create the run folder on {label}: {exc}") from None
        record = _RunRecord(device, run_id, rundir.path, rundir.path)
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
    def _command(self, sess: _Session, argv: Sequence[str]) -> str:
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

    def _tool(self, sess: _Session, argv: Sequence[str], *, cwd: str, deadline_s: float | None = None) -> CommandResult:
        """Run one SNPE tool on the device, the device's setup line and env applied (never raises on rc)."""
        return sess.transport.run(
            self._command(sess, argv),
            deadline_s=deadline_s or self._deadline_s,
            env=dict(sess.device.env) or None,
            cwd=cwd,
        )

    def _failure(self, tool: str, result: CommandResult, where: str) -> str:
        tail = _last_line(result.stderr) or _last_line(result.stdout) or "no output"
        hint = ""
        if result.rc == 127:
            hint = " (command not found: check the device's 'setup' line and PATH)"
        elif result.rc == 97 and tail.startswith("qc: the device setup line failed"):
            hint = " (fix the device's 'setup' line in models.yaml)"
        return f"{self.name}: {tool} on {where} failed with exit status {result.rc}{hint}: {tail}"

    def _mkdirs(self, sess: _Session, folders: Sequence[str], cwd: str) -> None:
        items = sorted(set(folders))
        for start in range(0, len(items), MKDIR_CHUNK):
            part = items[start : start + MKDIR_CHUNK]
            result = sess.transport.run(["mkdir", "-p", "--", *part], deadline_s=120, cwd=cwd, idempotent=True)
            if result.rc != 0:
                raise DeviceError(self._failure("mkdir", result, sess.label))

    def _inside(self, sess: _Session, path: str, cwd: str) -> str:
        """A path SNPE printed, as a path inside the run folder (refused when it lies elsewhere)."""
        absolute = path if path.startswith("/") else posixpath.join(cwd, path)
        absolute = posixpath.normpath(absolute)
        if sess.physical != sess.rundir.path and (
            absolute == sess.physical or absolute.startswith(sess.physical + "/")
        ):
            absolute = sess.rundir.path + absolute[len(sess.physical) :]
        if not sess.rundir.contains(absolute):
            raise DeviceError(
                f"{self.name}: snpe-net-run on {sess.label} could not write {path}, which is outside the run "
                f"folder {sess.rundir.path}; qc creates folders only inside it."
            )
        return absolute

    def _net_run(self, sess: _Session, argv: list[str], cwd: str, images: int) -> CommandResult:
        """snpe-net-run with the ``Failed to write data to`` retry and the rc 137 (out of memory) advice."""
        created: set[str] = set()
        limit = len(self._tensors) + 5
        for _attempt in range(limit + 1):
            result = self._tool(sess, argv, cwd=cwd)
            failed = _failed_writes(result)
            if failed:
                folders = {posixpath.dirname(self._inside(sess, p, cwd)) for p in failed}
                new = sorted(folders - created)
                if not new:
                    raise DeviceError(
                        f"{self.name}: snpe-net-run on {sess.label} still cannot write {failed[0]} after qc "
                        f"created {posixpath.dirname(failed[0])}: check the free space and permissions there."
                    )
                self._mkdirs(sess, new, cwd)
                created.update(new)
                self.write_retries += 1
                log.info(
                    "%s: snpe-net-run could not write %s; created %d folder(s), retrying",
                    self.name,
                    failed[0],
                    len(new),
                )
                continue
            if result.rc == 137:
                raise DeviceError(
                    f"{self.name}: snpe-net-run on {sess.label} was killed (exit status 137), most likely out of "
                    f"memory on the device, while running {images} input(s) in one call: lower target.batch_size "
                    f"in models.yaml (now {self.spec.batch_size})."
                )
            if result.rc != 0:
                raise DeviceError(self._failure("snpe-net-run", result, sess.label))
            return result
        raise DeviceError(f"{self.name}: snpe-net-run on {sess.label} kept failing to write its outputs.")

    def _net_run_argv(self, sess: _Session, *, debug: bool, native_out: bool, profile: bool = False) -> list[str]:
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
        native_in = self.spec.native_io
        if native_in:
            argv.append("--use_native_input_files")
        if native_out:
            argv.append("--use_native_output_files")
        if native_in or native_out:
            argv.append("--userbuffer_auto")
        return argv

    # -- inputs and outputs -----------------------------------------------------------------------------------
    def _write_inputs(
        self, folder: Path, feeds: Sequence[Mapping[str, np.ndarray]], repeat: int = 1
    ) -> list[dict[str, np.ndarray]]:
        """Write the raw input files and ``input_list.txt``; return, per image, what was written (DLC layout)."""
        plans = self._input_plans()
        (folder / "inputs").mkdir(parents=True, exist_ok=True)
        lines = []
        written: list[dict[str, np.ndarray]] = []
        for j, feed in enumerate(feeds):
            parts = []
            values: dict[str, np.ndarray] = {}
            for k, plan in enumerate(plans):
                if plan.key not in feed:
                    raise DataError(f"{self.name}: no value for model input {plan.key!r} (got {sorted(feed)}).")
                data = self._to_device(plan, np.asarray(feed[plan.key]))
                rel = f"inputs/{j:05d}_{k}.raw"
                data.tofile(folder / rel)
                values[plan.tensor.name] = data
                parts.append(rel if len(plans) == 1 else f"{plan.tensor.name}:={rel}")
            lines.append(" ".join(parts))
            written.append(values)
        lines = [line for line in lines for _ in range(repeat)]
        (folder / "input_list.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        return written

    def _as_read(self, plan: _Plan, data: np.ndarray) -> np.ndarray:
        """A written input as the network reads it (native: dequantized), in the ONNX layout."""
        encoding = plan.tensor.encoding
        if self.spec.native_io and _is_quantized(plan.tensor.dtype) and encoding is not None:
            values = dequantize(data, encoding)
        else:
            values = data.astype(np.float32)
        return np.ascontiguousarray(np.transpose(values, plan.permutation))

    def _to_device(self, plan: _Plan, array: np.ndarray) -> np.ndarray:
        inverse = tuple(int(i) for i in np.argsort(plan.permutation))
        data = np.ascontiguousarray(np.transpose(array, inverse))
        if tuple(data.shape) != plan.tensor.dims:
            raise DataError(
                f"{self.name}: input {plan.key!r} of shape {list(array.shape)} becomes {list(data.shape)} in the "
                f"DLC layout, but DLC input {plan.tensor.name!r} has dims {list(plan.tensor.dims)}."
            )
        if not self.spec.native_io:
            return data.astype("<f4")
        dtype = plan.tensor.dtype or "Float_32"
        np_type = NATIVE_DTYPES.get(dtype)
        if np_type is None:
            raise ModelError(f"{self.name}: DLC input {plan.tensor.name!r} has data type {dtype}, unknown to qc.")
        if _is_quantized(dtype):
            if plan.tensor.encoding is None:
                raise ModelError(
                    f"{self.name}: DLC input {plan.tensor.name!r} is {dtype} but snpe-dlc-info shows no encoding "
                    "for it; set native_io: false."
                )
            return quantize(data, plan.tensor.encoding, np_type)
        return data.astype(np.dtype(np_type).newbyteorder("<"))

    def _read(
        self, folder: Path, plan: _Plan, *, image: int, native: bool, required: bool, label: str
    ) -> np.ndarray | None:
        tensor = plan.tensor
        dtype_name = (tensor.dtype or "Float_32") if native else "Float_32"
        np_type = NATIVE_DTYPES.get(dtype_name)
        if np_type is None:
            raise ModelError(f"{self.name}: DLC tensor {tensor.name!r} has data type {dtype_name}, unknown to qc.")
        itemsize = np.dtype(np_type).itemsize
        expected = tensor.elements * itemsize
        rel = _raw_name(tensor.name)
        if rel is None:
            raise DeviceError(f"{self.name}: DLC tensor name {tensor.name!r} does not map to a file inside Result_*.")
        names = [rel, rel[: -len(".raw")] + "_native.raw"] if native else [rel]
        path = next((folder / n for n in names if (folder / n).is_file()), None)
        if path is None:
            if not required:
                return None
            raise DeviceError(
                f"{self.name}: snpe-net-run on {label} wrote no file for output {tensor.name!r} of image {image}: "
                f"expected {folder.name}/{names[0]} ({expected} bytes = {_dims_text(tensor.dims)} x {dtype_name})."
            )
        size = path.stat().st_size
        if size != expected:
            raise DeviceError(
                f"{self.name}: {folder.name}/{path.name if '/' not in rel else rel} from snpe-net-run on {label} has "
                f"{size} bytes; tensor {tensor.name!r} of dims {_dims_text(tensor.dims)} as {dtype_name} needs "
                f"{expected}. A partial or mis-shaped file is never accepted."
            )
        data = np.fromfile(path, dtype=np.dtype(np_type).newbyteorder("<")).reshape(tensor.dims)
        if native and _is_quantized(dtype_name):
            if tensor.encoding is None:
                raise ModelError(
                    f"{self.name}: output {tensor.name!r} is {dtype_name} but snpe-dlc-info shows no encoding to "
                    "dequantize it with; set native_io: false."
                )
            values = dequantize(data, tensor.encoding)
        else:
            values = data.astype(np.float32)
        return np.ascontiguousarray(np.transpose(values, plan.permutation))

    def _debug_folders(self, images: int) -> list[str]:
        """``out/Result_<i>/<dir>`` for every DLC tensor name with a ``/`` (relative to the batch folder)."""
        return sorted(
            {
                posixpath.join("out", f"Result_{j}", posixpath.dirname(rel))
                for j in range(images)
                for rel in (_raw_name(t) for t in self._tensors)
                if rel is not None and "/" in rel
            }
        )

    def _execute(self, feeds: Sequence[Mapping[str, np.ndarray]], *, debug: bool) -> list[TensorDict]:
        if not feeds:
            return []
        native_out = self.spec.native_io and not debug
        plans = self._debug_plans() if debug else self._output_plans()
        out: list[TensorDict] = []
        with self.session() as sess, tempfile.TemporaryDirectory(prefix="qc-snpe-") as tmp:
            remote = sess.next_dir()
            local_in = Path(tmp) / "in"
            written = self._write_inputs(local_in, feeds)
            sess.transport.put_tree(local_in, remote, deadline_s=self._deadline_s)
            folders = self._debug_folders(len(feeds)) if debug else []
            if folders:  # snpe-net-run --debug does not create the folders of tensor names with "/"
                self._mkdirs(sess, folders, remote)
            argv = self._net_run_argv(sess, debug=debug, native_out=native_out)
            self._net_run(sess, argv, remote, len(feeds))
            local_out = Path(tmp) / "out"
            sess.transport.get_tree(posixpath.join(remote, "out"), local_out, deadline_s=self._deadline_s)
            for j in range(len(feeds)):
                folder = local_out / f"Result_{j}"
                result: TensorDict = {}
                if debug:  # --debug dumps layer outputs, not the network inputs: those are what qc wrote
                    for plan in self._input_plans():
                        result[plan.tensor.name] = self._as_read(plan, written[j][plan.tensor.name])
                for plan in plans:
                    if plan.key in result:
                        continue
                    value = self._read(folder, plan, image=j, native=native_out, required=not debug, label=sess.label)
                    if value is not None:
                        result[plan.key] = value
                out.append(result)
            sess.rundir.remove(remote)
        return out

    # -- Runner API -----------------------------------------------------------------------------------------
    def run_batch(self, feeds: Sequence[Mapping[str, np.ndarray]]) -> list[TensorDict]:
        """Final outputs (ONNX names, ONNX layout), one ``snpe-net-run`` per ``batch_size`` images."""
        out: list[TensorDict] = []
        for start in range(0, len(feeds), self.batch_size):
            out += self._execute(feeds[start : start + self.batch_size], debug=False)
        return out

    def run_all_batch(self, feeds: Sequence[Mapping[str, np.ndarray]]) -> list[TensorDict]:
        """Every matched tensor (DLC names, ONNX layout) from ``snpe-net-run --debug``, per ``batch_size`` images."""
        out: list[TensorDict] = []
        for start in range(0, len(feeds), self.batch_size):
            out += self._execute(feeds[start : start + self.batch_size], debug=True)
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
        with self.session() as sess:
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
        with self.session() as sess, tempfile.TemporaryDirectory(prefix="qc-snpe-") as tmp:
            remote = sess.next_dir()
            local_in = Path(tmp) / "in"
            self._write_inputs(local_in, [feeds], repeat=max(1, runs))
            sess.transport.put_tree(local_in, remote, deadline_s=self._deadline_s)
            argv = self._net_run_argv(sess, debug=False, native_out=self.spec.native_io, profile=True)
            self._net_run(sess, argv, remote, max(1, runs))
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
            times = self._diagview(sess, remote, found, Path(tmp))
            sess.rundir.remove(remote)
        return self._profile(times)

    def _diagview(self, sess: _Session, remote: str, log_rel: str, tmp: Path) -> LayerTimes:
        host_tool = shutil.which("snpe-diagview")
        if host_tool is not None:
            where = "this machine"
            local_log = tmp / posixpath.basename(log_rel)
            sess.transport.get(posixpath.join(remote, log_rel), local_log, deadline_s=self._deadline_s)
            local = LocalTransport()
            csv_path = tmp / "layer_stats.csv"
            csv_run = local.run(
                [host_tool, "--input_log", str(local_log), "--csv_format_version", "2", "--output", str(csv_path)],
                deadline_s=self._deadline_s,
                cwd=str(tmp),
            )
            csv_text = (
                csv_path.read_text(encoding="utf-8", errors="replace") if csv_run.ok and csv_path.is_file() else None
            )
            if csv_text is None:
                text_run = local.run(
                    [host_tool, "--input_log", str(local_log)], deadline_s=self._deadline_s, cwd=str(tmp)
                )
        else:
            where = sess.label
            csv_run = self._tool(
                sess,
                ["snpe-diagview", "--input_log", log_rel, "--csv_format_version", "2", "--output", "layer_stats.csv"],
                cwd=remote,
            )
            csv_text = None
            if csv_run.ok:
                cat = sess.transport.run(["cat", "--", "layer_stats.csv"], deadline_s=120, cwd=remote, idempotent=True)
                csv_text = cat.stdout if cat.ok else None
            if csv_text is None:
                text_run = self._tool(sess, ["snpe-diagview", "--input_log", log_rel], cwd=remote)
        try:
            if csv_text is not None:
                return parse_diagview_csv(csv_text)
            log.info(
                "%s: snpe-diagview --csv_format_version 2 failed on %s (%s); reading its text form",
                self.name,
                where,
                _last_line(csv_run.stderr) or csv_run.rc,
            )
            if text_run.rc != 0:
                raise DeviceError(self._failure("snpe-diagview", text_run, where))
            return parse_diagview_text(text_run.stdout)
        except ParseError as exc:
            raise ParseError(f"{self.name}: {exc} [on {where}]") from None

    def _profile(self, times: LayerTimes) -> LayerProfile:
        layers = self.dlc_info().layers
        by_name = {layer.name: layer for layer in layers}
        rows = []
        for row in times.rows:
            layer = by_name.get(row.name or "")
            if layer is None and row.name is None and 0 <= row.index < len(layers):
                layer = layers[row.index]
            name = row.name or (layer.name if layer is not None else f"layer {row.index}")
            op_type = "?"
            if layer is not None:
                op = layer.eltwise_operation
                op_type = f"{layer.type}:{op}" if op else layer.type
            rows.append(LayerTimeRow(name, op_type, row.time, row.unit, row.share))
        total_us = times.total_inference_time_us
        run_ms = total_us / 1000.0 if total_us is not None and math.isfinite(total_us) else None
        return LayerProfile(rows, run_ms)


def _failed_writes(result: CommandResult) -> list[str]:
    paths = []
    for line in (result.stderr + "\n" + result.stdout).splitlines():
        if "Failed to write data to" in line:
            path = parse_failed_write(line)
            if path:
                paths.append(path)
    return paths


def _last_line(text: str) -> str:
    for line in reversed(text.strip().splitlines()):
        if line.strip():
            return line.strip()[:300]
    return ""


def _dims_text(dims: Sequence[int]) -> str:
    return "x".join(str(d) for d in dims) or "scalar"


@contextlib.contextmanager
def maybe_session(runner: object) -> Iterator[None]:
    """``runner.session()`` for a runner that has one (SNPE), else nothing: one device lease for a whole stage."""
    if isinstance(runner, SnpeRunner):
        with runner.session():
            yield
    else:
        yield
