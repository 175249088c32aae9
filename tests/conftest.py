"""Shared pytest configuration for the qc test suite."""

pytest_plugins = ["tests.sshd", "tests.demo"]
