"""``qc export MODEL --context-binary out.bin``: what a target kind deploys, written for the device.

A target kind that can export defines ``export_context_binary(out: Path) -> ContextBinary`` (``qnn-htp``: the
HTP context binary prepared for its SoC, and the ``EPContext`` ONNX model beside it that runs it; ``qnn`` without a
``target.context_binary``: the context it exports and runs on the device).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from qc.errors import ConfigError

if TYPE_CHECKING:
    from qc.qnn.context import ContextBinary


def export_context_binary(models: Path, model: str, out: Path, report_dir: Path) -> ContextBinary:
    """Export the context binary of the entry ``model`` of ``models`` to ``out``."""
    from qc.pipeline import open_stages

    (stages,) = open_stages(models, [model], report_dir, None)
    try:
        target = stages.target_impl()
        hook = getattr(target, "export_context_binary", None)
        if not callable(hook):
            raise ConfigError(
                f"{models}: {model}: target kind {target.kind!r} has no context binary to export (--context-binary "
                "needs a target prepared for the HTP: kind 'qnn-htp', or 'qnn' without a context_binary)."
            )
        result: ContextBinary = hook(out)
        return result
    finally:
        stages.close()


def _cmd_export(args: argparse.Namespace) -> int:
    out = Path(args.context_binary)
    result = export_context_binary(Path(args.models), args.model, out, Path(args.report_dir))
    for binary in result.binaries:
        print(f"context binary: {binary} ({binary.stat().st_size} bytes, QNN {result.sdk_version})")
    print(f"EPContext model that runs it (onnxruntime-qnn): {result.model}")
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("export", help="write what a model's target deploys (the HTP context binary for its SoC)")
    p.add_argument("model", help="the models.yaml entry")
    p.add_argument("--models", default="models.yaml")
    p.add_argument(
        "--context-binary",
        required=True,
        metavar="OUT.bin",
        help="the HTP context binary (never commit it: Qualcomm's licence forbids redistribution)",
    )
    p.add_argument("--report-dir", default="reports")
    p.set_defaults(func=_cmd_export)
