"""Fixtures for the SSH transport tests (the sshd itself comes from tests/sshd.py)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from qc.device import SshConfig, SshTransport
from tests.sshd import SshdServer

ConfigFactory = Callable[..., SshConfig]


@pytest.fixture
def ssh_config(sshd_server: SshdServer) -> ConfigFactory:
    """Build an SshConfig for the throwaway sshd; keyword arguments override fields."""

    def make(**overrides: Any) -> SshConfig:
        base = SshConfig(
            host=sshd_server.host,
            port=sshd_server.port,
            username=sshd_server.user,
            key_file=sshd_server.client_key,
            known_hosts=sshd_server.known_hosts,
            connect_timeout_s=5.0,
            io_timeout_s=20.0,
            keepalive_s=5,
            max_attempts=3,
            backoff_s=0.05,
            backoff_max_s=0.2,
        )
        return dataclasses.replace(base, **overrides)

    return make


@pytest.fixture
def transport(ssh_config: ConfigFactory) -> Iterator[SshTransport]:
    with SshTransport(ssh_config()) as t:
        yield t
