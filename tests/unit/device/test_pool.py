"""DevicePool: exclusive leases across processes via file locks."""

from __future__ import annotations

import itertools
import multiprocessing
import threading
import time
from pathlib import Path

import pytest

from qc.device import DevicePool
from qc.errors import DeviceError


def _contend(lock_dir: str, log_path: str, worker: int, rounds: int) -> None:
    pool = DevicePool({"rvc4-a": f"device-of-{worker}"}, lock_dir)
    for _ in range(rounds):
        with pool.lease(timeout_s=60, poll_s=0.01) as lease:
            start = time.monotonic()
            time.sleep(0.05)
            end = time.monotonic()
            with open(log_path, "a", encoding="utf-8") as fh:
                fh.write(f"{worker} {lease.name} {start:.6f} {end:.6f}\n")


def test_two_processes_never_overlap(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    log_path = tmp_path / "leases.log"
    procs = [ctx.Process(target=_contend, args=(str(tmp_path / "locks"), str(log_path), w, 5)) for w in (1, 2)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
        assert proc.exitcode == 0
    spans = sorted(
        (float(start), float(end), worker)
        for worker, _name, start, end in (line.split() for line in log_path.read_text().splitlines())
    )
    assert len(spans) == 10
    assert {w for _s, _e, w in spans} == {"1", "2"}
    for (_s1, end1, _w1), (start2, _e2, _w2) in itertools.pairwise(spans):
        assert end1 <= start2, "two leases of the same device overlapped"


def test_threads_are_exclusive_too(tmp_path: Path) -> None:
    pool = DevicePool({"only": 1}, tmp_path)
    active = []
    overlaps = []

    def work() -> None:
        for _ in range(5):
            with pool.lease(timeout_s=30, poll_s=0.005):
                active.append(1)
                if len(active) > 1:
                    overlaps.append(True)
                time.sleep(0.01)
                active.pop()

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == []


def test_second_device_is_used_when_first_is_busy(tmp_path: Path) -> None:
    pool = DevicePool({"a": "A", "b": "B"}, tmp_path)
    with pool.lease(timeout_s=1, prefer="a") as first, pool.lease(timeout_s=1) as second:
        assert {first.name, second.name} == {"a", "b"}
        assert second.device == {"a": "A", "b": "B"}[second.name]


def test_timeout_gives_a_clear_error(tmp_path: Path) -> None:
    pool = DevicePool({"rvc4-a": None}, tmp_path / "locks")
    with pool.lease(timeout_s=1):
        start = time.monotonic()
        with (
            pytest.raises(DeviceError, match=r"No device of the pool \(rvc4-a\) became free within 0.3 s"),
            pool.lease(timeout_s=0.3, poll_s=0.05),
        ):
            pass
        waited = time.monotonic() - start
        assert waited >= 0.3  # it kept trying until its timeout...
        assert waited < 0.3 + 5.0  # ...and then gave up (a deadline check with a generous bound)
    with pool.lease(timeout_s=0) as lease:  # released again
        assert lease.name == "rvc4-a"


def test_lock_files_are_distinct_and_safe(tmp_path: Path) -> None:
    pool = DevicePool({"a/b": 1, "a_b": 2, "../x": 3}, tmp_path)
    paths = {pool.lock_path(n) for n in pool.devices}
    assert len(paths) == 3
    assert all(p.parent == tmp_path for p in paths)


def test_empty_pool_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DeviceError, match="at least one device"):
        DevicePool({}, tmp_path)
