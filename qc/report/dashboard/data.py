"""Reading a report folder for the dashboard: files as loaded (or why not), numbers from cells, one model's files.

Nothing here raises on a missing, empty or unreadable file: ``Loaded.problem`` says why, and the page says so.
"""

from __future__ import annotations

import csv
import io
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qc import jsonio
from qc.report.paths import model_dir, model_dirs

DIAGNOSIS_FILES = (
    "diagnosis.json",
    "local.csv",
    "ranges.csv",
    "sensitivity.csv",
    "advised.models.yaml",
    "snpe_overrides.json",
)
# The tolerance actually applied to each tensor (overrides included), as the comparison writes it: layers.csv has
# COSINE_THRESHOLD, outputs.csv both. The dashboard draws these and nothing else; a CSV without them (written by an
# older qc) gets no threshold line.
COSINE_THRESHOLD = "cosine_threshold"
SQNR_THRESHOLD = "sqnr_db_threshold"
MODEL_FILES = (
    "layers.csv",
    "outputs.csv",
    "unmatched.csv",
    "accuracy.json",
    "detections_reference.json",
    "detections_target.json",
    "speed.json",
    "layer_times.csv",
    "op_types.csv",
    "lint.csv",
    "htp_split.csv",
    *DIAGNOSIS_FILES,
)


# --------------------------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class Loaded:
    """A file as read. ``problem`` is None when it was read; otherwise a sentence fragment saying why not."""

    path: Path
    rows: list[dict[str, str]]
    data: Any = None
    problem: str | None = None
    columns: tuple[str, ...] = ()  # a CSV's header, in order

    @property
    def missing(self) -> bool:
        return self.problem == "missing"


def read_csv(path: Path) -> Loaded:
    if not path.is_file():
        return Loaded(path, [], problem="missing")
    try:
        text = path.read_text(encoding="utf-8")
        reader = csv.DictReader(io.StringIO(text))
        rows = [{str(k): v if isinstance(v, str) else "" for k, v in row.items() if k is not None} for row in reader]
        columns = tuple(reader.fieldnames or ())
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        return Loaded(path, [], problem=f"unreadable ({exc})")
    return Loaded(path, rows, columns=columns)


def read_json(path: Path) -> Loaded:
    if not path.is_file():
        return Loaded(path, [], problem="missing")
    try:
        text = path.read_text(encoding="utf-8")
        data = jsonio.loads(text) if text.strip() else None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return Loaded(path, [], problem=f"unreadable ({exc})")
    if data is None:
        return Loaded(path, [], problem="empty")
    return Loaded(path, [], data=data)


def num(value: Any) -> float | None:
    """A number from a CSV cell or JSON value; NaN stays NaN (an undefined metric), None when absent."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value).strip())
    except ValueError:
        return None


def finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def fmt_num(value: float | None, digits: int = 4) -> str:
    """``digits`` significant digits; integers as integers; large values with one decimal."""
    if value is None:
        return "—"
    if math.isnan(value):
        return "undefined"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    if abs(value) >= 10 ** max(digits, 1):
        return f"{value:.1f}" if abs(value) < 1e12 else f"{value:.3e}"
    return f"{value:.{max(digits, 1)}g}"


def safe_name(model: str) -> bool:
    return model not in ("", ".", "..") and not any(c in model for c in "/\\\x00")


# --------------------------------------------------------------------------------------------------- model data


@dataclass
class ModelFiles:
    name: str
    folder: Path
    layers: Loaded
    outputs: Loaded
    unmatched: Loaded
    accuracy: Loaded
    speed: Loaded
    layer_times: Loaded
    op_types: Loaded
    lint: Loaded
    detections: dict[str, Loaded]
    pictures: list[Path]
    diagnosis: Loaded
    local: Loaded
    ranges: Loaded
    sensitivity: Loaded
    split: Loaded  # htp_split.csv: quantization vs runtime error per tensor (qnn-htp targets)

    @classmethod
    def read(cls, report_dir: Path, name: str) -> ModelFiles:
        folder = model_dir(report_dir, name)
        pic_dir = folder / "pictures"
        pictures = sorted(p for p in pic_dir.glob("*.png") if p.is_file()) if pic_dir.is_dir() else []
        return cls(
            name=name,
            folder=folder,
            layers=read_csv(folder / "layers.csv"),
            outputs=read_csv(folder / "outputs.csv"),
            unmatched=read_csv(folder / "unmatched.csv"),
            accuracy=read_json(folder / "accuracy.json"),
            speed=read_json(folder / "speed.json"),
            layer_times=read_csv(folder / "layer_times.csv"),
            op_types=read_csv(folder / "op_types.csv"),
            lint=read_csv(folder / "lint.csv"),
            detections={side: read_json(folder / f"detections_{side}.json") for side in ("reference", "target")},
            pictures=pictures,
            diagnosis=read_json(folder / "diagnosis.json"),
            local=read_csv(folder / "local.csv"),
            ranges=read_csv(folder / "ranges.csv"),
            sensitivity=read_csv(folder / "sensitivity.csv"),
            split=read_csv(folder / "htp_split.csv"),
        )

    def accuracy_value(self, key: str) -> float | None:
        data = self.accuracy.data
        return num(data.get(key)) if isinstance(data, dict) else None

    def target_fps(self) -> float | None:
        data = self.speed.data
        target = data.get("target") if isinstance(data, dict) else None
        return num(target.get("fps")) if isinstance(target, dict) else None

    def worst_layer(self) -> tuple[str, float] | None:
        """The first undefined layer, else the lowest mean cosine."""
        worst: tuple[str, float] | None = None
        for row in self.layers.rows:
            value = num(row.get("cosine_mean"))
            if value is None:
                continue
            if math.isnan(value):
                return row.get("tensor", ""), value
            if worst is None or value < worst[1]:
                worst = (row.get("tensor", ""), value)
        return worst


def discover_models(report_dir: Path, summary: Loaded, settings: Mapping[str, Any]) -> list[str]:
    names: list[str] = [r.get("model", "") for r in summary.rows]
    if report_dir.is_dir():
        for sub in model_dirs(report_dir):
            if sub.is_dir() and (any((sub / f).is_file() for f in MODEL_FILES) or (sub / "pictures").is_dir()):
                names.append(sub.name)
    names.extend(settings)
    seen: dict[str, None] = {}
    for n in names:
        if n:
            seen.setdefault(n, None)
    return list(seen)


def thresholds(loaded: Loaded, column: str) -> list[float | None] | None:
    """Row by row, the threshold in ``column`` (None for a row without a finite one, e.g. a tensor that is not
    gated); None when the CSV has no such column."""
    if column not in loaded.columns:
        return None
    return [value if finite(value) else None for value in (num(row.get(column)) for row in loaded.rows)]


def describe_thresholds(values: Sequence[float | None], noun: str, unit: str = "") -> str:
    """``0.98`` or ``0.98 (0.995 on 1 layer)``: the most common value, then the others with their counts."""
    counts = Counter(v for v in values if v is not None)
    if not counts:
        return f"none given for any {noun}"
    ranked = counts.most_common()
    (common, _), others = ranked[0], ranked[1:]
    text = f"{common:g}{unit}"
    shown = [f"{v:g}{unit} on {n} {noun}{'s' if n != 1 else ''}" for v, n in others[:3]]
    if len(others) > 3:
        shown.append(f"{len(others) - 3} other values")
    unset = sum(1 for v in values if v is None)
    if unset:
        shown.append(f"none on {unset} {noun}{'s' if unset != 1 else ''}")
    return f"{text} ({', '.join(shown)})" if shown else text
