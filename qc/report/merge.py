"""``qc merge OUT_DIR SHARD_DIR...``: the report folders of one sharded run combined into one report folder.

Each shard's folder names its run in ``run.json`` (run id, run group, git commit). The merge:

- refuses folders that are not of one run: a folder without ``run.json``, a run that did not finish, different git
  commits, different run groups (``--qc-run-group``; a lone run's group is its own id), the same model or the same
  test in two shards, or OUT_DIR being one of the shards;
- takes OUT_DIR for itself like a run does (:class:`qc.report.folder.ReportFolder`: lock, previous results
  cleared, ``history.sqlite`` and ``durations.json`` kept);
- writes one ``summary.csv`` (the shards' rows), one ``junit.xml`` (every shard's test cases in one test suite,
  counts summed), ``models/<name>/`` copied from the shard that ran the model, ``patterns.csv`` when diagnosed;
- appends ONE run to ``OUT_DIR/history.sqlite``: its id is the run group, its metrics the shards' own runs'
  metrics. When OUT_DIR has no history yet, it starts from the shards' earlier runs (every run in a shard's
  history that no shard made: the history each shard was given), so the nights before are kept;
- records the merged ``durations.json`` (what each shard measured) for planning the next split, and rebuilds the
  dashboard over the merged folder.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qc.errors import DataError
from qc.report import paths
from qc.report.folder import FolderRun, ReportFolder, read_durations, write_durations


@dataclass(frozen=True)
class Shard:
    folder: Path
    run: FolderRun


@dataclass(frozen=True)
class MergeResult:
    out: Path
    run_id: str
    models: list[str]
    tests: int
    history_rows: int


def read_shards(folders: list[Path]) -> list[Shard]:
    """Each folder's run identity, checked to be parts of one finished run of one commit."""
    if not folders:
        raise DataError("qc merge: no shard report folder given.")
    shards = []
    for folder in folders:
        if not Path(folder).is_dir():
            raise DataError(f"{folder}: not a folder (expected a shard's report folder).")
        run = FolderRun.read(folder)
        if run.finished is None:
            raise DataError(f"{folder}: run {run.run_id} did not finish (run.json has no 'finished'); not merged.")
        shards.append(Shard(Path(folder), run))
    first = shards[0]
    for other in shards[1:]:
        if other.run.run_group != first.run.run_group:
            raise DataError(
                f"{other.folder}: run group {other.run.run_group!r} differs from {first.folder}'s "
                f"{first.run.run_group!r}: not shards of one run (give the shards one --qc-run-group)."
            )
        if other.run.git_commit != first.run.git_commit:
            raise DataError(
                f"{other.folder}: git commit {other.run.git_commit} differs from {first.folder}'s "
                f"{first.run.git_commit}: shards of different commits are not merged."
            )
    ids = [s.run.run_id for s in shards]
    if len(set(ids)) != len(ids):
        raise DataError(f"qc merge: the same run given twice ({', '.join(ids)}).")
    owner: dict[str, Path] = {}
    for shard in shards:
        for model in shard.run.models:
            if model in owner:
                raise DataError(f"model {model!r} is in two shards ({owner[model]} and {shard.folder}); not merged.")
            owner[model] = shard.folder
    return shards


def read_rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def merge_junit(files: list[Path], out: Path) -> int:
    """One ``<testsuites>`` with one ``<testsuite>`` holding every shard's test cases; returns the case count."""
    merged: ET.Element | None = None
    counts = {"tests": 0, "errors": 0, "failures": 0, "skipped": 0}
    elapsed = 0.0
    seen: dict[tuple[str, str], Path] = {}
    for file in files:
        try:
            root = ET.parse(file).getroot()
        except (OSError, ET.ParseError) as exc:
            raise DataError(f"{file}: unreadable JUnit XML: {exc}.") from None
        suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
        for suite in suites:
            if merged is None:
                merged = ET.Element("testsuite", {k: v for k, v in suite.attrib.items() if k not in counts})
                props = suite.find("properties")
                if props is not None:
                    merged.append(props)
            for key in counts:
                counts[key] += int(suite.get(key, "0") or 0)
            elapsed += float(suite.get("time", "0") or 0)
            for case in suite.findall("testcase"):
                case_id = (case.get("classname", ""), case.get("name", ""))
                if case_id in seen:
                    name = "::".join(case_id)
                    raise DataError(f"test {name} is in two shards ({seen[case_id]} and {file}); not merged.")
                seen[case_id] = file
                merged.append(case)
    if merged is None:
        merged = ET.Element("testsuite", {"name": "pytest"})
    for key, value in counts.items():
        merged.set(key, str(value))
    merged.set("time", f"{elapsed:.3f}")
    top = ET.Element("testsuites", {"name": "pytest tests"})
    top.append(merged)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    ET.ElementTree(top).write(tmp, encoding="utf-8", xml_declaration=True)
    tmp.replace(out)
    return counts["tests"]


def merge_history(shards: list[Shard], out: Path, run_id: str, started: str, commit: str | None) -> int:
    """Append the merged run (the shards' own metrics) to ``out/history.sqlite``; seed it when it is new."""
    from qc.report.history import History, MetricRow, RunInfo

    target = History(out / paths.HISTORY)
    own = {s.run.run_id for s in shards}
    if not target.path.is_file():
        earlier: dict[str, tuple[RunInfo, dict[tuple[str, str], MetricRow]]] = {}
        for shard in shards:
            for p in History(shard.folder / paths.HISTORY).points():
                if p.run_id not in own:
                    entry = earlier.setdefault(p.run_id, (RunInfo(p.run_id, p.time, p.git_commit), {}))
                    entry[1][(p.model, p.metric)] = MetricRow(p.model, p.target, p.metric, p.value)
        for info, rows in sorted(earlier.values(), key=lambda e: (e[0].time, e[0].run_id)):
            target.append(info, rows.values())
    metrics = [
        MetricRow(p.model, p.target, p.metric, p.value)
        for shard in shards
        for p in History(shard.folder / paths.HISTORY).points(models=shard.run.models)
        if p.run_id == shard.run.run_id
    ]
    return target.append(RunInfo(run_id, started, commit), metrics)


def copy_model_folders(shards: list[Shard], out: Path) -> None:
    """``models/<name>/`` from the shard that ran the model. A model no shard ran (its gates errored before any
    result) is copied from the shard that left files of it beyond the dashboard page, if exactly one did."""
    owners = {m: s for s in shards for m in s.run.models}
    leftovers: dict[str, list[Path]] = {}
    for shard in shards:
        for source in paths.model_dirs(shard.folder):
            owner = owners.get(source.name)
            if owner is shard:
                shutil.copytree(source, paths.model_dir(out, source.name))
            elif owner is None and any(f.name != paths.DASHBOARD for f in source.iterdir()):
                leftovers.setdefault(source.name, []).append(source)
    for name, sources in leftovers.items():
        if len(sources) > 1:
            raise DataError(f"model {name!r} left reports in several shards ({', '.join(map(str, sources))}).")
        shutil.copytree(sources[0], paths.model_dir(out, name))


def merge(out: Path, folders: list[Path], *, history: bool = True) -> MergeResult:
    """Merge the shard report folders ``folders`` into ``out`` (see the module docstring for the rules)."""
    from qc.diagnose.report import write_patterns_from_reports
    from qc.gates import GATE_NAMES
    from qc.report.dashboard import write_dashboard
    from qc.report.history import History
    from qc.report.tables import write_summary

    out = Path(out)
    shards = read_shards([Path(f) for f in folders])
    for shard in shards:
        if out.resolve() == shard.folder.resolve():
            raise DataError(f"{out}: the output folder is one of the shards; merge into a new folder.")
    first = shards[0].run
    started = min(s.run.started for s in shards)
    run = FolderRun(
        run_id=first.run_group,
        run_group=first.run_group,
        started=started,
        git_commit=first.git_commit,
        shard=None,
        models=[m for s in shards for m in s.run.models],
        settings={k: v for s in shards for k, v in s.run.settings.items()},
        tests={k: v for s in shards for k, v in s.run.tests.items()},
    )
    folder = ReportFolder(out, run).open()
    try:
        rows = [row for s in shards for row in read_rows(s.folder / paths.SUMMARY)]
        if rows:
            write_summary(rows, out / paths.SUMMARY, GATE_NAMES)
        junits = [s.folder / paths.JUNIT for s in shards if (s.folder / paths.JUNIT).is_file()]
        tests = merge_junit(junits, out / paths.JUNIT) if junits else 0
        copy_model_folders(shards, out)
        if any((out / paths.MODELS_DIR).glob("*/patterns.json")):
            write_patterns_from_reports(out)
        durations: dict[str, float] = read_durations(out)
        for shard in shards:
            durations.update(read_durations(shard.folder))
        for shard in shards:
            durations.update(shard.run.tests)
        write_durations(out, durations)
        added = merge_history(shards, out, run.run_id, started, run.git_commit) if history else 0
        points = History(out / paths.HISTORY).points() if (out / paths.HISTORY).is_file() else []
        write_dashboard(out, history=points, settings=run.settings, junit_name=paths.JUNIT)
        folder.finish()
    finally:
        folder.release()
    return MergeResult(out, run.run_id, run.models, tests, added)


def add_parser(sub: Any) -> None:
    about = "Combine the report folders of a sharded run into one (summary, JUnit, one history run, dashboard)."
    p: argparse.ArgumentParser = sub.add_parser(
        "merge",
        help=about,
        description=about + " Refuses folders of different commits or run groups (--qc-run-group).",
    )
    p.add_argument("out", help="The merged report folder (its history.sqlite, if any, gets the merged run).")
    p.add_argument("shards", nargs="+", help="The shards' report folders (one run group, one git commit).")
    p.add_argument("--no-history", action="store_true", help="Do not append the merged run to the history.")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    result = merge(Path(args.out), [Path(s) for s in args.shards], history=not args.no_history)
    print(
        f"merged {len(args.shards)} shard(s) of run {result.run_id}: {len(result.models)} models, "
        f"{result.tests} tests -> {result.out}"
        + (f"; history: run {result.run_id} ({result.history_rows} metrics) appended" if result.history_rows else "")
    )
    return 0
