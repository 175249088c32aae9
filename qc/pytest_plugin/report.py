"""The plugin's reporting side: gate outcomes gathered on the controller, summary.csv, history, dashboard."""

from __future__ import annotations

import base64
import datetime
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from qc.errors import QcError
from qc.gates import GATE_NAMES
from qc.pytest_plugin.run import run_state
from qc.report.folder import FolderError, FolderRun, ReportFolder
from qc.report.paths import SUMMARY, model_page


@dataclass
class Summary:
    """Gate outcomes and headline metrics per model, gathered on the controller from test reports."""

    rows: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, report: pytest.TestReport) -> None:
        props = dict(report.user_properties)
        model, gate = props.get("qc_model"), props.get("qc_gate")
        if not model or not gate:
            return
        if report.when == "call" or report.outcome != "passed":
            row = self.rows.setdefault(str(model), {"model": model})
            row[str(gate)] = outcome(report)
            for key, value in props.items():
                if key == "qc_target":
                    row["target"] = value
                elif key in GATE_NAMES:  # a metric named like a gate must not overwrite that gate's outcome
                    row[f"{key}.value"] = value
                elif key not in ("qc_model", "qc_gate"):
                    row[key] = value


NOT_APPLICABLE = "not applicable: "
"""A skip reason with this prefix means the test had nothing to check for that model; listed apart."""


def skip_reason(report: pytest.TestReport) -> str | None:
    """The reason of a skipped (not xfailed) test report, else None."""
    if not report.skipped or hasattr(report, "wasxfail"):
        return None
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return None


def outcome(report: pytest.TestReport) -> str:
    if hasattr(report, "wasxfail"):
        return "xfailed" if report.outcome == "skipped" else "xpassed(strict)"
    if report.when != "call" and report.outcome == "failed":
        return "error"
    return str(report.outcome)


class Reporter:
    """Registered per session: collects gate outcomes (on the xdist controller too), writes summary.csv."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.summary = Summary()
        self.history_rows = 0
        self.dashboard: Path | None = None
        self.folder: ReportFolder | None = None
        self.durations: dict[str, float] = {}
        self.not_applicable: list[tuple[str, str]] = []
        """(test id, reason) of tests skipped as ``not applicable: ...`` (nothing to check for that model)."""

    def take_folder(self) -> None:
        """Take the report folder for this run: writable, locked, previous results cleared (once, on the
        controller, when gates are collected and before any runs; a session without gates leaves it alone)."""
        if self.folder is None and not hasattr(self.config, "workerinput") and not self.config.option.collectonly:
            self.folder = open_report_folder(self.config)

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        """Without xdist (with it, the controller collects nothing: see :class:`XdistReporter`)."""
        from qc.pytest_plugin.shard import item_model

        if any(item_model(item) is not None for item in session.items):
            self.take_folder()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.summary.add(report)
        self.durations[report.nodeid] = self.durations.get(report.nodeid, 0.0) + max(report.duration, 0.0)
        reason = skip_reason(report)
        if reason is not None and reason.startswith(NOT_APPLICABLE):
            self.not_applicable.append((report.nodeid, reason.removeprefix(NOT_APPLICABLE)))

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if hasattr(self.config, "workerinput") or self.folder is None:
            return
        from qc.report.folder import read_durations, write_durations

        report_dir = self.folder.root
        write_durations(report_dir, {**read_durations(report_dir), **self.durations})
        run = self.folder.run
        run.models, run.tests = list(self.summary.rows), dict(self.durations)
        if self.summary.rows:
            from qc.report.tables import write_summary

            run.settings = {k: v for k, v in model_settings(self.config, report_dir).items() if k in self.summary.rows}
            write_summary(list(self.summary.rows.values()), report_dir / SUMMARY, GATE_NAMES)
            if not self.config.getoption("--qc-no-history"):
                self.history_rows = append_history(self.config, report_dir, self.summary.rows)
            self.dashboard = write_report_pages(self.config, report_dir)
        self.folder.finish()

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self.folder is not None:
            self.folder.release()

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
        """With pytest-html: each gate row links to its model page and carries a small static PNG."""
        outcome = yield
        report = outcome.get_result()
        html = self.config.pluginmanager.getplugin("html")
        model = dict(report.user_properties).get("qc_model")
        if html is None or report.when != "call" or not model:
            return
        from qc.report.dashboard import dashboard_png

        report_dir = Path(self.config.getoption("--qc-report-dir"))
        extras = list(getattr(report, "extras", []))
        extras.append(html.extras.url(str((report_dir / model_page(str(model))).resolve()), name="model page"))
        try:
            png = dashboard_png(report_dir, str(model))
            extras.append(html.extras.png(base64.b64encode(png.read_bytes()).decode(), name="per-layer cosine"))
        except QcError:
            pass  # no layers.csv for this model (yet): the link is enough
        report.extras = extras

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.not_applicable:
            terminalreporter.section("qc: not applicable (nothing to check, not passed)")
            for nodeid, reason in self.not_applicable:
                terminalreporter.write_line(f"{nodeid}: {reason}")
        rows = self.summary.rows
        if not rows:
            return
        gates = [g for g in GATE_NAMES if any(g in r for r in rows.values())]
        tr = terminalreporter
        tr.section("qc gates")
        width = max(len(m) for m in rows) + 2
        tr.write_line("model".ljust(width) + "".join(g.ljust(16) for g in gates) + "worst layer (cosine)")
        for model, row in rows.items():
            worst = row.get("worst_layer")
            worst_text = f"{worst} ({float(row['worst_layer_cosine']):.4f})" if worst else "-"
            tr.write_line(model.ljust(width) + "".join(str(row.get(g, "-")).ljust(16) for g in gates) + worst_text)
        tr.write_line(f"reports: {Path(self.config.getoption('--qc-report-dir')).resolve()}")
        if self.history_rows:
            tr.write_line(f"history: run {run_state(self.config).run_id} ({self.history_rows} metrics) appended")
        if self.dashboard is not None:
            tr.write_line(f"dashboard: {self.dashboard.resolve()}")


class XdistReporter:
    """Registered only with pytest-xdist: the controller takes the report folder when the first worker has collected
    gates, before xdist schedules any test."""

    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter

    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        from qc.pytest_plugin import load_specs

        names = {spec.name for spec in load_specs(self.reporter.config)}
        if any(nodeid.endswith("]") and nodeid.rsplit("[", 1)[-1][:-1] in names for nodeid in ids):
            self.reporter.take_folder()


def open_report_folder(config: pytest.Config) -> ReportFolder:
    """The run's report folder, taken for this run; a UsageError naming the folder when it cannot be."""
    from qc.pytest_plugin.shard import splits_of
    from qc.report.history import git_commit

    state = run_state(config)
    shard = splits_of(config)
    run = FolderRun(
        run_id=state.run_id,
        run_group=config.getoption("--qc-run-group") or state.run_id,
        started=datetime.datetime.fromtimestamp(state.started, datetime.UTC).isoformat(timespec="seconds"),
        git_commit=git_commit(),
        shard=f"{shard[0]}/{shard[1]}" if shard else None,
    )
    try:
        return ReportFolder(Path(config.getoption("--qc-report-dir")), run).open()
    except FolderError as exc:
        raise pytest.UsageError(f"qc: {exc}") from None


def append_history(config: pytest.Config, report_dir: Path, rows: dict[str, dict[str, Any]]) -> int:
    """Append this run's numeric metrics per model to ``history.sqlite`` (one transaction)."""
    from qc.report.history import History, MetricRow, RunInfo, git_commit

    metrics = []
    for model, row in rows.items():
        target = str(row.get("target", ""))
        for key, value in row.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                metrics.append(MetricRow(model, target, key, float(value)))
    state = run_state(config)
    run = RunInfo(
        state.run_id,
        datetime.datetime.fromtimestamp(state.started, datetime.UTC).isoformat(timespec="seconds"),
        git_commit(),
    )
    return History(report_dir / "history.sqlite").append(run, metrics)


def model_settings(config: pytest.Config, report_dir: Path | None = None) -> dict[str, dict[str, Any]]:
    """Per model, the run's settings shown on its dashboard page (target, quantization, data, versions); with
    ``report_dir``, also what the target ran when models.yaml does not say it all (``target_run.json``)."""
    import onnxruntime

    from qc import __version__
    from qc.pytest_plugin import load_specs

    try:
        specs = load_specs(config)
    except Exception:  # the dashboard must not fail the run; pages then show no settings
        return {}
    out: dict[str, dict[str, Any]] = {}
    for spec in specs:
        row: dict[str, Any] = {
            "target": spec.target.kind,
            "task": spec.task.kind if spec.task is not None else None,
            "reference": str(spec.reference),
            "target settings": spec.target.model_dump(mode="json", exclude={"kind"}),
            "preprocess": spec.preprocess.model_dump(mode="json"),
            "evaluation data": spec.eval_data.model_dump(mode="json", exclude_none=True),
            "calibration": spec.calibration.model_dump(mode="json", exclude_none=True) if spec.calibration else None,
            "thresholds": spec.thresholds.model_dump(mode="json", exclude={"overrides"}),
            "versions": {"qc": __version__, "onnxruntime": onnxruntime.__version__},
        }
        ran = target_run(report_dir, spec.name) if report_dir is not None else None
        if ran is not None:
            row["target as run"] = ran
        out[spec.name] = row
    return out


def target_run(report_dir: Path, model: str) -> dict[str, Any] | None:
    """The model's ``target_run.json`` (:data:`qc.targets.base.TARGET_RUN_JSON`), or None when absent or unreadable."""
    from qc.report.paths import model_dir
    from qc.targets.base import TARGET_RUN_JSON

    try:
        data = json.loads((model_dir(report_dir, model) / TARGET_RUN_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_report_pages(config: pytest.Config, report_dir: Path) -> Path | None:
    """The offline dashboard over everything in the report folder, with the run history's trends."""
    from qc.report.dashboard import write_dashboard
    from qc.report.history import History

    xml = getattr(config.option, "xmlpath", None)
    junit = Path(xml).name if xml and Path(xml).resolve().parent == report_dir.resolve() else "junit.xml"
    points = History(report_dir / "history.sqlite").points()
    write_dashboard(report_dir, history=points, settings=model_settings(config, report_dir), junit_name=junit)
    return report_dir / "index.html"
