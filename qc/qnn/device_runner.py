"""``QnnDeviceRunner``: a QNN context binary run with ``qnn-net-run`` on a device, over the SNPE target's transport
and device pool (a ``kind: qnn`` target wraps it).

Sessions, run folders and tool calls are those of :class:`qc.snpe.runner.SnpeRunner` (:mod:`qc.snpe.tools`): a
session leases a device of the pool for a ``with`` block; the first session on a device creates
``<remote_root>/qc-<run id>/`` and uploads the context binary into it once (later sessions reuse both); each batch
works in its own ``b<NNNN>/`` removed once its results are back; :meth:`QnnDeviceRunner.close` removes the run folder
(kept after a failure with ``keep_on_failure``). Deletes go through :class:`qc.device.RunDir` (inside the run folder
only); every remote path is an argv item or quoted.

* Tensor table: ``qnn-context-binary-utility --context_binary <bin> --json_file <json>`` (on this machine when the
  tool is on its PATH, else on the device), parsed by :mod:`qc.qnn.context_info`; cached by the binary's SHA-256.
  The scale/offset of native I/O files come from it, not from the QDQ model the context was made from: the context
  is what the device runs (it may be a binary qc did not make, the preparation may change I/O types, and an
  onnxruntime-exported context keeps float I/O with the quantization inside the graph).
* Outputs: :mod:`qc.qnn.netrun` (identifier file names, size checks, dequantization, layout back to ONNX).
* Per-layer tensors: none. ``qnn-net-run --debug`` cannot be used with ``--retrieve_context``; :meth:`run_all`
  raises :class:`LayerOutputsUnavailableError` saying so (per-layer similarity comes from the ``qnn-htp`` host target).
* Per-op time (:meth:`layer_times`): ``--profiling_level detailed`` over ``runs`` inferences, the log
  ``out/qnn-profiling-data_<k>.log`` read with ``qnn-profile-viewer`` as CSV (``--output <file>.csv``, parsed by
  :func:`qc.qnn.profile.parse_htp_profile`) or, when that fails, as text (:mod:`qc.qnn.viewer`). HTP ``Input``/
  ``Output OpId_n`` pseudo-ops are I/O transfer rows, never layers; values are cycles (compare shares).
* Speed (:meth:`speed`): ``speed_inferences`` inferences at ``--profiling_level basic``; FPS is ``NetRun IPS``
  (file I/O included, as the tool says), the mean latency the averaged ``NetRun`` time.
"""

from __future__ import annotations

import contextlib
import itertools
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
from pathlib import Path

import numpy as np

from qc.config import DeviceSpec
from qc.device.pool import DevicePool
from qc.device.rundir import RunDir
from qc.device.transport import CommandResult, LocalTransport, Transport
from qc.errors import DeviceError, ModelError, ParseError
from qc.qnn.context_info import ContextGraph, ContextInfo, parse_context_json
from qc.qnn.device_settings import QnnDeviceTarget
from qc.qnn.names import qnn_identifier
from qc.qnn.netrun import IoPlan, match_tensors, net_run_argv, read_output, write_inputs
from qc.qnn.profile import HtpProfile, parse_htp_profile
from qc.qnn.viewer import ViewerReport, parse_viewer_text
from qc.runners.base import GraphTensors, TensorDict, TensorInfo
from qc.snpe.tools import RunRecord, Session, device_label, failure, make_transport, remove_run_dirs, run_tool
from qc.speed import LatencyStats, LayerProfile, LayerTimeRow

__all__ = ["LayerOutputsUnavailableError", "QnnDeviceRunner", "export_for_target"]

log = logging.getLogger("qc.qnn")

CONTEXT_NAME = "context.bin"
EXECUTE_TIME = "QNN (execute) time"
"""The per-execution total of the viewer's text that times one graph execution on the backend."""
_RUN_FOLDERS = itertools.count(1)


class LayerOutputsUnavailableError(ModelError):
    """Per-layer outputs were asked of a context binary: ``qnn-net-run --debug`` refuses ``--retrieve_context``."""


def export_for_target(
    spec: QnnDeviceTarget,
    reference: Path,
    calibration: Sequence[Mapping[str, np.ndarray]],
    out_dir: Path,
    entry: str,
) -> tuple[Path, Path]:
    """Quantize ``reference`` with the target's settings (QDQ for the HTP) and export its context binary for
    ``htp_arch``/``soc_model``. Returns (context binary, QDQ model). Needs ``onnxruntime-qnn`` on this machine."""
    from qc.qnn.context import export_context_binary
    from qc.qnn.quantize import quantize_htp
    from qc.qnn.session import HtpOptions

    out_dir.mkdir(parents=True, exist_ok=True)
    qdq = out_dir / "model.qdq.onnx"
    quantize_htp(reference, spec, [dict(c) for c in calibration], qdq, entry)
    options = HtpOptions(htp_arch=spec.htp_arch, soc_model=spec.soc_model)
    context = export_context_binary(qdq, out_dir / "model_qnn.bin", options, entry=entry)
    if len(context.binaries) != 1:
        raise ModelError(
            f"{entry}: the HTP split the model into {len(context.binaries)} partitions; qnn-net-run runs one "
            "context binary with its graph, so the target needs a model HTP runs whole."
        )
    return context.binaries[0], qdq


class QnnDeviceRunner:
    """:class:`qc.runners.base.Runner` (and ``BatchRunner``) for a ``kind: qnn`` target.

    ``reference`` gives the reference graph (ONNX names and shapes of the inputs and outputs the context must
    match); ``context_binary`` overrides ``spec.context_binary`` (an exported one); ``source_model`` (or
    ``spec.source_model``) maps profiled ops to ONNX nodes.
    """

    def __init__(
        self,
        name: str,
        spec: QnnDeviceTarget,
        devices: Sequence[DeviceSpec],
        *,
        reference: Callable[[], GraphTensors],
        lock_dir: Path,
        context_binary: Path | None = None,
        source_model: Path | None = None,
        cache_dir: Path | None = None,
        run_id: str | None = None,
        lease_timeout_s: float = 1800.0,
        tool_deadline_s: float = 1800.0,
        transport_factory: Callable[[DeviceSpec], Transport] = make_transport,
    ) -> None:
        self.name = name
        self.spec = spec
        self.batch_size = spec.batch_size
        context = context_binary or spec.context_binary
        if context is None:
            raise ModelError(
                f"{name}: no context binary: set context_binary in the target or export one from the reference "
                "(qc.qnn.device_runner.export_for_target)."
            )
        self.context = context
        self.source_model = source_model or spec.source_model
        by_name = {d.name: d for d in devices}
        missing = [d for d in spec.devices if d not in by_name]
        if missing:
            known = sorted(by_name) or "none"
            raise DeviceError(f"{name}: device(s) {missing} are not in the models.yaml 'devices' list ({known}).")
        self._pool = DevicePool({d: by_name[d] for d in spec.devices}, lock_dir)
        self._reference = reference
        self._cache_dir = cache_dir
        self._run_id = run_id or os.environ.get("QC_RUN_ID") or secrets.token_hex(4)
        self._lease_timeout_s = lease_timeout_s
        self._deadline_s = tool_deadline_s
        self._transport_factory = transport_factory
        self._session: Session | None = None
        self._info: ContextInfo | None = None
        self._plans: tuple[list[IoPlan], list[IoPlan]] | None = None
        self.run_dirs: list[RunRecord] = []
        """The run folder on each device this runner used, in order of first use."""
        self.last_profile: ViewerReport | None = None
        """The viewer text of the last profiled run (totals, ``NetRun IPS``)."""

    def __repr__(self) -> str:
        return f"QnnDeviceRunner({self.name!r}, {str(self.context)!r})"

    # -- Runner basics ----------------------------------------------------------------------------------------
    def model_path(self) -> Path:
        return self.context

    def prepare(self) -> None:
        self._io()

    def __enter__(self) -> QnnDeviceRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Remove this runner's run folder on every device it used (kept after a failure with keep_on_failure)."""
        remove_run_dirs(self.name, self.run_dirs, self._transport_factory, keep_on_failure=self.spec.keep_on_failure)

    # -- the context's tensor table ---------------------------------------------------------------------------
    def context_info(self) -> ContextInfo:
        """``qnn-context-binary-utility`` on the context binary, parsed (host tool if on PATH, else the device)."""
        if self._info is None:
            self._info = self._load_context_info()
        return self._info

    def context_graph(self) -> ContextGraph:
        return self.context_info().graph()

    def _cache_path(self) -> Path | None:
        if self._cache_dir is None:
            return None
        from qc.data.images import file_sha256

        return self._cache_dir / "qnn-context-info" / f"{file_sha256(self.context)}.json"

    def _load_context_info(self) -> ContextInfo:
        if not self.context.is_file():
            raise ModelError(f"{self.name}: context binary not found: {self.context}.")
        cached = self._cache_path()
        if cached is not None and cached.is_file():
            return self._parse_info(cached.read_text(encoding="utf-8"), f"cached {cached}")
        host_tool = shutil.which("qnn-context-binary-utility")
        if host_tool is not None:
            with tempfile.TemporaryDirectory(prefix="qc-qnn-") as tmp:
                out = Path(tmp) / "context.json"
                result = LocalTransport().run(
                    [host_tool, "--context_binary", str(self.context), "--json_file", str(out)],
                    deadline_s=self._deadline_s,
                )
                if result.rc != 0 or not out.is_file():
                    raise DeviceError(failure(self.name, "qnn-context-binary-utility", result, "this machine"))
                text, where = out.read_text(encoding="utf-8", errors="replace"), "this machine"
        else:
            with self.session() as sess:
                where = sess.label
                argv = ["qnn-context-binary-utility", "--context_binary", sess.dlc, "--json_file", "context.json"]
                result = run_tool(sess, argv, cwd=sess.rundir.path)
                if result.rc != 0:
                    raise DeviceError(failure(self.name, "qnn-context-binary-utility", result, where))
                cat = sess.transport.run(
                    ["cat", "--", "context.json"], deadline_s=120, cwd=sess.rundir.path, idempotent=True
                )
                if not cat.ok:
                    raise DeviceError(failure(self.name, "cat context.json", cat, where))
                text = cat.stdout
                sess.rundir.remove("context.json")
        info = self._parse_info(text, where)
        if cached is not None:
            from qc.cache import atomic_write_text

            cached.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(cached, text)
        return info

    def _parse_info(self, text: str, where: str) -> ContextInfo:
        try:
            info = parse_context_json(text)
        except ParseError as exc:
            raise ParseError(
                f"{self.name}: {exc} [qnn-context-binary-utility --context_binary {self.context} on {where}]"
            ) from None
        if len(info.graphs) != 1:
            # qnn-net-run runs every graph of a context, each from its own input list ("__" skips one): qc drives
            # one graph per context binary
            raise ModelError(
                f"{self.name}: {self.context} holds {len(info.graphs)} graphs ({[g.name for g in info.graphs]}); the "
                "qnn target runs context binaries with one graph: prepare the model as one graph."
            )
        return info

    def graph(self) -> GraphTensors:
        """The context graph's inputs and outputs (context names and layout): a context shows nothing else."""
        graph = self.context_graph()
        tensors = [
            TensorInfo(k, t.name, "Input" if k < len(graph.inputs) else "Output", "", t.dims, t.dtype)
            for k, t in enumerate([*graph.inputs, *graph.outputs])
        ]
        return GraphTensors(
            inputs={t.name: t.dims for t in graph.inputs},
            outputs=tuple(t.name for t in graph.outputs),
            tensors=tuple(tensors),
        )

    def _io(self) -> tuple[list[IoPlan], list[IoPlan]]:
        if self._plans is None:
            reference = self._reference()
            graph = self.context_graph()
            shapes = {t.name: t.shape for t in reference.tensors if t.shape is not None}
            inputs = match_tensors(self.name, dict(reference.inputs), graph.inputs, self.spec.io_layout, "input")
            wanted = {name: shapes.get(name, ()) for name in reference.outputs}
            outputs = match_tensors(self.name, wanted, graph.outputs, self.spec.io_layout, "output")
            self._plans = (inputs, outputs)
        return self._plans

    def io_plans(self) -> tuple[list[IoPlan], list[IoPlan]]:
        """(inputs, outputs): each reference graph input/output, its context tensor and the permutation context ->
        ONNX layout."""
        return self._io()

    def tensor_map_rows(self) -> list[dict[str, str]]:
        """Reference I/O -> context tensor and permutation (what tensor_map.csv shows for this target)."""
        inputs, outputs = self._io()
        return [
            {
                "reference": p.key,
                "target": p.tensor.name,
                "permutation": " ".join(map(str, p.permutation)),
                "dtype": p.tensor.dtype,
                "reason": "",
            }
            for p in [*inputs, *outputs]
        ]

    # -- sessions -------------------------------------------------------------------------------------------
    @contextmanager
    def session(self) -> Iterator[Session]:
        """Lease a device and hold it, with its transport, for the ``with`` block (re-entrant). The first session on a
        device creates the run folder and uploads the context binary; later ones reuse both."""
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
                if not transport.run(["test", "-f", rundir.join(CONTEXT_NAME)], deadline_s=60, idempotent=True).ok:
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
                dlc=rundir.join(CONTEXT_NAME),
                runtime="dsp",
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
        run_id = f"{self._run_id}-{os.getpid()}-q{next(_RUN_FOLDERS)}"
        rundir = RunDir(transport, device.remote_root, run_id, keep_on_failure=self.spec.keep_on_failure)
        try:
            rundir.create()
        except DeviceError as exc:
            raise DeviceError(f"{self.name}: cannot create the run folder on {label}: {exc}") from None
        record = RunRecord(device, run_id, rundir.path, rundir.path)
        self.run_dirs.append(record)
        try:
            transport.put(self.context, rundir.join(CONTEXT_NAME), deadline_s=self._deadline_s)
        except BaseException:
            record.failed = True
            raise
        log.debug("%s: run folder %s on %s", self.name, rundir.path, label)
        return record

    # -- qnn-net-run ----------------------------------------------------------------------------------------
    def _net_run(self, sess: Session, remote: str, *, profiling: str | None, images: int) -> CommandResult:
        argv = net_run_argv(
            sess.dlc,
            backend=self.spec.backend,
            native=self.spec.native_io,
            profiling=profiling,
            perf_profile=sess.perf_profile,
        )
        result = run_tool(sess, argv, cwd=remote)
        if result.rc == 137:
            raise DeviceError(
                f"{self.name}: qnn-net-run on {sess.label} was killed (exit status 137), most likely out of memory on "
                f"the device, while running {images} input(s) in one call: lower target.batch_size (now "
                f"{self.spec.batch_size})."
            )
        if result.rc != 0:
            raise DeviceError(failure(self.name, "qnn-net-run", result, sess.label) + f" [{shlex.join(argv)}]")
        return result

    def _execute(self, feeds: Sequence[Mapping[str, np.ndarray]]) -> list[TensorDict]:
        if not feeds:
            return []
        inputs, outputs = self._io()
        out: list[TensorDict] = []
        with self.session() as sess, tempfile.TemporaryDirectory(prefix="qc-qnn-") as tmp:
            remote = sess.next_dir()
            local_in = Path(tmp) / "in"
            write_inputs(self.name, local_in, inputs, feeds, native=self.spec.native_io)
            sess.transport.put_tree(local_in, remote, deadline_s=self._deadline_s)
            self._net_run(sess, remote, profiling=None, images=len(feeds))
            local_out = Path(tmp) / "out"
            sess.transport.get_tree(posixpath.join(remote, "out"), local_out, deadline_s=self._deadline_s)
            for j in range(len(feeds)):
                folder = local_out / f"Result_{j}"
                out.append(
                    {
                        plan.key: read_output(
                            self.name, folder, plan, image=j, native=self.spec.native_io, label=sess.label
                        )
                        for plan in outputs
                    }
                )
            sess.rundir.remove(remote)
        return out

    # -- Runner API -----------------------------------------------------------------------------------------
    def run_batch(self, feeds: Sequence[Mapping[str, np.ndarray]]) -> list[TensorDict]:
        """Final outputs (ONNX names, ONNX layout), one ``qnn-net-run`` per ``batch_size`` inputs."""
        out: list[TensorDict] = []
        for start in range(0, len(feeds), self.batch_size):
            out += self._execute(feeds[start : start + self.batch_size])
        return out

    def run(self, feeds: Mapping[str, np.ndarray]) -> TensorDict:
        return self.run_batch([feeds])[0]

    def run_pass_batch(self, feeds: Sequence[Mapping[str, np.ndarray]]) -> list[tuple[TensorDict, TensorDict]]:
        """(no intermediate tensors, final outputs) per feed, from one ``qnn-net-run`` per ``batch_size`` inputs: the
        comparison pass's execution (a context binary has no per-layer tensors to give, so the pass compares final
        outputs and the task scores the same outputs: the device runs each image once)."""
        return [({}, out) for out in self.run_batch(feeds)]

    def run_all_batch(self, feeds: Sequence[Mapping[str, np.ndarray]]) -> list[TensorDict]:
        """Not available: see :class:`LayerOutputsUnavailableError`."""
        del feeds
        raise LayerOutputsUnavailableError(
            f"{self.name}: per-layer outputs cannot come from a QNN context binary: qnn-net-run's --debug (every "
            "layer's output) cannot be used with --retrieve_context, and the prepared graph keeps no intermediate "
            "tensors. The qnn target gives final outputs and per-op time only; for per-layer similarity add a "
            "qnn-htp target (the same HTP preparation on the host simulator, activations exposed), or drop the "
            "layer gates (layer_cosine) for this target."
        )

    def run_all(self, feeds: Mapping[str, np.ndarray]) -> TensorDict:
        return self.run_all_batch([feeds])[0]

    def _profiled(self, feeds: Mapping[str, np.ndarray], runs: int, level: str) -> tuple[HtpProfile, ViewerReport]:
        """Run ``runs`` inferences with ``--profiling_level level``; return the op profile (CSV, else text) and the
        viewer's text report."""
        inputs, _ = self._io()
        nodes = self._onnx_nodes()
        with self.session() as sess, tempfile.TemporaryDirectory(prefix="qc-qnn-") as tmp:
            remote = sess.next_dir()
            local_in = Path(tmp) / "in"
            write_inputs(self.name, local_in, inputs, [feeds], native=self.spec.native_io, repeat=max(1, runs))
            sess.transport.put_tree(local_in, remote, deadline_s=self._deadline_s)
            self._net_run(sess, remote, profiling=level, images=max(1, runs))
            found = sess.transport.run(
                'for f in out/qnn-profiling-data*.log; do if [ -f "$f" ]; then echo "$f"; break; fi; done',
                deadline_s=60,
                cwd=remote,
                idempotent=True,
            ).stdout.strip()
            if not found:
                raise DeviceError(
                    f"{self.name}: qnn-net-run --profiling_level {level} on {sess.label} left no "
                    "qnn-profiling-data_<k>.log in its output folder."
                )
            csv_text, text = self._viewer(sess, remote, found, Path(tmp))
            sess.rundir.remove(remote)
        try:
            report = parse_viewer_text(text, nodes)
            profile = report.profile
            if csv_text is not None:
                try:
                    profile = parse_htp_profile(csv_text, nodes)
                except ParseError as exc:
                    log.info("%s: the viewer's CSV could not be read (%s); using its text form", self.name, exc)
        except ParseError as exc:
            raise ParseError(f"{self.name}: {exc} [qnn-profile-viewer on {found}]") from None
        self.last_profile = report
        return profile, report

    def _viewer(self, sess: Session, remote: str, log_rel: str, tmp: Path) -> tuple[str | None, str]:
        """(CSV text or None, text) of ``qnn-profile-viewer`` on the log (host tool when on PATH, else the device)."""
        host_tool = shutil.which("qnn-profile-viewer")
        if host_tool is not None:
            where = "this machine"
            local_log = tmp / posixpath.basename(log_rel)
            sess.transport.get(posixpath.join(remote, log_rel), local_log, deadline_s=self._deadline_s)
            local = LocalTransport()
            csv_path = tmp / "profile.csv"
            csv_run = local.run(
                [host_tool, "--input_log", str(local_log), "--output", str(csv_path)],
                deadline_s=self._deadline_s,
                cwd=str(tmp),
            )
            csv_text = (
                csv_path.read_text(encoding="utf-8", errors="replace") if csv_run.ok and csv_path.is_file() else None
            )
            text_run = local.run([host_tool, "--input_log", str(local_log)], deadline_s=self._deadline_s, cwd=str(tmp))
        else:
            where = sess.label
            csv_argv = ["qnn-profile-viewer", "--input_log", log_rel, "--output", "profile.csv"]
            csv_run = run_tool(sess, csv_argv, cwd=remote)
            csv_text = None
            if csv_run.ok:
                cat = sess.transport.run(["cat", "--", "profile.csv"], deadline_s=120, cwd=remote, idempotent=True)
                csv_text = cat.stdout if cat.ok else None
            text_run = run_tool(sess, ["qnn-profile-viewer", "--input_log", log_rel], cwd=remote)
        if text_run.rc != 0:
            raise DeviceError(failure(self.name, "qnn-profile-viewer", text_run, where))
        return csv_text, text_run.stdout

    def _onnx_nodes(self) -> dict[str, str]:
        """{name: op type} of the source model's nodes, their identifier forms added (ops may be named either way)."""
        if self.source_model is None:
            return {}
        from qc.qnn.profile import onnx_node_types

        nodes = onnx_node_types(self.source_model)
        return {**nodes, **{ident: nodes[name] for ident, name in self._identifier_names().items()}}

    def _identifier_names(self) -> dict[str, str]:
        """Identifier form -> ONNX node name, for the source model's nodes whose identifier form is unique."""
        if self.source_model is None:
            return {}
        from qc.qnn.profile import onnx_node_types

        names = list(onnx_node_types(self.source_model))
        idents: dict[str, list[str]] = {}
        for name in names:
            idents.setdefault(qnn_identifier(name), []).append(name)
        return {i: n[0] for i, n in idents.items() if len(n) == 1 and i not in names}

    def layer_times(self, feeds: Mapping[str, np.ndarray], *, runs: int = 10) -> LayerProfile:
        """Per-op time of ``runs`` profiled inferences (HTP: cycles, compare shares); I/O transfers kept apart."""
        profile, report = self._profiled(feeds, runs, "detailed")
        if not profile.ops:
            raise ParseError(
                f"{self.name}: qnn-profile-viewer lists no per-op rows for {runs} profiled inference(s) on the device: "
                "the backend reported no op times at --profiling_level detailed."
            )
        originals = self._identifier_names()
        rows = [
            LayerTimeRow(originals.get(r.layer, r.layer), r.op_type, r.time, r.unit, r.share)
            for r in profile.layer_rows()
        ]
        unit = rows[0].unit if rows else "cycles"
        everything = sum(r.time for r in rows) + sum(i.cycles for i in profile.io)
        io = [
            LayerTimeRow(
                f"{i.kind.capitalize()} OpId_{i.op_id}",
                f"{i.kind} transfer",
                i.cycles,
                unit,
                i.cycles / everything if everything > 0 else math.nan,
            )
            for i in profile.io
        ]
        netrun = report.netrun_us
        return LayerProfile(rows, netrun / 1000.0 if netrun is not None else None, io)

    def speed(self, feeds: Mapping[str, np.ndarray], *, rounds: int = 0, warmup: int = 0) -> LatencyStats:
        """``speed_inferences`` inferences of ``feeds`` at ``--profiling_level basic``: FPS = ``NetRun IPS``.

        A viewer layout without that line gives FPS = 1 / the averaged ``NetRun`` time, else (the per-execution
        layout of QNN 2.1x, which prints neither) 1 / the mean ``QNN (execute) time`` of the executions; the figure's
        source says which (the last excludes file I/O). None of them: a ParseError, never an invented figure."""
        del rounds, warmup
        count = self.spec.speed_inferences
        _, report = self._profiled(feeds, count, "basic")
        label = ", ".join(device_label(d) for d in self._pool.devices.values())
        netrun = report.netrun_us
        execute = report.profile.totals.get(EXECUTE_TIME)
        if report.ips is not None:
            fps = report.ips
            mean_ms = netrun / 1000.0 if netrun is not None else (1000.0 / fps if fps > 0 else math.inf)
            how = "fps = NetRun IPS (includes file I/O), mean latency = averaged NetRun time"
        elif netrun is not None and netrun > 0:
            fps, mean_ms = 1e6 / netrun, netrun / 1000.0
            how = "fps = 1 / averaged NetRun time (the viewer printed no NetRun IPS line; includes file I/O)"
        elif execute is not None and execute[1] == "us" and execute[0] > 0:
            fps, mean_ms = 1e6 / execute[0], execute[0] / 1000.0
            how = (
                f"fps = 1 / mean '{EXECUTE_TIME}' of {report.profile.runs} execution(s) (this viewer layout prints "
                "neither NetRun IPS nor a NetRun time; file I/O excluded)"
            )
        else:
            raise ParseError(
                f"{self.name}: qnn-profile-viewer printed no 'NetRun IPS' line, no averaged 'NetRun' time and no "
                f"'{EXECUTE_TIME}' in microseconds for the speed run ({report.layout} layout): no throughput to report."
            )
        return LatencyStats(
            fps=fps,
            latency_ms_mean=mean_ms,
            latency_ms_p50=math.nan,
            latency_ms_p90=math.nan,
            latency_ms_p99=math.nan,
            rounds=count,
            source=(
                f"qnn-net-run --retrieve_context --backend {self.spec.backend} on {label}, {count} inferences: {how}; "
                "percentiles unknown"
            ),
        )


@contextlib.contextmanager
def qnn_session(runner: object) -> Iterator[None]:
    """``runner.session()`` for a QNN device runner, else nothing: one device lease for a whole stage."""
    if isinstance(runner, QnnDeviceRunner):
        with runner.session():
            yield
    else:
        yield
