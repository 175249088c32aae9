"""Run state (id, start time, refresh moment): made once on the controller, handed to xdist workers.

It travels through ``config.stash`` and xdist's ``workerinput``, never through the environment.
"""

from __future__ import annotations

import datetime
import secrets
import time
from dataclasses import asdict, dataclass
from typing import Any

import pytest

WORKERINPUT_KEY = "qc_run"


@dataclass(frozen=True)
class RunState:
    run_id: str
    started: float
    """Wall-clock start of the run (seconds since the epoch)."""
    refresh_since: float | None
    """With ``--qc-refresh``: cache entries written before this moment are rebuilt."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunState:
        since = data.get("refresh_since")
        return cls(str(data["run_id"]), float(data["started"]), None if since is None else float(since))


RUN_KEY = pytest.StashKey[RunState]()


def new_run_id() -> str:
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(3)}"


def start_run(config: pytest.Config) -> RunState:
    """The controller makes the run state; an xdist worker takes the one its controller sent."""
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    if workerinput is not None and WORKERINPUT_KEY in workerinput:
        run = RunState.from_dict(workerinput[WORKERINPUT_KEY])
    else:
        now = time.time()
        run = RunState(new_run_id(), now, now if config.getoption("--qc-refresh") else None)
    config.stash[RUN_KEY] = run
    return run


def run_state(config: pytest.Config) -> RunState:
    """This run's state (made in ``pytest_configure``)."""
    if RUN_KEY not in config.stash:
        return start_run(config)
    return config.stash[RUN_KEY]


class XdistHooks:
    """Registered only when pytest-xdist is active: sends the run state to every worker."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput[WORKERINPUT_KEY] = run_state(self.config).to_dict()
