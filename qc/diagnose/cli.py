"""``qc diagnose MODEL [MODEL ...] [--models] [--images] [--report-dir]``: origins, sensitivity, verified advice."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from qc.cliutil import positive_int
from qc.report.paths import model_dir


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``diagnose`` sub-command on ``qc``'s sub-parsers (``build_parser``'s ``sub``)."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "diagnose", help="which layers cause the quantization loss, why, and what to keep in higher precision"
    )
    p.add_argument("model", nargs="+", help="models.yaml entry name(s); several also write patterns.csv")
    p.add_argument("--models", default="models.yaml")
    p.add_argument("--images", type=positive_int, default=None, help="use at most N evaluation images (N >= 1)")
    p.add_argument("--report-dir", default="reports")
    p.set_defaults(func=run)
    return p


def _fmt(value: float | None, spec: str = ".4f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, spec)


def run(args: argparse.Namespace) -> int:
    from qc.diagnose.report import write_diagnosis, write_pattern_items, write_patterns_from_reports
    from qc.diagnose.stage import Diagnosis, diagnose
    from qc.pipeline import open_stages

    all_stages = open_stages(Path(args.models), list(args.model), Path(args.report_dir), args.images)
    ctx = all_stages[0].ctx
    failed = 0
    done: list[Diagnosis] = []
    for stages in all_stages:
        name = stages.spec.name
        d = diagnose(stages)
        done.append(d)
        folder = model_dir(ctx.report_dir, name)
        files = write_diagnosis(d, folder)
        files.append(write_pattern_items(d, folder))
        print(f"== {name}: {d.images} images; failing gates: {', '.join(d.failing_gates) or 'none'}")
        if not d.origins:
            print("origins: none (no layer is bad on its own)")
        for o in d.origins:
            print(
                f"origin #{o.index} {o.tensor} ({o.op_type}, node {o.node}) [{o.severity}]"
                f"{' ' + o.pattern if o.pattern else ''}: local cosine {_fmt(o.cosine_local)}, worst local SQNR "
                f"{_fmt(o.worst_sqnr_db_local, '.1f')} dB; accumulated cosine {_fmt(o.cosine)}"
                + (f"; followers {', '.join(o.followers)}" if o.followers else "")
            )
            for reason in o.reasons:
                print(f"    {reason}")
        if d.sensitivity is not None:
            s = d.sensitivity
            print(f"sensitivity ({s.metric}; {s.seconds:.1f} s, {s.variants_quantized} variants quantized):")
            for r in s.rows[:5]:
                task = (
                    f", {s.metric} float {_fmt(r.task_float)} / alone {_fmt(r.task_only)}"
                    if r.task_float is not None
                    else ""
                )
                print(
                    f"  {r.rank}. {r.node}: output SQNR kept float {_fmt(r.quick_float, '.1f')} dB / quantized alone "
                    f"{_fmt(r.quick_only, '.1f')} dB{task}"
                )
        advice = d.advice
        if advice is not None:
            print(f"advice: {advice.message}")
            if advice.needed and not advice.passed:
                failed += 1
        for note in d.notes:
            print(f"note: {note}")
        print("written: " + ", ".join(str(f) for f in files))
    if len(done) > 1 or (ctx.report_dir / "patterns.csv").exists():
        print(f"written: {write_patterns_from_reports(ctx.report_dir)}")
    return 1 if failed else 0
