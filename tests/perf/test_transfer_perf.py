"""Transfer benchmark on loopback: 1,000 files of 64 KB to and from the throwaway sshd.

One tar stream (``SshTransport.put_tree``/``get_tree``) against one SFTP call per file. Run with
``pytest tests/perf/test_transfer_perf.py --benchmark-only`` (add ``--benchmark-json=FILE`` to keep the figures);
each case also stores MB/s and files/s in the benchmark's ``extra_info``. The cases take about a minute, so they
are skipped in ordinary test runs unless ``--benchmark-only`` is given or ``QC_PERF=1`` is set.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from qc.device import SshConfig, SshTransport
from tests.sshd import SshdServer

FILES = 1000
SIZE = 64 * 1024


@pytest.fixture(scope="module", autouse=True)
def _only_when_asked(request: pytest.FixtureRequest) -> None:
    if not (request.config.getoption("benchmark_only", default=False) or os.environ.get("QC_PERF") == "1"):
        pytest.skip("transfer benchmark: run with --benchmark-only or QC_PERF=1")


@pytest.fixture(scope="module")
def payload(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("payload") / "inputs"
    folder.mkdir()
    block = os.urandom(SIZE)
    for i in range(FILES):
        (folder / f"{i:06d}.raw").write_bytes(block[i % 256 :] + block[: i % 256])
    return folder


@pytest.fixture
def transport(sshd_server: SshdServer) -> Iterator[SshTransport]:
    config = SshConfig(
        host=sshd_server.host,
        port=sshd_server.port,
        username=sshd_server.user,
        key_file=sshd_server.client_key,
        known_hosts=sshd_server.known_hosts,
    )
    with SshTransport(config) as t:
        t.connect()
        yield t


def _fresh(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)


def _run(benchmark: Any, fn: Callable[[], None], setup: Callable[[], None]) -> None:
    benchmark.pedantic(fn, setup=setup, rounds=1, iterations=1, warmup_rounds=0)
    seconds = benchmark.stats.stats.mean
    benchmark.extra_info["files"] = FILES
    benchmark.extra_info["bytes"] = FILES * SIZE
    benchmark.extra_info["MB_per_s"] = round(FILES * SIZE / seconds / 1e6, 1)
    benchmark.extra_info["files_per_s"] = round(FILES / seconds, 1)


def _check(folder: Path) -> None:
    files = list(folder.iterdir())
    assert len(files) == FILES
    assert all(f.stat().st_size == SIZE for f in files)


@pytest.mark.benchmark(group="put 1000 x 64 KB")
def test_put_tar_stream(benchmark: Any, transport: SshTransport, payload: Path, tmp_path: Path) -> None:
    remote = tmp_path / "device"
    _run(benchmark, lambda: transport.put_tree(payload, str(remote)), lambda: _fresh(remote))
    _check(remote)


@pytest.mark.benchmark(group="put 1000 x 64 KB")
def test_put_sftp_per_file(benchmark: Any, transport: SshTransport, payload: Path, tmp_path: Path) -> None:
    remote = tmp_path / "device"
    sftp = transport.open_sftp()
    names = sorted(os.listdir(payload))

    def send() -> None:
        for name in names:
            sftp.put(str(payload / name), str(remote / name))

    _run(benchmark, send, lambda: _fresh(remote))
    _check(remote)


@pytest.mark.benchmark(group="get 1000 x 64 KB")
def test_get_tar_stream(benchmark: Any, transport: SshTransport, payload: Path, tmp_path: Path) -> None:
    local = tmp_path / "back"
    _run(benchmark, lambda: transport.get_tree(str(payload), local), lambda: shutil.rmtree(local, ignore_errors=True))
    _check(local)


@pytest.mark.benchmark(group="get 1000 x 64 KB")
def test_get_sftp_per_file(benchmark: Any, transport: SshTransport, payload: Path, tmp_path: Path) -> None:
    local = tmp_path / "back"
    sftp = transport.open_sftp()
    names = sorted(os.listdir(payload))

    def fetch() -> None:
        for name in names:
            sftp.get(str(payload / name), str(local / name))

    _run(benchmark, fetch, lambda: _fresh(local))
    _check(local)
