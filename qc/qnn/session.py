"""onnxruntime sessions on Qualcomm's HTP backend (QNN execution provider from ``onnxruntime-qnn``).

The provider library is registered once per process through onnxruntime's plugin EP API; every session disables
the CPU fallback (``session.disable_cpu_ep_fallback=1``), so a node HTP cannot run is an error here, as it is on the
device, never a silent CPU island. onnxruntime reports the refused nodes only in its log (stderr, from C++): session
creation redirects file descriptor 2 into a temporary file and reads them back from it.
"""

from __future__ import annotations

import importlib
import logging
import os
import platform
import re
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qc.errors import DeviceError, ModelError
from qc.graph.lint import Finding, Severity
from qc.qnn.settings import HTP_ARCHS, RVC4_HTP_ARCH, RVC4_SOC_MODEL, ProfilingLevel, QnnHtpTarget

log = logging.getLogger(__name__)

PACKAGE = "onnxruntime-qnn"
PACKAGE_PIN = "onnxruntime-qnn==2.7.0"
RULE = "htp-unsupported"

_REGISTER_LOCK = threading.Lock()
_STDERR_LOCK = threading.Lock()
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_UNSUPPORTED_LINE = "Unsupported nodes in QNN EP:"
_UNSUPPORTED_NODE = re.compile(r"\{ name: (.*?), type: ([^ }]*) \}")
_FAILED_UNIT = re.compile(r"Validation FAILED for \d+ nodes in \w+ \(([^)]*)\) :\n((?:\t[^\n]*\n)+)")
_UNIT_NODE = re.compile(r"\tOperator type: (\S+) Node name: (.*?) Node index: \d+")
_UNIT_REASON = re.compile(r"\tREASON : (.*)")


class HtpUnavailableError(DeviceError):
    """The HTP backend cannot be loaded here (package missing, unsupported platform, broken install)."""


class HtpUnsupportedError(ModelError):
    """HTP refuses nodes of the model; ``findings`` lists them as ``htp-unsupported`` lint findings."""

    def __init__(self, message: str, findings: list[Finding]) -> None:
        super().__init__(message)
        self.findings = findings


@dataclass(frozen=True)
class HtpOptions:
    """What the graph is prepared for and how it runs. Defaults: the RVC4 (QCS8550, Hexagon v73).

    ``fp16``: QNN's ``enable_htp_fp16_precision`` for float operators (a float reference, float islands of a QDQ
    model), on by default as in onnxruntime. Measured with v73: turning it off does not give fp32 arithmetic (the
    outputs are bit-identical), the HTP computes float operators in fp16 either way, as on the device.
    """

    htp_arch: int = RVC4_HTP_ARCH
    soc_model: int = RVC4_SOC_MODEL
    fp16: bool = True
    profiling: ProfilingLevel = "off"
    profile_path: Path | None = None
    extra: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.htp_arch not in HTP_ARCHS:
            raise ModelError(f"HTP options: htp_arch must be one of {list(HTP_ARCHS)}, found {self.htp_arch}.")
        if self.soc_model < 1:
            raise ModelError(f"HTP options: soc_model must be a QNN SoC number (>= 1), found {self.soc_model}.")
        if self.profiling != "off" and self.profile_path is None:
            raise ModelError(f"HTP options: profiling {self.profiling!r} needs a profile_path for the CSV.")

    @classmethod
    def for_target(cls, target: QnnHtpTarget, profile_path: Path | None = None) -> HtpOptions:
        """The options of a ``qnn-htp`` target; its profiling level applies when a ``profile_path`` is given."""
        profiling = target.profiling if profile_path is not None else "off"
        return cls(htp_arch=target.htp_arch, soc_model=target.soc_model, profiling=profiling, profile_path=profile_path)

    def provider_options(self) -> dict[str, str]:
        """The QNN EP provider options (strings, as onnxruntime wants them)."""
        options = {
            "backend_type": "htp",
            "htp_arch": str(self.htp_arch),
            "soc_model": str(self.soc_model),
            "enable_htp_fp16_precision": "1" if self.fp16 else "0",
        }
        if self.profiling != "off" and self.profile_path is not None:
            options["profiling_level"] = self.profiling
            options["profiling_file_path"] = str(self.profile_path)
        options.update(self.extra)
        return options


def htp_missing() -> str | None:
    """Why the HTP backend cannot be used on this machine, or None when it can."""
    if not (sys.platform == "linux" and platform.machine() == "x86_64"):
        return (
            f"the QNN HTP backend on the host needs x86_64 Linux ({PACKAGE} ships the HTP simulator only for it); "
            f"this machine is {sys.platform} {platform.machine()}"
        )
    try:
        module = importlib.import_module("onnxruntime_qnn")
    except ImportError as exc:
        return f"the package {PACKAGE} is not installed ({exc}); install it with `pip install {PACKAGE_PIN}`"
    library = Path(module.get_library_path())
    if not library.is_file():
        return f"{PACKAGE} is installed but its provider library {library} is missing; reinstall {PACKAGE_PIN}"
    return None


def _qnn_module() -> Any:
    missing = htp_missing()
    if missing is not None:
        raise HtpUnavailableError(f"qnn-htp: {missing}.")
    return importlib.import_module("onnxruntime_qnn")


def qnn_ep_devices() -> list[Any]:
    """The QNN EP's devices, registering its library with onnxruntime once per process."""
    import onnxruntime as ort

    qnn = _qnn_module()
    name = qnn.get_ep_name()
    with _REGISTER_LOCK:
        devices = [d for d in ort.get_ep_devices() if d.ep_name == name]
        if not devices:
            try:
                ort.register_execution_provider_library(name, qnn.get_library_path())
            except Exception as exc:
                raise HtpUnavailableError(
                    f"qnn-htp: onnxruntime {ort.__version__} could not register {qnn.get_library_path()}: {exc}"
                ) from None
            devices = [d for d in ort.get_ep_devices() if d.ep_name == name]
    if not devices:
        raise HtpUnavailableError(f"qnn-htp: onnxruntime lists no device for the execution provider {name}.")
    return devices


@contextmanager
def _stderr_to_file() -> Iterator[Callable[[], str]]:
    """Redirect file descriptor 2 (where onnxruntime's C++ logger writes) into a temporary file.

    Yields a function returning what was written so far. One redirection at a time per process.
    """
    with _STDERR_LOCK, tempfile.TemporaryFile() as tmp:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(tmp.fileno(), 2)

        def text() -> str:
            tmp.flush()
            tmp.seek(0)
            return _ANSI.sub("", tmp.read().decode("utf-8", errors="replace"))

        try:
            yield text
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def parse_unsupported(log_text: str) -> list[tuple[str, str]]:
    """(node, op type) of every node named in onnxruntime's "Unsupported nodes in QNN EP" lines, in order."""
    seen: dict[tuple[str, str], None] = {}
    for line in log_text.splitlines():
        if _UNSUPPORTED_LINE in line:
            for name, op_type in _UNSUPPORTED_NODE.findall(line.split(_UNSUPPORTED_LINE, 1)[1]):
                seen[(name, op_type)] = None
    return list(seen)


def parse_reasons(log_text: str) -> dict[str, str]:
    """Node name -> the QNN EP's reason, from its verbose "Validation FAILED" blocks."""
    reasons: dict[str, str] = {}
    for match in _FAILED_UNIT.finditer(log_text.replace("\r\n", "\n")):
        body = match.group(2)
        reason = _UNIT_REASON.search(body)
        for _op, node in _UNIT_NODE.findall(body):
            if reason is not None:
                reasons.setdefault(node, reason.group(1).strip())
    return reasons


def unsupported_findings(log_text: str, entry: str = "") -> list[Finding]:
    """``htp-unsupported`` lint findings (severity error) from a session-creation log."""
    reasons = parse_reasons(log_text)
    where = f"{entry}: " if entry else ""
    findings = []
    for node, op_type in parse_unsupported(log_text):
        why = reasons.get(node, f"the QNN HTP backend has no implementation of {op_type} for this node's types")
        findings.append(
            Finding(
                rule=RULE,
                severity=Severity.ERROR,
                node=node,
                op_type=op_type,
                what=f"{where}{op_type} node {node!r} cannot run on the HTP"
                if node
                else f"{where}an unnamed {op_type} node cannot run on the HTP",
                why=why,
                fix=(
                    f"replace {op_type} with operators HTP supports, move it out of the model (pre- or "
                    "post-processing), or for a float node quantize it (drop it from float_nodes/float_op_types); "
                    "the device runs the whole graph on the HTP and qc keeps the CPU fallback disabled"
                ),
                nodes=(node,),
            )
        )
    return findings


def _session_options(options: HtpOptions, config: Mapping[str, str], severity: int) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    for key, value in config.items():
        so.add_session_config_entry(key, value)
    so.log_severity_level = severity
    so.logid = "qc-htp"
    so.add_provider_for_devices(qnn_ep_devices(), options.provider_options())
    return so


def _describe(options: HtpOptions) -> str:
    return f"HTP v{options.htp_arch}, soc_model {options.soc_model}"


def _errors(log_text: str) -> str:
    lines = [ln.strip() for ln in log_text.splitlines() if "[E:onnxruntime" in ln]
    return "\n  ".join(lines[-8:]) if lines else "(no error lines in onnxruntime's log)"


def _create(model: Path, options: HtpOptions, config: Mapping[str, str], severity: int) -> tuple[Any, str, str]:
    """(session or None, error message or "", captured log)."""
    import onnxruntime as ort

    so = _session_options(options, config, severity)
    with _stderr_to_file() as captured:
        try:
            session = ort.InferenceSession(str(model), sess_options=so)
        except Exception as exc:
            return None, str(exc), captured()
        return session, "", captured()


def create_htp_session(
    model: Path, options: HtpOptions | None = None, *, config: Mapping[str, str] | None = None, entry: str = ""
) -> Any:
    """An ``onnxruntime.InferenceSession`` running all of ``model`` on the HTP (CPU fallback disabled).

    ``config`` adds session config entries (for example the ``ep.context_*`` ones). A profile file at
    ``options.profile_path`` is replaced (the QNN EP would append to it); the EP writes the finalize events at
    creation and each run's events after the run. Raises
    :class:`HtpUnavailableError` when the backend cannot be loaded here, :class:`HtpUnsupportedError` (with the
    findings) when HTP refuses nodes, :class:`ModelError` for any other refusal (graph finalization, bad file).
    """
    _qnn_module()
    options = options or HtpOptions()
    config = dict(config or {})
    where = f"{entry}: " if entry else ""
    if not model.is_file():
        raise ModelError(f"{where}the model {model} does not exist.")
    if options.profile_path is not None and options.profiling != "off":
        # the QNN EP appends to an existing profile: one session's events per file
        options.profile_path.parent.mkdir(parents=True, exist_ok=True)
        options.profile_path.unlink(missing_ok=True)
    session, error, text = _create(model, options, config, severity=2)
    if session is not None:
        for line in text.splitlines():
            if "[W:onnxruntime" in line or "[E:onnxruntime" in line:
                log.debug("%s%s: %s", where, model.name, line.strip())
        return session
    if _UNSUPPORTED_LINE in text:
        findings = htp_support_findings(model, options, config=config, entry=entry)
        if not findings:  # the verbose pass found nothing: report the first pass's nodes without reasons
            findings = unsupported_findings(text, entry)
        listing = "\n".join(f"  - {f.node or '(unnamed node)'} ({f.op_type}): {f.why}" for f in findings)
        raise HtpUnsupportedError(
            f"{where}{model}: the QNN HTP backend ({_describe(options)}) cannot run {len(findings)} node(s), and qc "
            f"never falls back to the CPU:\n{listing}",
            findings,
        )
    raise ModelError(
        f"{where}{model}: the QNN HTP backend ({_describe(options)}) refused the model: {error}\n"
        f"  onnxruntime log:\n  {_errors(text)}"
    )


def htp_support_findings(
    model: Path, options: HtpOptions | None = None, *, config: Mapping[str, str] | None = None, entry: str = ""
) -> list[Finding]:
    """The ``htp-unsupported`` findings of ``model`` (empty when HTP takes every node).

    It creates a session with onnxruntime's verbose log to read the QNN EP's reason for each refused node (session
    creation includes graph finalization: seconds on a detector). A refusal that is not about nodes (for example a
    finalization failure) raises :class:`ModelError`.
    """
    options = options or HtpOptions()
    session, error, text = _create(model, options, dict(config or {}), severity=0)
    if session is not None:
        return []
    findings = unsupported_findings(text, entry)
    if findings:
        return findings
    where = f"{entry}: " if entry else ""
    raise ModelError(
        f"{where}{model}: the QNN HTP backend ({_describe(options)}) refused the model: {error}\n"
        f"  onnxruntime log:\n  {_errors(text)}"
    )


def run_session(session: Any, feeds: Mapping[str, np.ndarray], outputs: list[str] | None = None) -> dict[str, Any]:
    """Run once; returns {output name: array} for ``outputs`` (all graph outputs when None)."""
    names = outputs if outputs is not None else [o.name for o in session.get_outputs()]
    try:
        values = session.run(names, dict(feeds))
    except Exception as exc:
        raise ModelError(f"the HTP session failed to run: {exc}") from None
    return dict(zip(names, values, strict=True))
