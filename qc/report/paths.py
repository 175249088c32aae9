"""The layout of a report folder: run-level files at the top, one folder per model under ``models/``.

Model names are free (any test id), so they never share a namespace with the run's own files: a model named
``index.html`` or ``history.sqlite`` gets ``models/index.html/``, never the run's dashboard or history. Every
writer and reader of a model's reports goes through :func:`model_dir` (or :func:`model_page` for links).
"""

from __future__ import annotations

from pathlib import Path

MODELS_DIR = "models"
"""The folder, inside a report folder, that holds one folder per model."""

SUMMARY = "summary.csv"
HISTORY = "history.sqlite"
JUNIT = "junit.xml"
RUN_INFO = "run.json"
"""Identity of the run that wrote the folder (run id, run group, git commit, shard, settings per model)."""
DURATIONS = "durations.json"
"""Measured seconds per test id (setup + call + teardown), the input of shard planning."""
LOCK = ".qc.lock"
LOCK_INFO = ".qc.lock.json"
PATTERNS = "patterns.csv"
DASHBOARD = "index.html"


def model_dir(report_dir: Path, name: str) -> Path:
    """The folder of model ``name``'s reports: ``<report_dir>/models/<name>``."""
    if name in ("", ".", "..") or any(c in name for c in "/\\\x00"):
        raise ValueError(f"model name {name!r} cannot name a report folder")
    return Path(report_dir) / MODELS_DIR / name


def model_page(name: str) -> str:
    """The model's dashboard page relative to the report folder (POSIX, for links and JUnit properties)."""
    return f"{MODELS_DIR}/{name}/index.html"


def model_dirs(report_dir: Path) -> list[Path]:
    """Every model folder present in a report folder, sorted by name."""
    root = Path(report_dir) / MODELS_DIR
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
