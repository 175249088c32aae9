"""A :class:`qc.runners.base.Runner` on Qualcomm's HTP backend (the simulator of ``onnxruntime-qnn``).

``run`` uses the graph as deployed (no extra outputs); ``run_all`` a copy whose activations are extra graph outputs
(:mod:`qc.qnn.expose`). Each session is created once per runner (graph preparation takes seconds). Where both ran
on the same input (the comparison pass calls both), the final outputs of the two are compared: exposing tensors
must not change them, and :attr:`HtpRunner.exposure_change` says by how much it did.

:class:`SplitTap` streams, during the same ``run_all`` calls, the error split of each tensor: HTP against
onnxruntime's CPU int8 kernels on the same QDQ model (the runtime part) beside CPU int8 against the FP32 reference
(the quantization part), with running sums only.
"""

from __future__ import annotations

import hashlib
import math
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from qc.compare.matching import match_qdq
from qc.compare.metrics import MetricAccumulator, PairStats, pair_stats
from qc.errors import ModelError
from qc.qnn.expose import FUSED_ACTIVATIONS, expose_activations, max_abs_change
from qc.qnn.profile import HtpProfile, onnx_node_types, read_htp_profile
from qc.qnn.session import HtpOptions, create_htp_session, run_session
from qc.runners.base import GraphTensors, Runner, TensorDict
from qc.runners.ort import FLOAT_TYPES, describe, load_checked
from qc.snpe.hostsim.split import ErrorSplit, SplitRow
from qc.speed import LatencyStats, LayerProfile, LayerTimeRow

WALL_SOURCE = "QNN HTP simulator wall time on this host (not the device's speed)"


def _digest(feeds: Mapping[str, np.ndarray]) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for name in sorted(feeds):
        a = np.ascontiguousarray(feeds[name])
        h.update(f"{name}{a.dtype.str}{a.shape}".encode())
        h.update(a.view(np.uint8).reshape(-1).data)
    return h.digest()


def float_activation_outputs(model: Any) -> list[str]:
    """Float node outputs of a float graph to expose, in graph order, without those HTP fuses away (an output read
    only by a fused activation such as LeakyRelu after a Conv) and without the graph outputs."""
    _graph, infos = describe(model)
    outputs = {o.name for o in model.graph.output}
    consumers: dict[str, set[str]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, set()).add(node.op_type)
    names = []
    for node in model.graph.node:
        if node.op_type == "Constant":
            continue
        for out in node.output:
            vi = infos.get(out)
            if not out or out in outputs or vi is None or vi.type.tensor_type.elem_type not in FLOAT_TYPES:
                continue
            uses = consumers.get(out, set())
            if uses and uses <= FUSED_ACTIVATIONS:
                continue
            names.append(out)
    return names


def expose_float(model_path: Path, out: Path) -> list[str]:
    """``model_path`` (a float graph) with :func:`float_activation_outputs` added as graph outputs at ``out``."""
    import onnx

    model = load_checked(model_path, str(model_path))
    names = float_activation_outputs(model)
    if not names:
        raise ModelError(f"{model_path}: no float intermediate tensor to expose.")
    _graph, infos = describe(model)
    for name in names:
        model.graph.output.append(infos[name])
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))
    return names


class SplitTap:
    """Per tensor, running sums of HTP vs CPU int8 (runtime) and CPU int8 vs FP32 (quantization), fed by
    :meth:`HtpRunner.run_all`: each image runs once on the FP32 reference and once on the CPU int8 QDQ model."""

    def __init__(self, model: str, reference: Runner, host: Runner, exposed: Sequence[str]) -> None:
        self.model = model
        self.reference = reference
        self.host = host
        host_graph = host.graph()
        matches = match_qdq(reference.graph(), host_graph)
        available = set(exposed) | set(host_graph.inputs) | set(host_graph.outputs)
        self._rows = [(m.reference, m.target) for m in matches if m.target is not None and m.target in available]
        self._quant = {info.name: MetricAccumulator() for info, _ in self._rows}
        self._runtime = {info.name: MetricAccumulator() for info, _ in self._rows}
        self.images = 0

    def add(self, image_id: int | None, feeds: Mapping[str, np.ndarray], htp_all: Mapping[str, np.ndarray]) -> None:
        ref_all = self.reference.run_all(feeds)
        cpu_all = self.host.run_all(feeds)
        for info, target in self._rows:
            a, c, h = ref_all.get(info.name), cpu_all.get(target), htp_all.get(target)
            self._quant[info.name].add(_pair(a, c, "the FP32 reference or onnxruntime's CPU int8 run"), image_id)
            self._runtime[info.name].add(_pair(c, h, "onnxruntime's CPU int8 run or the HTP"), image_id)
        self.images += 1

    def result(self) -> ErrorSplit:
        split = ErrorSplit(model=self.model, images=self.images)
        for info, target in self._rows:
            split.rows.append(
                SplitRow(
                    info.index,
                    info.name,
                    info.op_type,
                    target,
                    self._quant[info.name].summary(),
                    self._runtime[info.name].summary(),
                )
            )
        return split


def _pair(a: np.ndarray | None, b: np.ndarray | None, what: str) -> PairStats:
    if a is None or b is None:
        return PairStats(math.nan, math.nan, math.nan, math.nan, f"{what} did not produce it")
    if a.shape != b.shape:
        return PairStats(math.nan, math.nan, math.nan, math.nan, f"shape {a.shape} vs {b.shape}")
    return pair_stats(a, b)


class HtpRunner:
    """Runs an ONNX model (QDQ, or float in HTP fp16) entirely on the HTP; CPU fallback always disabled.

    ``workdir`` holds the exposed copy of the model and the profile of :meth:`layer_times`.
    """

    batch_size = 1
    timing_source = WALL_SOURCE
    """What a wall-clock timing of :meth:`run` measures (the fps test labels pytest-benchmark's figure with it)."""

    def __init__(self, name: str, model: Path, options: HtpOptions, *, workdir: Path, entry: str) -> None:
        self.name = name
        self._path = model
        self._options = options
        self._workdir = workdir
        self._entry = entry
        self._graph: GraphTensors | None = None
        self._session: Any = None
        self._exposed_session: Any = None
        self._exposed: list[str] = []
        self._last_run: tuple[bytes, TensorDict] | None = None
        self._last_all: tuple[bytes, TensorDict] | None = None
        self.exposure_change: float | None = None
        """Largest change of a final output between the deployed and the exposed graph (None: not compared)."""
        self.exposure_checks = 0
        self.tap: SplitTap | None = None
        self.profile: HtpProfile | None = None
        """The QNN profile of the last :meth:`layer_times` call (totals, I/O transfers, finalize phases)."""

    # -- graph ----------------------------------------------------------------------------------------------
    def model_path(self) -> Path:
        return self._path

    def prepare(self) -> None:
        if self._graph is None:
            self._graph, _ = describe(load_checked(self._path, self.name))

    def graph(self) -> GraphTensors:
        self.prepare()
        assert self._graph is not None
        return self._graph

    def quantized(self) -> bool:
        return bool(self.graph().dequantized)

    def exposed(self) -> list[str]:
        """The intermediate tensors :meth:`run_all` returns (besides the inputs and final outputs)."""
        if not self._exposed:
            out = self._workdir / "model.exposed.onnx"
            if self.quantized():
                self._exposed = expose_activations(self._path, out, skip_fused=True)
            else:
                self._exposed = expose_float(self._path, out)
        return self._exposed

    # -- sessions -------------------------------------------------------------------------------------------
    def deployed_session(self) -> Any:
        """The session of the graph as deployed (creating it raises the HTP's refusals)."""
        if self._session is None:
            self._session = create_htp_session(self._path, self._options, entry=self._entry)
        return self._session

    def run(self, feeds: Mapping[str, np.ndarray]) -> TensorDict:
        outs = run_session(self.deployed_session(), feeds)
        digest = _digest(feeds)
        self._last_run = (digest, outs)
        if self._last_all is not None and self._last_all[0] == digest:
            self._check_exposure(outs, self._last_all[1])
        return outs

    def run_all(self, feeds: Mapping[str, np.ndarray]) -> TensorDict:
        if self._exposed_session is None:
            self.exposed()
            self._exposed_session = create_htp_session(
                self._workdir / "model.exposed.onnx", self._options, entry=f"{self._entry} (exposed activations)"
            )
        outs = run_session(self._exposed_session, feeds)
        result: TensorDict = {**{k: np.asarray(v) for k, v in feeds.items()}, **outs}
        digest = _digest(feeds)
        self._last_all = (digest, {k: outs[k] for k in self.graph().outputs if k in outs})
        if self._last_run is not None and self._last_run[0] == digest:
            self._check_exposure(self._last_run[1], self._last_all[1])
        if self.tap is not None:
            self.tap.add(None, feeds, result)
        return result

    def _check_exposure(self, deployed: Mapping[str, np.ndarray], exposed: Mapping[str, np.ndarray]) -> None:
        change = max_abs_change(deployed, exposed)
        self.exposure_change = max(self.exposure_change or 0.0, change)
        self.exposure_checks += 1
        self._last_run = self._last_all = None

    def run_batch(self, feeds: Sequence[Mapping[str, np.ndarray]]) -> list[TensorDict]:
        return [self.run(f) for f in feeds]

    def run_all_batch(self, feeds: Sequence[Mapping[str, np.ndarray]]) -> list[TensorDict]:
        return [self.run_all(f) for f in feeds]

    # -- speed ----------------------------------------------------------------------------------------------
    def speed(self, feeds: Mapping[str, np.ndarray], *, rounds: int, warmup: int) -> LatencyStats:
        """Wall time of :meth:`run` in this process: the simulator's speed on this host, not the device's."""
        for _ in range(warmup):
            self.run(feeds)
        times = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            self.run(feeds)
            times.append(time.perf_counter() - t0)
        return LatencyStats.from_seconds(times, WALL_SOURCE)

    def layer_times(self, feeds: Mapping[str, np.ndarray], *, runs: int) -> LayerProfile:
        """HTP cycles per ONNX node (and per HTP-inserted op) from QNN's detailed profile, mean over ``runs``.

        Graph input/output transfers are the profile's ``io`` rows, apart from the layers; graph totals (the
        accelerator's cycles) stay in :attr:`profile`. A session of its own, never the timed one.
        """
        self.deployed_session()  # refusals surface with the deployed graph's message first
        self._workdir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="qc-htp-profile-", dir=self._workdir) as tmp:
            csv_path = Path(tmp) / "profile.csv"
            options = HtpOptions(
                htp_arch=self._options.htp_arch,
                soc_model=self._options.soc_model,
                fp16=self._options.fp16,
                profiling="detailed",
                profile_path=csv_path,
                extra=self._options.extra,
            )
            session = create_htp_session(self._path, options, entry=f"{self._entry} (profiled)")
            for _ in range(runs):
                run_session(session, feeds)
            del session
            self.profile = read_htp_profile(csv_path, onnx_node_types(self._path))
        return profile_rows(self.profile)


def profile_rows(profile: HtpProfile) -> LayerProfile:
    """The layers (cycles, shares of the layers) and the I/O transfers (shares of layers and transfers)."""
    rows = profile.layer_rows()
    total = sum(r.time for r in rows) + sum(io.cycles for io in profile.io)
    io = [
        LayerTimeRow(
            f"{io.kind} OpId_{io.op_id}",
            f"{io.kind} transfer",
            io.cycles,
            "cycles",
            io.cycles / total if total > 0 else math.nan,
        )
        for io in profile.io
    ]
    return LayerProfile(rows, run_ms=None, io=io)
