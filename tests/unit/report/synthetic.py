"""A small synthetic report folder with the real file layouts, for the dashboard tests.

``alpha-int8`` has every file a full run leaves (a tensor is named like an HTML injection, one layer is undefined),
with the threshold applied to each tensor in its CSVs (one layer and one output slice overridden); ``beta-a16`` has
only its layer comparison, from an older qc (no threshold column); ``gamma-bad`` has unreadable or empty files.
``alpha-int8`` also has a diagnosis (its origin is the injection-named layer) and the folder a ``patterns.csv``;
``gamma-bad``'s diagnosis files are corrupt or empty.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from PIL import Image

from qc.config import GATES
from qc.diagnose.report import LOCAL_COLUMNS, RANGE_COLUMNS, SENSITIVITY_COLUMNS, pattern_rows, patterns_csv
from qc.graph.lint import Finding, Severity
from qc.report.history_types import HistoryPoint
from qc.report.paths import model_dir
from qc.report.speed import write_lint, write_speed
from qc.report.tables import LAYER_COLUMNS, OUTPUT_COLUMNS, UNMATCHED_COLUMNS, to_csv, write_summary
from qc.speed import LatencyStats, with_shares

FULL, PARTIAL, BROKEN = "alpha-int8", "beta-a16", "gamma-bad"
INJECTION = "<script>alert(1)</script>"
LAYERS = 30
FIRST_BAD = 7  # first layer under the 0.98 threshold in FULL
UNDEFINED = 20
THRESHOLDS = {"layer_cosine": 0.98, "output_cosine": 0.99, "output_sqnr_db": 20.0}
# The columns the comparison adds with the tolerance applied to each tensor (whether or not qc.report.tables lists
# them yet): layers.csv the cosine threshold, outputs.csv the cosine and the SQNR threshold.
LAYER_CSV = tuple(dict.fromkeys((*LAYER_COLUMNS, "cosine_threshold")))
OUTPUT_CSV = tuple(dict.fromkeys((*OUTPUT_COLUMNS, "cosine_threshold", "sqnr_db_threshold")))
OVERRIDDEN_LAYER, LAYER_OVERRIDE = 25, 0.99  # cosine 0.9865 passes 0.98 but fails its override
OVERRIDDEN_OUTPUT, OUTPUT_OVERRIDE = "decoded[boxes]", (0.9995, 35.0)  # cosine 0.999 and 31 dB fail the override
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
                "cosine_threshold": LAYER_OVERRIDE if i == OVERRIDDEN_LAYER else THRESHOLDS["layer_cosine"],
            }
        )
    return rows


def full_cosines() -> list[float]:
    values = [0.999 - 0.0005 * i for i in range(LAYERS)]
    values[FIRST_BAD] = 0.95
    values[12] = 0.9
    values[UNDEFINED] = math.nan
    return values


def output_rows() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = [
        {"output": "head", "shape": "1x255x13x13", "cosine_mean": 0.996, "cosine_min": 0.994, "sqnr_db_mean": 21.9},
        {"output": "decoded", "shape": "1x2535x85", "cosine_mean": 0.998, "cosine_min": 0.997, "sqnr_db_mean": 25.0},
        {
            "output": "decoded[boxes]",
            "shape": "1x2535x4",
            "cosine_mean": 0.999,
            "cosine_min": 0.998,
            "sqnr_db_mean": 31.0,
        },
        {
            "output": "decoded[objectness]",
            "shape": "1x2535x1",
            "cosine_mean": math.nan,
            "cosine_min": math.nan,
            "sqnr_db_mean": math.nan,
            "undefined": "the target tensor is all zeros (image 1); undefined on 4 of 4 image(s)",
        },
        {
            "output": "decoded[classes]",
            "shape": "1x2535x80",
            "cosine_mean": 0.46,
            "cosine_min": 0.35,
            "sqnr_db_mean": 3.1,
        },
    ]
    for row in rows:
        overridden = row["output"] == OVERRIDDEN_OUTPUT
        row["cosine_threshold"] = OUTPUT_OVERRIDE[0] if overridden else THRESHOLDS["output_cosine"]
        row["sqnr_db_threshold"] = OUTPUT_OVERRIDE[1] if overridden else THRESHOLDS["output_sqnr_db"]
    return rows


def write_full(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "layers.csv").write_text(to_csv(LAYER_CSV, layer_rows(full_cosines())))
    (folder / "outputs.csv").write_text(to_csv(OUTPUT_CSV, output_rows()))
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


ORIGIN = 12  # the diagnosed origin in FULL: the injection-named layer
RANGE_FINDING = f"{INJECTION} (8-bit uint8, step 2.505): 81 of 85 channels never reach one quantization step."
ADVICE_MESSAGE = f"{FULL}: keep 1 layer(s) in float ({INJECTION}): the verified variant passes ['output_cosine']."
PATTERN = "Concat of mixed ranges"


def local_rows() -> list[dict[str, Any]]:
    """local.csv rows of FULL: accumulated (end to end) vs local (fed the reference's inputs) error."""
    rows = []
    for r in layer_rows(full_cosines()):
        i = int(r["index"])
        local_sqnr = 8.0 if i == ORIGIN else 40.0 - (i % 5)
        rows.append(
            {
                "index": i,
                "tensor": r["tensor"],
                "op_type": r["op_type"],
                "cosine": r["cosine_mean"],
                "cosine_local": 0.97 if i == ORIGIN else 0.9999,
                "sqnr_db": r["sqnr_db_mean"],
                "sqnr_db_local": math.inf if i == 0 else local_sqnr,
            }
        )
    return rows


def range_rows() -> list[dict[str, Any]]:
    rows = []
    for r in local_rows()[1:]:
        i = int(r["index"])
        flags = "values below one step" if i == ORIGIN else "clipping" if i == 3 else ""
        rows.append(
            {
                "tensor": r["tensor"],
                "op_type": r["op_type"],
                "bits": 8,
                "dtype": "uint8",
                "scale": "0.0012..0.25" if i == 5 else 0.1 + i / 100,
                "zero_point": 128,
                "axis": 1 if i == 5 else "",
                "representable_min": -12.8,
                "representable_max": 12.7,
                "observed_min": -15.0 if i == 3 else -3.0,
                "observed_max": 14.0 if i == 3 else 3.0,
                "clipped_share": 0.02 if i == 3 else 0.0,
                "rmse_steps": 0.9 if i == 3 else 0.29 + i / 1000,
                "levels_used": 250.0,
                "level_share": 0.98,
                "zeroed_share": 0.95 if i == ORIGIN else 0.01,
                "channels_below_step": 81 if i == ORIGIN else 0,
                "channels": 85 if i == ORIGIN else 16,
                "channel_axis": 1,
                "pattern": PATTERN if i == ORIGIN else "",
                "flags": flags,
            }
        )
    return rows


def sensitivity_rows() -> list[dict[str, Any]]:
    names = (("node_12", INJECTION, "Conv", 8.0), ("node_3", "backbone/block_3/conv", "Conv", 37.0))
    return [
        {
            "rank": rank,
            "node": node,
            "tensor": tensor,
            "op_type": op,
            "local_sqnr_db": sqnr,
            "quick_metric": "output_sqnr_db",
            "quick_float": 31.5 - rank,
            "quick_only": 12.0 + rank,
            "quick_gain": 6.5 / rank,
            "quick_drop": 48.0 - rank,
            "task_metric": "ap" if rank == 1 else "",
            "task_float": 0.2284 if rank == 1 else None,
            "task_only": 0.2112 if rank == 1 else None,
            "task_gain": 0.0172 if rank == 1 else None,
            "task_drop": 0.0172 if rank == 1 else None,
        }
        for rank, (node, tensor, op, sqnr) in enumerate(names, start=1)
    ]


def diagnosis_json() -> dict[str, Any]:
    """diagnosis.json of FULL, in the layout of qc.diagnose.report.summary_json (non-finite floats as strings)."""
    verdict_fail = {"gate": "output_cosine", "passed": False, "message": f"{FULL}: decoded[classes] 0.46 < 0.99"}
    verdict_pass = {"gate": "output_cosine", "passed": True, "message": f"{FULL}-advised: every output passes"}
    return {
        "model": FULL,
        "target_kind": "ort-int8",
        "images": 4,
        "runs_per_image": {"reference_run_all": 1.0, "local": 1.0},
        "failing_gates": ["output_cosine", "layer_cosine"],
        "origins": [
            {
                "index": ORIGIN,
                "tensor": INJECTION,
                "node": "node_12",
                "op_type": "Conv",
                "severity": "collapse",
                "pattern": PATTERN,
                "reasons": [f"worst local SQNR 8.0 dB of {INJECTION} is below the layer cosine threshold 0.9800."],
                "cosine": 0.9,
                "sqnr_db": 24.0,
                "cosine_local": 0.97,
                "sqnr_db_local": 8.0,
                "worst_sqnr_db_local": "-inf",
                "inputs_sqnr_db_local": 39.0,
                "ranges": {"tensor": INJECTION, "flags": ["values below one step"], "findings": [RANGE_FINDING]},
                "followers": ["head/<odd>&name"],
                "slices_local": {
                    "boxes": {"cosine": 0.99999, "sqnr_db": 46.8, "undefined": None},
                    "objectness": {"cosine": "nan", "sqnr_db": "nan", "undefined": "the target tensor is all zeros"},
                },
            }
        ],
        "inherited": [f"{FULL}: 5 layer(s) inherit their error from upstream layers (e.g. {INJECTION})."],
        "sensitivity": {
            "model": FULL,
            "metric": "ap",
            "quick_images": 2,
            "images": 4,
            "baseline_quick": 12.5,
            "reference_quick": 60.0,
            "baseline_task": 0.2112,
            "reference_task": 0.2284,
            "rows": [],
            "seconds": 3.5,
            "variants_quantized": 4,
            "notes": [],
        },
        "advice": {
            "model": FULL,
            "precision": "float",
            "goal": ["output_cosine"],
            "baseline": [verdict_fail],
            "needed": True,
            "layers": ["node_12"],
            "tensors": [INJECTION],
            "candidates": ["node_12", "node_3"],
            "trials": [
                {
                    "layers": ["node_12"],
                    "passed": True,
                    "score": 1.0,
                    "summary": "PASS output_cosine",
                    "verdicts": [verdict_pass],
                }
            ],
            "verification": {
                "name": f"{FULL}-advised",
                "layers": ["node_12"],
                "tensors": [INJECTION],
                "precision": "float",
                "goal": ["output_cosine"],
                "passed": True,
                "verdicts": [verdict_pass],
                "metrics": {"decoded.cosine": 0.999},
                "model_path": "",
            },
            "yaml_entry": f"- name: {FULL}-advised\n",
            "snpe_overrides": {"activation_encodings": {INJECTION: [{"bitwidth": 16, "dtype": "float"}]}},
            "message": ADVICE_MESSAGE,
        },
        "notes": [f"{FULL}: 5 layer(s) inherit their error from upstream layers (e.g. {INJECTION})."],
        "timings": {"comparison_s": 1.5, "local_and_ranges_s": 0.5, "sensitivity_s": 3.5, "advice_s": 2.0},
    }


def write_diagnosis(folder: Path) -> None:
    """The files qc.diagnose.report.write_diagnosis leaves for FULL."""
    (folder / "diagnosis.json").write_text(json.dumps(diagnosis_json(), indent=1))
    (folder / "local.csv").write_text(to_csv(LOCAL_COLUMNS, local_rows()))
    (folder / "ranges.csv").write_text(to_csv(RANGE_COLUMNS, range_rows()))
    (folder / "sensitivity.csv").write_text(to_csv(SENSITIVITY_COLUMNS, sensitivity_rows()))
    (folder / "advised.models.yaml").write_text(f"models:\n  - name: {FULL}-advised\n")
    overrides = {"activation_encodings": {INJECTION: [{"bitwidth": 16, "dtype": "float"}]}}
    (folder / "snpe_overrides.json").write_text(json.dumps(overrides, indent=1))


def write_patterns(root: Path) -> None:
    """patterns.csv across FULL and PARTIAL, through the real grouping of qc.diagnose.report."""
    items = [
        (FULL, [(INJECTION, "Concat", PATTERN, 8.0), ("backbone/block_3/conv", "Conv", "", 37.0)]),
        (PARTIAL, [("backbone/block_1/leakyrelu", "LeakyRelu", "", 41.0), ("head/cat", "Concat", PATTERN, 2.0)]),
    ]
    (root / "patterns.csv").write_text(patterns_csv(pattern_rows(items)))


def write_partial(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    old = tuple(c for c in LAYER_COLUMNS if c != "cosine_threshold")  # from a qc that wrote no threshold column
    (folder / "layers.csv").write_text(to_csv(old, layer_rows([0.9995 - 0.0001 * i for i in range(12)])))


def write_broken(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "layers.csv").write_text(to_csv(LAYER_COLUMNS, []))  # header only
    (folder / "outputs.csv").write_text("")  # empty file
    (folder / "accuracy.json").write_text("{not json")
    (folder / "speed.json").write_text("[1, 2]")
    (folder / "lint.csv").write_text(to_csv(("rule", "severity", "node", "op_type", "what", "why", "fix"), []))
    (folder / "layer_times.csv").write_bytes(b"\xff\xfe\x00garbage")
    (folder / "diagnosis.json").write_text("{not json")
    (folder / "local.csv").write_text("")  # empty file
    (folder / "sensitivity.csv").write_text(to_csv(SENSITIVITY_COLUMNS, []))  # header only


def build_report(root: Path, *, junit: bool = True, summary: bool = True, diagnosis: bool = True) -> Path:
    """The report folder: three models, summary.csv and junit.xml; FULL's diagnosis and patterns.csv."""
    root.mkdir(parents=True, exist_ok=True)
    write_full(model_dir(root, FULL))
    if diagnosis:
        write_diagnosis(model_dir(root, FULL))
        write_patterns(root)
    write_partial(model_dir(root, PARTIAL))
    write_broken(model_dir(root, BROKEN))
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
