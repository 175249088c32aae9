"""A small synthetic report folder with the real file layouts, for the dashboard tests.

``alpha-int8`` has every file a full run leaves (a tensor is named like an HTML injection, one layer is undefined);
``beta-a16`` has only its layer comparison; ``gamma-bad`` has unreadable or empty files.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from PIL import Image

from qc.config import GATES
from qc.graph.lint import Finding, Severity
from qc.report.history_types import HistoryPoint
from qc.report.speed import write_lint, write_speed
from qc.report.tables import LAYER_COLUMNS, OUTPUT_COLUMNS, UNMATCHED_COLUMNS, to_csv, write_summary
from qc.speed import LatencyStats, with_shares

FULL, PARTIAL, BROKEN = "alpha-int8", "beta-a16", "gamma-bad"
INJECTION = "<script>alert(1)</script>"
LAYERS = 30
FIRST_BAD = 7  # first layer under the 0.98 threshold in FULL
UNDEFINED = 20
THRESHOLDS = {"layer_cosine": 0.98, "output_cosine": 0.99}
OPS = ("Conv", "LeakyRelu", "MaxPool")


def layer_rows(cosines: list[float]) -> list[dict[str, Any]]:
    rows = []
    for i, cos in enumerate(cosines):
        name = INJECTION if i == 12 else f"backbone/block_{i}/{OPS[i % 3].lower()}"
        rows.append(
            {
                "index": i,
                "tensor": name,
                "op_type": OPS[i % 3],
                "shape": f"1x{16 * (1 + i % 4)}x52x52",
                "target_tensor": f"{name}_DequantizeLinear_Output",
                "cosine_mean": cos,
                "cosine_min": cos - 0.01 if math.isfinite(cos) else cos,
                "sqnr_db_mean": 30.0 - i / 2 if math.isfinite(cos) else math.nan,
                "sqnr_db_min": 28.0 - i / 2 if math.isfinite(cos) else math.nan,
                "mse_mean": 1e-3 * (i + 1),
                "max_abs": 0.1 * (i + 1),
                "undefined": "the target tensor is all zeros (image 1)" if not math.isfinite(cos) else "",
            }
        )
    return rows


def full_cosines() -> list[float]:
    values = [0.999 - 0.0005 * i for i in range(LAYERS)]
    values[FIRST_BAD] = 0.95
    values[12] = 0.9
    values[UNDEFINED] = math.nan
    return values


def write_full(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "layers.csv").write_text(to_csv(LAYER_COLUMNS, layer_rows(full_cosines())))
    outputs = [
        {"output": "head", "shape": "1x255x13x13", "cosine_mean": 0.996, "cosine_min": 0.994, "sqnr_db_mean": 21.9},
        {"output": "decoded", "shape": "1x2535x85", "cosine_mean": 0.998, "cosine_min": 0.997, "sqnr_db_mean": 25.0},
        {"output": "decoded[boxes]", "shape": "1x2535x4", "cosine_mean": 0.999, "cosine_min": 0.998},
        {
            "output": "decoded[objectness]",
            "shape": "1x2535x1",
            "cosine_mean": math.nan,
            "cosine_min": math.nan,
            "undefined": "the target tensor is all zeros (image 1); undefined on 4 of 4 image(s)",
        },
        {"output": "decoded[classes]", "shape": "1x2535x80", "cosine_mean": 0.46, "cosine_min": 0.35},
    ]
    (folder / "outputs.csv").write_text(to_csv(OUTPUT_COLUMNS, outputs))
    unmatched = [
        {"tensor": "backbone/relu_3", "op_type": "Relu", "reason": "fused into the quantized Conv"},
        {"tensor": "head/<odd>&name", "op_type": "Identity", "reason": "removed by the optimizer"},
    ]
    (folder / "unmatched.csv").write_text(to_csv(UNMATCHED_COLUMNS, unmatched))
    accuracy = {
        "images": 4,
        "labelled": True,
        "reference.ap": 0.2284,
        "reference.ap50": 0.4945,
        "reference.ap75": 0.2494,
        "reference.ar100": 0.2996,
        "reference.detections": 400,
        "reference.empty_reason": None,
        "reference.per_class_ap": {"person": 0.31, "car": 0.6},
        "target.ap": 0.2112,
        "target.ap50": 0.4811,
        "target.ap75": 0.2201,
        "target.ar100": 0.2803,
        "target.detections": 380,
        "target.empty_reason": None,
        "target.per_class_ap": {"person": 0.29, "car": 0.55},
        "drop.ap": 0.0172,
        "drop.ap50": 0.0134,
        "agreement_ap": 0.9037,
        "agreement_ap50": 0.9995,
        "agreement.empty_reason": None,
        "most_disagreeing_images": [{"image_id": 3, "disagreement": 0.4}, {"image_id": 1, "disagreement": 0.1}],
    }
    (folder / "accuracy.json").write_text(json.dumps(accuracy, indent=1))
    det = [{"image_id": 1, "category_id": 1, "bbox": [1.0, 2.0, 30.0, 40.0], "score": 0.9}]
    (folder / "detections_reference.json").write_text(json.dumps(det * 3))
    (folder / "detections_target.json").write_text(json.dumps(det * 2))
    pictures = folder / "pictures"
    pictures.mkdir(exist_ok=True)
    for name, color in (("image one", (200, 40, 40)), ("image_2", (40, 40, 200))):
        Image.new("RGB", (320, 120), color).save(pictures / f"{name}.png")
    times = [(f"node_{i}", OPS[i % 3], 100.0 + 37.0 * ((i * 7) % 11)) for i in range(25)]
    times.append((INJECTION, "Conv", 900.0))
    write_speed(
        folder,
        LatencyStats(56.9, 17.6, 14.5, 24.5, 45.4, 30, "onnxruntime CPU"),
        LatencyStats(18.9, 52.9, 43.3, 80.6, 138.7, 30, "onnxruntime CPU"),
        with_shares(times, "us"),
        profiling_overhead=0.63,
    )
    findings = [
        Finding(
            "channels-multiple-32",
            Severity.INFO,
            "conv_0",
            "Conv",
            "Conv 'conv_0' has 16 output channels, not a multiple of 32.",
            "The DSP works on channel tiles of 32.",
            "Use 32 channels.",
            0.05,
        ),
        Finding("div", Severity.ERROR, "head/div", "Div", "Division by a constant.", "Slow.", "Multiply.", None),
    ]
    write_lint(folder, findings)


def write_partial(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "layers.csv").write_text(to_csv(LAYER_COLUMNS, layer_rows([0.9995 - 0.0001 * i for i in range(12)])))


def write_broken(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "layers.csv").write_text(to_csv(LAYER_COLUMNS, []))  # header only
    (folder / "outputs.csv").write_text("")  # empty file
    (folder / "accuracy.json").write_text("{not json")
    (folder / "speed.json").write_text("[1, 2]")
    (folder / "lint.csv").write_text(to_csv(("rule", "severity", "node", "op_type", "what", "why", "fix"), []))
    (folder / "layer_times.csv").write_bytes(b"\xff\xfe\x00garbage")


def build_report(root: Path, *, junit: bool = True, summary: bool = True) -> Path:
    """The report folder: three models, summary.csv and junit.xml."""
    root.mkdir(parents=True, exist_ok=True)
    write_full(root / FULL)
    write_partial(root / PARTIAL)
    write_broken(root / BROKEN)
    if summary:
        rows = [
            {
                "model": FULL,
                "target": "ort-int8",
                "images": 4,
                **dict.fromkeys(GATES, "passed"),
                "layer_cosine": "failed",
                "output_cosine": "xfailed",
                "fps": 56.9,  # the plugin currently writes the FPS value into the gate's column
                "reference_ap": 0.2284,
                "target_ap": 0.2112,
                "ap_drop": 0.0172,
                "agreement.ap": 0.9037,
                "worst_layer": INJECTION,
                "worst_layer_cosine": 0.9,
                "lint_findings": 2,
            },
            {"model": PARTIAL, "target": "ort-int8", "images": 4, "layer_cosine": "passed", "lint": "error"},
            {"model": BROKEN, "target": "", "images": 4, "layer_cosine": "xpassed(strict)"},
        ]
        write_summary(rows, root / "summary.csv", GATES)
    if junit:
        (root / "junit.xml").write_text('<?xml version="1.0"?><testsuites><testsuite name="pytest"/></testsuites>\n')
    return root


def settings() -> dict[str, dict[str, Any]]:
    return {
        FULL: {
            "target.kind": "ort-int8",
            "per_channel": True,
            "activation_bitwidth": 8,
            "calibration": "calib/ (8 images)",
            "versions": {"qc": "0.1.0", "onnxruntime": "1.32.0"},
            "thresholds": THRESHOLDS,
        },
        PARTIAL: {"target.kind": "ort-int8", "layer_cosine_threshold": 0.98},
    }


def history(runs: int) -> list[HistoryPoint]:
    points = []
    for r in range(runs):
        run, when = f"run-{r}", f"2025-11-{20 + r:02d}T10:00:00+00:00"
        for model, base in ((FULL, 50.0), (PARTIAL, 10.0)):
            points.append(HistoryPoint(run, when, f"c0ffee{r}", model, "ort-int8", "fps", base + r))
            points.append(HistoryPoint(run, when, None, model, "ort-int8", "worst_layer_cosine", 0.9 + 0.01 * r))
            points.append(HistoryPoint(run, when, None, model, "ort-int8", "head.cosine", 0.99))
    return points
