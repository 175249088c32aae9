"""The pytest plugin (registered under ``pytest11``): options, the gate tests, their fixtures, summary and reports.

Self-contained: with qc installed, ``pytest --qc-models path/to/models.yaml`` in any folder collects the gate tests
shipped in :mod:`qc.pytest_plugin.suite` (``-k <model>``, ``-n 2``, ``--junitxml`` and strict xfail work as in qc's
own repository). When the session already collected them from files that import them (this repository's
``benchmarks/``), nothing is added, so no gate runs twice. Model names are the test ids.

An expected failure (``expect: fail``) is a gate's own verdict only (:class:`GateFailure`, ``xfail(raises=...)``):
an error in a fixture or a test (a missing file, a broken model) fails the run whatever ``expect`` says. qc's own
errors (:class:`qc.errors.QcError`) are reported as their one-line message, without a traceback.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest

from qc.cliutil import positive_int
from qc.config import DeviceSpec, ModelSpec, load_project
from qc.errors import ConfigError, QcError
from qc.gates import gate_info
from qc.pytest_plugin import shard
from qc.pytest_plugin.progress import ProgressPlugin
from qc.pytest_plugin.report import Reporter, XdistReporter
from qc.pytest_plugin.run import XdistHooks, start_run

pytest_plugins = ["qc.pytest_plugin.fixtures"]

SPECS_KEY = pytest.StashKey[list[ModelSpec]]()
DEVICES_KEY = pytest.StashKey[tuple[DeviceSpec, ...]]()
ERROR_KEY = pytest.StashKey[str]()
DEFAULT_MODELS = "models.yaml"

SUITE = (
    "qc.pytest_plugin.suite.test_similarity",
    "qc.pytest_plugin.suite.test_accuracy",
    "qc.pytest_plugin.suite.test_speed",
    "qc.pytest_plugin.suite.test_baseline",
    "qc.pytest_plugin.suite.test_diagnose",
)
"""The gate test modules the plugin ships (re-exported by this repository's ``benchmarks/``)."""


class GateFailure(pytest.fail.Exception):  # type: ignore[name-defined,misc]
    """A gate's own failing verdict: the only failure ``expect: fail`` turns into an expected one."""

    def __init__(self, message: str) -> None:
        super().__init__(message, pytrace=False)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("qc", "qc quantization checker")
    group.addoption(
        "--qc-models",
        default=None,
        help=f"models.yaml to parametrize the gates with (default: {DEFAULT_MODELS}). Given explicitly, the plugin "
        "runs its gate tests even where no test file imports them.",
    )
    group.addoption("--qc-report-dir", default="reports", help="Folder for CSV, JSON and HTML reports.")
    group.addoption(
        "--qc-images", type=positive_int, default=None, help="Use at most N (at least 1) evaluation images per model."
    )
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
    shard.add_options(group)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "qc_gate(name): the models.yaml gate a benchmark test checks.")
    config.addinivalue_line("markers", "diagnose: costly diagnosis runs; opt in with --qc-diagnose or -m diagnose.")
    start_run(config)
    reporter = Reporter(config)
    config.pluginmanager.register(reporter, "qc-reporter")
    config.pluginmanager.register(ProgressPlugin(config), "qc-progress")
    config.pluginmanager.register(shard.ShardHooks(config), "qc-shard")
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(XdistHooks(config), "qc-xdist")
        config.pluginmanager.register(XdistReporter(reporter), "qc-xdist-reporter")


def models_path(config: pytest.Config) -> Path:
    path = Path(config.getoption("--qc-models") or DEFAULT_MODELS)
    return path if path.is_absolute() else Path(config.invocation_params.dir) / path


def load_specs(config: pytest.Config) -> list[ModelSpec]:
    if SPECS_KEY not in config.stash:
        try:
            project = load_project(models_path(config))
            config.stash[SPECS_KEY] = project.models
            config.stash[DEVICES_KEY] = tuple(project.devices)
        except ConfigError as exc:  # reported once, cleanly, when collection finishes
            config.stash[ERROR_KEY] = str(exc)
            config.stash[SPECS_KEY] = []
            config.stash[DEVICES_KEY] = ()
    return config.stash[SPECS_KEY]


def load_devices(config: pytest.Config) -> tuple[DeviceSpec, ...]:
    """The top-level ``devices`` list of the models file (the pools of device targets)."""
    load_specs(config)
    return config.stash[DEVICES_KEY]


class SuiteModule(pytest.Module):
    """A gate test module of the plugin, collected by import name (no file lookup, no conftest of its folder)."""

    qc_module: str = ""

    def _getobj(self) -> Any:
        return importlib.import_module(self.qc_module)


def _suite_functions() -> set[object]:
    found: set[object] = set()
    for name in SUITE:
        module = importlib.import_module(name)
        found.update(v for k, v in vars(module).items() if k.startswith("test_") and callable(v))
    return found


def _add_suite(session: pytest.Session, items: list[pytest.Item]) -> None:
    """Collect the shipped gate tests unless the session already has them (or --qc-models was not given)."""
    if session.config.getoption("--qc-models") is None:
        return
    shipped = _suite_functions()
    if any(getattr(item, "obj", None) in shipped for item in items):
        return
    root = session.config.rootpath / "qc_gates"
    for name in SUITE:
        module = SuiteModule.from_parent(session, path=root / f"{name.rsplit('.', 1)[1]}.py")
        module.qc_module = name
        items.extend(i for i in session.genitems(module) if isinstance(i, pytest.Item))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Add the shipped gate tests when needed; deselect (not skip) a gate that applies to no model."""
    _add_suite(session, items)
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
    if gate:
        gate_info(gate)  # a test naming an unknown gate is a ConfigError at collection
    params = []
    for spec in load_specs(metafunc.config):
        if gate and not spec.applies(gate):
            continue
        if gate == "baseline" and not metafunc.config.getoption("--qc-baseline"):
            continue
        marks: list[pytest.MarkDecorator] = [pytest.mark.xdist_group(spec.name)]
        if gate and spec.expected(gate) == "fail":
            reason = f"models.yaml expects gate {gate!r} to fail"
            marks.append(pytest.mark.xfail(strict=True, raises=GateFailure, reason=reason))
        params.append(pytest.param(spec, id=spec.name, marks=marks))
    if params:  # none: the gate applies to no model; the item is deselected in pytest_collection_modifyitems
        metafunc.parametrize("qc_model", params, indirect=True, scope="session")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """qc's own errors, in a fixture or a test, become short failures: their message without a traceback."""
    report = yield
    excinfo = call.excinfo
    if excinfo is not None and report.failed and excinfo.errisinstance(QcError):
        report.longrepr = excinfo.getrepr(style="value")
    return report
