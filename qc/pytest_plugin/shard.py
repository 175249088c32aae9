"""Sharding the gates across machines with pytest-split, whole models per shard.

pytest-split (``--splits N --group I``, its default ``duration_based_chunks`` algorithm) keeps the items in
collection order and starts the next group when the running sum of durations has reached total/N, checked BEFORE
an item is added. So when the items come model by model and a model's whole duration sits on its LAST item (its
other items 0 s), a cut can only fall between two models. This module provides both halves:

- the plugin orders the gate items model by model (stable; the models in their first-collected order);
- ``--qc-plan-durations FILE`` (with ``--collect-only``) writes pytest-split's durations file (its documented
  ``--durations-path`` format: test id -> seconds) for every collected item, folded per model: each model's
  measured total (from ``durations.json`` of the report folder, written by every run; an item never measured
  counts as the mean of the measured ones, 1 s when none is) on its last item, 0 on the others.

A safety net: under ``--splits``, a shard that holds some of a model's gates while others were deselected stops
at collection with a clear error (the durations file was not planned for this collection, or ``-k``/``-m`` cut a
model).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from qc.config import ModelSpec
from qc.report.folder import read_durations

MIN_MODEL_SECONDS = 1e-3
"""A model's planned duration is at least this: a cut never falls inside a run of zero-duration items."""


def add_options(group: Any) -> None:
    group.addoption(
        "--qc-plan-durations",
        default=None,
        metavar="FILE",
        help="Write pytest-split's durations file for this collection (use with --collect-only): each model's "
        "measured time (from durations.json in --qc-report-dir) on its last gate, so --splits cuts between models.",
    )
    group.addoption(
        "--qc-run-group",
        default=None,
        help="Id shared by the runs that make one run together (the shards of one CI run); qc merge refuses report "
        "folders of different groups. Default: the run's own id.",
    )


def item_model(item: pytest.Item) -> str | None:
    """The models.yaml entry a gate item checks (None for any other test)."""
    callspec = getattr(item, "callspec", None)
    spec = callspec.params.get("qc_model") if callspec is not None else None
    return spec.name if isinstance(spec, ModelSpec) else None


def order_by_model(items: list[pytest.Item]) -> None:
    """Other tests first (in their order), then the gate items model by model, stable within a model."""
    rank: dict[str, int] = {}
    for item in items:
        model = item_model(item)
        if model is not None:
            rank.setdefault(model, len(rank))
    items.sort(key=lambda item: -1 if (m := item_model(item)) is None else rank[m])


def plan(tests: list[tuple[str, str | None]], measured: dict[str, float]) -> dict[str, float]:
    """pytest-split durations for ``tests`` ((test id, model or None), ordered by model): each model's total
    (measured seconds; the mean of the measured tests for one never measured, 1 s when none is) on its last test."""
    known = [measured[t] for t, _ in tests if t in measured]
    default = sum(known) / len(known) if known else 1.0
    out: dict[str, float] = {}
    last: dict[str, str] = {}
    totals: dict[str, float] = defaultdict(float)
    for test, model in tests:
        seconds = measured.get(test, default)
        if model is None:
            out[test] = seconds
            continue
        out[test] = 0.0
        totals[model] += seconds
        last[model] = test
    for model, test in last.items():
        out[test] = max(totals[model], MIN_MODEL_SECONDS)
    return out


def splits_of(config: pytest.Config) -> tuple[int, int] | None:
    """``(group, splits)`` when pytest-split is splitting this session."""
    splits = config.getoption("splits", default=None)
    group = config.getoption("group", default=None)
    return (int(group), int(splits)) if splits and group else None


class ShardHooks:
    """Registered by the plugin: model-by-model order, the durations plan, and the whole-model check."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.eligible: list[pytest.Item] = []
        self.deselected: list[pytest.Item] = []

    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        # after the plugin's own tryfirst hook (suite added, inapplicable gates deselected), before pytest-split's
        order_by_model(items)
        self.eligible = list(items)
        target = config.getoption("--qc-plan-durations")
        if target:
            if splits_of(config) is not None:
                raise pytest.UsageError("--qc-plan-durations plans a split: run it without --splits/--group.")
            report_dir = Path(config.getoption("--qc-report-dir"))
            planned = plan([(i.nodeid, item_model(i)) for i in items], read_durations(report_dir))
            path = Path(target)
            path = path if path.is_absolute() else Path(config.invocation_params.dir) / path
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(planned, indent=1, sort_keys=True) + "\n", encoding="utf-8")

    def pytest_deselected(self, items: list[pytest.Item]) -> None:
        self.deselected.extend(items)

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        shard = splits_of(session.config)
        if shard is None:
            return
        eligible = {id(i) for i in self.eligible}
        here: dict[str, int] = defaultdict(int)
        for item in session.items:
            model = item_model(item)
            if model is not None:
                here[model] += 1
        elsewhere: dict[str, int] = defaultdict(int)
        for item in self.deselected:
            model = item_model(item)
            if model in here and id(item) in eligible:
                elsewhere[model] += 1
        if elsewhere:
            cut = ", ".join(f"{m} ({here[m]} of {here[m] + elsewhere[m]} gates here)" for m in sorted(elsewhere))
            pytest.exit(
                f"qc: shard {shard[0]}/{shard[1]} holds only part of model(s) {cut}; every gate of a model must run "
                "in one shard. Plan the split for this collection (pytest --collect-only --qc-plan-durations FILE, "
                "then --durations-path FILE) and do not cut models with -k/-m.",
                returncode=pytest.ExitCode.USAGE_ERROR,
            )
