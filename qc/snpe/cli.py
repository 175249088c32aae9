"""``qc hostsim MODEL [MODEL ...]``: host simulation of an ``snpe`` entry's DLC and the split of the device's error
into quantization error (host simulation vs FP32) and runtime error (device vs host simulation)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from qc.cliutil import positive_int


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``hostsim`` sub-command on ``qc``'s sub-parsers (``build_parser``'s ``sub``)."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "hostsim",
        help="quantize the reference with the DLC's own encodings and split the device's error into "
        "quantization and runtime error",
    )
    p.add_argument("model", nargs="+", help="models.yaml entry name(s) of kind 'snpe'")
    p.add_argument("--models", default="models.yaml")
    p.add_argument("--images", type=positive_int, default=None, help="use at most N evaluation images (N >= 1)")
    p.add_argument("--report-dir", default="reports")
    p.add_argument(
        "--float-weights",
        action="store_true",
        help="keep weights in float (simulate activation quantization only)",
    )
    p.add_argument(
        "--margin-db",
        type=float,
        default=6.0,
        help="flag tensors whose runtime SQNR is this far below their quantization SQNR (default 6)",
    )
    p.set_defaults(func=run)
    return p


def _db(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.1f}"


def run(args: argparse.Namespace) -> int:
    from qc.pipeline import open_stages
    from qc.snpe.hostsim import host_simulation_stage

    flagged = 0
    for stages in open_stages(Path(args.models), list(args.model), Path(args.report_dir), args.images):
        try:
            done = host_simulation_stage(stages, quantize_weights=not args.float_weights, margin_db=args.margin_db)
        finally:
            stages.close()
        sim, split = done.hostsim, done.split
        print(f"== {stages.spec.name}: {split.images} images, {len(split.rows)} tensors compared")
        for note in sim.notes:
            print(f"host simulation: {note} ({sim.verified} encodings read back and equal)")
        dominated = split.runtime_dominated()
        if not dominated:
            print(f"runtime error: no tensor's runtime error exceeds its quantization error by {split.margin_db} dB")
        for r in dominated[:10]:
            print(
                f"runtime error dominates #{r.index} {r.tensor} ({r.op_type}): runtime SQNR "
                f"{_db(r.runtime.sqnr_db_mean)} dB vs quantization SQNR {_db(r.quant.sqnr_db_mean)} dB"
                + (f" [{r.runtime.undefined}]" if r.runtime.undefined else "")
            )
        flagged += bool(dominated)
        print("written: " + ", ".join(str(f) for f in done.files))
    return 1 if flagged else 0
