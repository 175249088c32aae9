"""The pytest glue (registered under ``pytest11``): options, parametrization from models.yaml, summary, reports.

Everything else lives in plain modules of :mod:`qc`; fixtures are in the repository's ``fixtures/`` package.
Model names are the test ids, so ``pytest benchmarks -k yolov3`` selects by model.
"""

from __future__ import annotations

import base64
import datetime
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from qc.config import GATES, DeviceSpec, ModelSpec, load_project
from qc.errors import ConfigError, QcError

SPECS_KEY = pytest.StashKey[list[ModelSpec]]()
DEVICES_KEY = pytest.StashKey[tuple[DeviceSpec, ...]]()
ERROR_KEY = pytest.StashKey[str]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("qc", "qc quantization checker")
    group.addoption("--qc-models", default="models.yaml", help="models.yaml to parametrize the gates with.")
    group.addoption("--qc-report-dir", default="reports", help="Folder for CSV, JSON and HTML reports.")
    group.addoption("--qc-images", type=int, default=None, help="Use at most N evaluation images per model.")
    group.addoption("--qc-refresh", action="store_true", help="Ignore cached stage results and rebuild them.")
    group.addoption("--qc-cache-dir", default=None, help="Stage cache folder (default: $QC_CACHE_DIR or ~/.cache/qc).")
    group.addoption(
        "--qc-baseline",
        default=None,
        help="'last' or a run id from reports/history.sqlite: fail models whose metrics regressed against it.",
    )
    group.addoption("--qc-no-history", action="store_true", help="Do not append this run to the history database.")
    group.addoption(
        "--qc-diagnose", action="store_true", help="Also run the costly diagnosis tests (marker 'diagnose')."
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "qc_gate(name): the models.yaml gate a benchmark test checks.")
    config.addinivalue_line("markers", "diagnose: costly diagnosis runs; opt in with --qc-diagnose or -m diagnose.")
    config.pluginmanager.register(Reporter(config), "qc-reporter")
    if not hasattr(config, "workerinput"):  # the controller; xdist workers inherit the environment
        if config.getoption("--qc-refresh"):
            os.environ["QC_REFRESH_SINCE"] = str(time.time())
        os.environ["QC_RUN_ID"] = new_run_id()
        os.environ["QC_RUN_STARTED"] = str(time.time())


def new_run_id() -> str:
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(3)}"


def load_specs(config: pytest.Config) -> list[ModelSpec]:
    if SPECS_KEY not in config.stash:
        path = Path(config.getoption("--qc-models"))
        if not path.is_absolute():
            path = Path(config.invocation_params.dir) / path
        try:
            project = load_project(path)
            config.stash[SPECS_KEY] = project.models
            config.stash[DEVICES_KEY] = tuple(project.devices)
        except ConfigError as exc:  # reported once, cleanly, when collection finishes
            config.stash[ERROR_KEY] = str(exc)
            config.stash[SPECS_KEY] = []
            config.stash[DEVICES_KEY] = ()
    return config.stash[SPECS_KEY]


def load_devices(config: pytest.Config) -> tuple[DeviceSpec, ...]:
    """The top-level ``devices`` list of the models file (the pools of ``kind: snpe`` targets)."""
    load_specs(config)
    return config.stash[DEVICES_KEY]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A gate that applies to no model of models.yaml is deselected, not reported as a skip."""
    unused = [
        item for item in items if "qc_model" in getattr(item, "fixturenames", ()) and not hasattr(item, "callspec")
    ]
    wanted = config.getoption("--qc-diagnose") or "diagnose" in (config.getoption("markexpr") or "")
    if not wanted:
        unused += [item for item in items if item.get_closest_marker("diagnose") is not None]
    if unused:
        config.hook.pytest_deselected(items=unused)
        items[:] = [item for item in items if item not in unused]


def pytest_collection_finish(session: pytest.Session) -> None:
    error = session.config.stash.get(ERROR_KEY, None)
    if error is not None:
        pytest.exit(f"qc: invalid models file:\n{error}", returncode=pytest.ExitCode.USAGE_ERROR)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "qc_model" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("qc_gate")
    gate = str(marker.args[0]) if marker else ""
    params = []
    for spec in load_specs(metafunc.config):
        if gate and not spec.applies(gate):
            continue
        if gate == "baseline" and not metafunc.config.getoption("--qc-baseline"):
            continue
        marks: list[pytest.MarkDecorator] = [pytest.mark.xdist_group(spec.name)]
        if gate and spec.expected(gate) == "fail":
            marks.append(pytest.mark.xfail(strict=True, reason=f"models.yaml expects gate {gate!r} to fail"))
        params.append(pytest.param(spec, id=spec.name, marks=marks))
    if params:  # none: the gate applies to no model; the item is deselected in pytest_collection_modifyitems
        metafunc.parametrize("qc_model", params, indirect=True, scope="session")


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
                elif key not in ("qc_model", "qc_gate"):
                    row[key] = value


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

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.summary.add(report)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if hasattr(self.config, "workerinput") or not self.summary.rows:
            return
        from qc.report.tables import write_summary

        report_dir = Path(self.config.getoption("--qc-report-dir"))
        report_dir.mkdir(parents=True, exist_ok=True)
        write_summary(list(self.summary.rows.values()), report_dir / "summary.csv", GATES)
        if not self.config.getoption("--qc-no-history"):
            self.history_rows = append_history(report_dir, self.summary.rows)
        self.dashboard = write_report_pages(self.config, report_dir)

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
        extras.append(html.extras.url(str((report_dir / str(model) / "index.html").resolve()), name="model page"))
        try:
            png = dashboard_png(report_dir, str(model))
            extras.append(html.extras.png(base64.b64encode(png.read_bytes()).decode(), name="per-layer cosine"))
        except QcError:
            pass  # no layers.csv for this model (yet): the link is enough
        report.extras = extras

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        rows = self.summary.rows
        if not rows:
            return
        gates = [g for g in GATES if any(g in r for r in rows.values())]
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
            tr.write_line(f"history: run {os.environ.get('QC_RUN_ID')} ({self.history_rows} metrics) appended")
        if self.dashboard is not None:
            tr.write_line(f"dashboard: {self.dashboard.resolve()}")


def append_history(report_dir: Path, rows: dict[str, dict[str, Any]]) -> int:
    """Append this run's numeric metrics per model to ``history.sqlite`` (one transaction)."""
    from qc.report.history import History, MetricRow, RunInfo, git_commit

    metrics = []
    for model, row in rows.items():
        target = str(row.get("target", ""))
        for key, value in row.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                metrics.append(MetricRow(model, target, key, float(value)))
    started = float(os.environ.get("QC_RUN_STARTED", time.time()))
    run = RunInfo(
        os.environ.get("QC_RUN_ID") or new_run_id(),
        datetime.datetime.fromtimestamp(started, datetime.UTC).isoformat(timespec="seconds"),
        git_commit(),
    )
    return History(report_dir / "history.sqlite").append(run, metrics)


def model_settings(config: pytest.Config) -> dict[str, dict[str, Any]]:
    """Per model, the run's settings shown on its dashboard page (target, quantization, data, versions)."""
    import onnxruntime

    from qc import __version__

    try:
        specs = load_specs(config)
    except Exception:  # the dashboard must not fail the run; pages then show no settings
        return {}
    out: dict[str, dict[str, Any]] = {}
    for spec in specs:
        row: dict[str, Any] = {
            "target": spec.target.kind,
            "reference": str(spec.reference),
            "target settings": spec.target.model_dump(mode="json", exclude={"kind"}),
            "preprocess": spec.preprocess.model_dump(mode="json"),
            "evaluation data": spec.eval_data.model_dump(mode="json", exclude_none=True),
            "calibration": spec.calibration.model_dump(mode="json", exclude_none=True) if spec.calibration else None,
            "thresholds": spec.thresholds.model_dump(mode="json", exclude={"overrides"}),
            "versions": {"qc": __version__, "onnxruntime": onnxruntime.__version__},
        }
        out[spec.name] = row
    return out


def write_report_pages(config: pytest.Config, report_dir: Path) -> Path | None:
    """The offline dashboard over everything in the report folder, with the run history's trends."""
    from qc.report.dashboard import write_dashboard
    from qc.report.history import History

    xml = getattr(config.option, "xmlpath", None)
    junit = Path(xml).name if xml and Path(xml).resolve().parent == report_dir.resolve() else "junit.xml"
    points = History(report_dir / "history.sqlite").points()
    write_dashboard(report_dir, history=points, settings=model_settings(config), junit_name=junit)
    return report_dir / "index.html"
