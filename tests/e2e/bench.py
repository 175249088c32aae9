"""Runs ``pytest benchmarks`` in a subprocess on a project folder (models.yaml, reports/, cache/ inside it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def bench(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The gates of ``folder/models.yaml``, reports and JUnit in ``folder/reports``, stage cache in ``folder/cache``."""
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        str(REPO / "benchmarks"),
        "-p",
        "no:cacheprovider",
        "--qc-models",
        str(folder / "models.yaml"),
        "--qc-report-dir",
        str(folder / "reports"),
        "--qc-cache-dir",
        str(folder / "cache"),
        "--junitxml",
        str(folder / "reports" / "junit.xml"),
        *args,
    ]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
