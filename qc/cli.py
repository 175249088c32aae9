"""``qc``: the same functions as the pytest gates, for people who do not use pytest."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from qc import progress
from qc.cliutil import positive_int
from qc.diagnose.cli import add_parser as add_diagnose_parser
from qc.errors import QcError
from qc.pipeline import ModelStages
from qc.report.merge import add_parser as add_merge_parser
from qc.report.paths import model_dir
from qc.snpe.cli import add_parser as add_hostsim_parser
from qc.targets.export import add_parser as add_export_parser


def _cmd_assets(args: argparse.Namespace) -> int:
    from qc.assets import AssetBuilder

    builder = AssetBuilder(Path(args.dir) if args.dir else None, network=not args.offline)
    paths = builder.build()
    for action in builder.actions or ["all assets verified from the cache (sha256); nothing fetched"]:
        print(action)
    print(f"assets: {paths.root}")
    print(f"model: {paths.model}")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from qc.config import load_project

    specs = load_project(Path(args.models), check_models=True).models
    for spec in specs:
        print(f"{spec.name}: target {spec.target.kind}, reference {spec.reference}")
    return 0


def _cmd_gates(args: argparse.Namespace) -> int:
    from qc.gates import GATE_SPECS

    rows = [(g.name, f"{g.needs} ({g.task})" if g.task else g.needs, g.doc) for g in GATE_SPECS]
    name_w = max(len(name) for name, _, _ in rows)
    needs_w = max(len(needs) for _, needs, _ in rows)
    for name, needs, doc in rows:  # columns as wide as their longest entry: registry growth never misaligns them
        print(f"{name:{name_w}} needs {needs:{needs_w}} {doc}")
    return 0


def _stages(args: argparse.Namespace) -> ModelStages:
    from qc.pipeline import open_stages

    return open_stages(Path(args.models), [args.model], Path(args.report_dir), args.images)[0]


def _cmd_compare(args: argparse.Namespace) -> int:
    from qc import gates
    from qc.report.tables import fmt, write_comparison

    stages = _stages(args)
    spec, ctx = stages.spec, stages.ctx
    try:
        result = stages.comparison()
    finally:
        stages.close()
    files = write_comparison(result, model_dir(ctx.report_dir, spec.name), spec.thresholds)
    print(f"{'#':>3}  {'tensor':40} {'op_type':12} {'cosine':>8} {'sqnr_db':>8}")
    for layer in result.layers:
        m = layer.metrics
        cos, sqnr = fmt(m.cosine_mean), fmt(m.sqnr_db_mean)
        print(f"{layer.index:>3}  {layer.tensor[:40]:40} {layer.op_type[:12]:12} {cos:>8} {sqnr:>8}")
    print()
    for out in result.outputs:
        m = out.metrics
        print(f"output {out.output:36} cosine {fmt(m.cosine_mean):>8}  sqnr_db {fmt(m.sqnr_db_mean):>8}")
    failed = 0
    evidence = gates.Evidence(spec, comparison=result)
    for name in gates.gates_needing("comparison"):
        verdict = gates.check(name, evidence)
        failed += not verdict.passed
        print(f"{'PASS' if verdict.passed else 'FAIL'} {verdict.gate}: {verdict.message}")
    print("written: " + ", ".join(str(f) for f in files))
    return 1 if failed else 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from qc import gates

    stages = _stages(args)
    spec, ctx = stages.spec, stages.ctx
    task = stages.task()
    try:
        outcome = stages.accuracy()
    finally:
        stages.close()
    task.write_report(outcome, stages.eval_images(), model_dir(ctx.report_dir, spec.name))
    for line in task.describe(outcome):
        print(line)
    from qc.tasks.base import is_labelled

    labelled = is_labelled(task, stages.eval_images())
    failed = 0
    evidence = gates.Evidence(spec, accuracy=outcome)
    for name in task.gates:
        if gates.gate_info(name).labels and not labelled:
            continue  # the evaluation data has no labels: only the agreement-style gates can be decided
        verdict = gates.check(name, evidence)
        failed += not verdict.passed
        print(f"{'PASS' if verdict.passed else 'FAIL'} {verdict.gate}: {verdict.message}")
    return 1 if failed else 0


def _cmd_lint(args: argparse.Namespace) -> int:
    from qc.graph.lint import Severity, lint
    from qc.graph.view import view_from_onnx
    from qc.runners.ort import load_checked

    model = load_checked(Path(args.model), args.model)
    findings = lint(view_from_onnx(model), rules=args.rule or None)
    for f in findings:
        share = f" ({f.time_share:.1%} of the time)" if f.time_share is not None else ""
        print(f"[{f.severity}] {f.rule} at {f.node} ({f.op_type}){share}")
        print(f"  what: {f.what}\n  why:  {f.why}\n  fix:  {f.fix}")
    print(f"{len(findings)} finding(s) in {args.model} ({len(model.graph.node)} nodes)")
    limit = Severity(args.fail_on) if args.fail_on else None
    return 1 if limit is not None and any(Severity(f.severity) >= limit for f in findings) else 0


def _cmd_fix(args: argparse.Namespace) -> int:
    from qc.graph.rewrite import fix_model, save_fixed
    from qc.runners.ort import load_checked

    model = load_checked(Path(args.model), args.model)
    result = fix_model(model, args.rule or None, rtol=args.rtol, atol=args.atol, channel_swap=args.channel_swap)
    for applied in result.applied:
        note = f" NOTE: {applied.note}" if applied.note else ""
        print(f"applied {applied.rule} at {applied.node}: {applied.description}{note}")
    for rule, reason in result.unsafe:
        print(f"not applied {rule}: {reason}")
    for rule, diff in result.max_abs_diff.items():
        print(f"verified {rule}: max abs output difference {diff:.3g} (atol {args.atol}, rtol {args.rtol})")
    if not result.applied:
        print("nothing to rewrite; no file written")
        return 1 if result.unsafe else 0
    out = save_fixed(result, Path(args.output))
    print(f"written: {out}")
    return 0


def _cmd_history(args: argparse.Namespace) -> int:
    from qc.report.history import History, higher_is_better

    history = History(Path(args.report_dir) / "history.sqlite")
    runs = history.runs()[-args.last :]
    if not runs:
        print(f"no runs recorded in {history.path}")
        return 0
    keep = {r.run_id for r in runs}
    directions = higher_is_better()
    metrics = args.metric or list(directions)
    points = [p for p in history.points(metrics=metrics) if p.run_id in keep]
    models = sorted({p.model for p in points if not args.model or p.model in args.model})
    print(f"{len(runs)} run(s): {runs[0].run_id} ({runs[0].time}) .. {runs[-1].run_id} ({runs[-1].time})")
    for model in models:
        print(f"\n{model}")
        for metric in metrics:
            series = [(p.run_id, p.value) for p in points if p.model == model and p.metric == metric]
            if not series:
                continue
            values = [v for _, v in series]
            first, last = values[0], values[-1]
            better = (last > first) == directions.get(metric, True)
            trend = "=" if last == first else ("better" if better else "WORSE")
            shown = "  ".join(f"{v:.4g}" for v in values)
            print(f"  {metric:22} {shown}   ({trend} since the first shown run)")
    return 0


def _cmd_calibrate(args: argparse.Namespace) -> int:
    import shlex

    from qc.calibrate import main as calibrate

    command = "qc calibrate " + shlex.join(
        [args.models, *(f"--model={m}" for m in args.model or ()), f"--out={args.out}"]
    )
    command += "".join(f" --also={v:g}" for v in args.also or ())
    run = calibrate(
        Path(args.models),
        args.model or [],
        Path(args.out),
        images=args.images,
        also=args.also or (),
        step=args.step,
        command=command,
        progress=lambda line: print(line, file=sys.stderr, flush=True),
    )
    for main_fit in run.fits:
        for fit in (main_fit, main_fit.strict):
            if fit is None:
                continue
            field, over = fit.calibration.agreement.threshold, " or ".join(fit.gates)
            if fit.threshold is None:
                print(f"{fit.task} (over budget: {over} fails): no {field} fitted: {fit.reason}")
            for value, (false_pass, false_fail) in sorted(fit.counts.items()):
                mark = " (fitted)" if value == fit.threshold else ""
                print(
                    f"{fit.task} (over budget: {over} fails): {field} {value:g}{mark}: {false_pass} false pass(es), "
                    f"{false_fail} false fail(s)"
                )
    for reason in run.skipped:
        print(f"skipped: {reason}")
    print("written: " + ", ".join(str(p) for p in run.written))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qc", description="Quantization checker for edge NN accelerators.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no progress display (default: bars on a terminal, a plain line every few seconds otherwise, on stderr)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("assets", help="fetch (once), verify and build the demo model and images")
    p.add_argument("--dir", help="asset folder (default: $QC_ASSETS or ~/.cache/qc/assets)")
    p.add_argument("--offline", action="store_true", help="fail instead of downloading anything")
    p.set_defaults(func=_cmd_assets)
    p = sub.add_parser("validate", help="check a models.yaml and list its entries")
    p.add_argument("models", nargs="?", default="models.yaml")
    p.set_defaults(func=_cmd_validate)
    p = sub.add_parser("gates", help="the gate registry: every gate, what it needs, and what it checks")
    p.set_defaults(func=_cmd_gates)
    p = sub.add_parser("compare", help="per-layer and per-output comparison of one model, with its gates")
    p.add_argument("model")
    p.add_argument("--models", default="models.yaml")
    p.add_argument("--images", type=positive_int, default=None, help="use at most N evaluation images (N >= 1)")
    p.add_argument("--report-dir", default="reports")
    p.set_defaults(func=_cmd_compare)
    p = sub.add_parser(
        "eval",
        help="task accuracy of one model, both sides and the drop (detection: COCO AP, agreement AP; segmentation: "
        "mIoU, mask agreement; classification: top-1/top-5, top-1 agreement)",
    )
    p.add_argument("model")
    p.add_argument("--models", default="models.yaml")
    p.add_argument("--images", type=positive_int, default=None, help="use at most N evaluation images (N >= 1)")
    p.add_argument("--report-dir", default="reports")
    p.set_defaults(func=_cmd_eval)
    p = sub.add_parser("lint", help="slow-op findings for the DSP: what, where, why, how to fix")
    p.add_argument("model")
    p.add_argument("--rule", action="append", help="only this rule id (repeatable)")
    p.add_argument("--fail-on", choices=["info", "warning", "error"], help="exit 1 on findings of this severity")
    p.set_defaults(func=_cmd_lint)
    p = sub.add_parser("fix", help="rewrite the ONNX so lint findings disappear, outputs verified equal")
    p.add_argument("model")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--rule", action="append", help="only this rule id (repeatable)")
    p.add_argument("--rtol", type=float, default=1e-4)
    p.add_argument("--atol", type=float, default=1e-4)
    p.add_argument("--channel-swap", choices=["weights", "input"], default="weights")
    p.set_defaults(func=_cmd_fix)
    p = sub.add_parser("history", help="headline metrics over the recorded runs (reports/history.sqlite)")
    p.add_argument("--report-dir", default="reports")
    p.add_argument("--model", action="append", help="only this model (repeatable)")
    p.add_argument("--metric", action="append", help="only this metric (repeatable; default: headline metrics)")
    from qc.report.history import run_count

    p.add_argument("--last", type=run_count, default=10, help="the last N runs, N >= 1 (default 10)")
    p.set_defaults(func=_cmd_history)
    p = sub.add_parser(
        "calibrate", help="fit the label-free agreement thresholds to the labelled budgets (a quantization sweep)"
    )
    p.add_argument("models", nargs="?", default="models.yaml")
    p.add_argument("--model", action="append", help="only this entry (repeatable; default: every labelled entry)")
    p.add_argument("--out", default="docs", help="folder for calibration.md/.csv/.svg (default: docs)")
    p.add_argument("--images", type=positive_int, default=None, help="use at most N evaluation images (N >= 1)")
    p.add_argument("--also", type=float, action="append", help="also count false passes/fails at this threshold")
    p.add_argument("--step", type=float, default=0.01, help="grid of the fitted threshold (default 0.01)")
    p.set_defaults(func=_cmd_calibrate)
    add_diagnose_parser(sub)
    add_hostsim_parser(sub)
    add_merge_parser(sub)
    add_export_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        with progress.terminal(sys.stderr, quiet=args.quiet):
            return int(args.func(args))
    except QcError as exc:
        print(f"qc: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (qc history | head): stop quietly, as POSIX tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's exit flush must not fail again
        return 141


if __name__ == "__main__":
    sys.exit(main())
