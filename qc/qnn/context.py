"""HTP context binaries: the graph prepared for one SoC, as ``qnn-context-binary-generator`` would write it.

The QNN EP writes them when a session is created with ``ep.context_enable=1``: an ONNX model made of ``EPContext``
nodes plus the binary they reference (``ep.context_embed_mode=0``). Context binaries are Qualcomm-generated
artifacts: write them to build outputs, never commit them.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qc.errors import ModelError
from qc.qnn.session import HtpOptions, create_htp_session


@dataclass(frozen=True)
class ContextBinary:
    """An exported context: the ``EPContext`` ONNX model and the binaries it references (beside it)."""

    model: Path
    binaries: tuple[Path, ...]
    sdk_version: str  # QNN SDK that prepared it, from the EPContext node (e.g. "v2.51.0.260929181845")


def _attr(node: Any, name: str) -> Any:
    import onnx

    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return None


def export_context_binary(
    model: Path, binary_out: Path, options: HtpOptions | None = None, *, entry: str = ""
) -> ContextBinary:
    """Prepare ``model`` for the HTP of ``options`` and write the context binary to ``binary_out``.

    The ``EPContext`` model that runs it is written beside it as ``binary_out`` with the suffix ``.onnx``. A graph
    split into several HTP partitions yields one binary each: ``<stem>.<k><suffix>`` after the first.
    """
    import onnx

    options = options or HtpOptions()
    where = f"{entry}: " if entry else ""
    binary_out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="qc-qnn-context-", dir=binary_out.parent) as tmp:
        ctx_path = Path(tmp) / "model_ctx.onnx"
        config = {
            "ep.context_enable": "1",
            "ep.context_embed_mode": "0",
            "ep.context_file_path": str(ctx_path),
        }
        session = create_htp_session(model, options, config=config, entry=entry)
        del session
        if not ctx_path.is_file():
            raise ModelError(f"{where}{model}: the QNN EP wrote no context model at {ctx_path}.")
        ctx = onnx.load(str(ctx_path))
        nodes = [n for n in ctx.graph.node if n.op_type == "EPContext"]
        if not nodes:
            raise ModelError(f"{where}{ctx_path}: expected EPContext nodes from the QNN EP, found none.")
        binaries: list[Path] = []
        versions = set()
        for k, node in enumerate(nodes):
            embed = _attr(node, "embed_mode")
            ref = _attr(node, "ep_cache_context")
            if embed != 0 or not isinstance(ref, bytes):
                raise ModelError(
                    f"{where}{ctx_path}: EPContext node {node.name!r}: expected embed_mode 0 with a file name, "
                    f"found embed_mode {embed}."
                )
            source = Path(tmp) / ref.decode("utf-8")
            if not source.is_file():
                raise ModelError(f"{where}{ctx_path}: EPContext node {node.name!r} references {source}, missing.")
            target = binary_out if k == 0 else binary_out.with_name(f"{binary_out.stem}.{k}{binary_out.suffix}")
            shutil.move(str(source), target)
            binaries.append(target)
            for a in node.attribute:
                if a.name == "ep_cache_context":
                    a.s = target.name.encode("utf-8")
            version = _attr(node, "ep_sdk_version")
            if isinstance(version, bytes):
                versions.add(version.decode("utf-8"))
        model_out = binary_out.with_suffix(".onnx")
        onnx.save(ctx, str(model_out))
    return ContextBinary(model_out, tuple(binaries), ", ".join(sorted(versions)))


def context_session(context: ContextBinary | Path, options: HtpOptions | None = None, *, entry: str = "") -> Any:
    """A session that runs an exported context (no graph preparation)."""
    path = context.model if isinstance(context, ContextBinary) else context
    return create_htp_session(path, options, entry=entry)
