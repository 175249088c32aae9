"""The report formats as the documentation states them, checked on the files of a REAL `pytest benchmarks` run.

Every expectation here is a literal written from README.md ("What a run leaves in `reports/`") and docs/, never
imported from qc's own constants: renaming a documented column, key, property or file turns this module red even
when the code and its unit tests were changed together. The run happens once per session, in a subprocess, on a
tiny project with two models: an ``ort-int8`` target (the embedded default) and a ``kind: snpe`` target on a
local device with the fake SNPE toolkit (so that ``tensor_map.csv`` and the accuracy artifacts are written too).
Its dashboard is then opened in headless Chromium: no console error, every chart drawn, no request off the machine.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.fake_snpe import install
from tests.integration.report.test_dashboard_browser import (
    TIMEOUT,
    Browser,
    Cdp,
    WebSocket,
    check_offline,
    start_chromium,
    stop,
)
from tests.integration.snpe.helpers import make_assets
from tests.models import tiny_detector, write_images

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"

# ------------------------------------------------------------------------------------ the documented contract
# README.md, "What a run leaves in `reports/`": the files of the report folder and of each model's folder.
TOP_FILES = ("index.html", "plotly.min.js", "junit.xml", "summary.csv", "history.sqlite", "run.json", "durations.json")
MODEL_FILES = (
    "index.html",
    "layers.csv",
    "outputs.csv",
    "unmatched.csv",
    "speed.json",
    "layer_times.csv",
    "op_types.csv",
    "lint.csv",
)
ACCURACY_FILES = ("accuracy.json", "detections_reference.json", "detections_target.json")  # + pictures/*.png
SNPE_FILES = ("tensor_map.csv",)  # "for SNPE the ONNX<->DLC name and layout mapping"

METRICS = ("cosine_mean", "cosine_min", "sqnr_db_mean", "sqnr_db_min", "mse_mean", "max_abs", "undefined")
# `<model>/layers.csv`: the README lists these columns literally. `cosine_threshold` (the threshold the gate applied
# to the row) was added after the metric columns: the README table must list it too, before `input_independent`
# (README: tensors no graph input reaches, the same on every image, are marked so and not gated).
LAYERS_CSV = ("index", "tensor", "op_type", "shape", "target_tensor", *METRICS, "cosine_threshold", "input_independent")
# `<model>/outputs.csv`: "the same metrics per output and per named slice (`output` = `tensor` or `tensor[slice]`)";
# `cosine_threshold` and `sqnr_db_threshold` are being added: the README table must list them too.
OUTPUTS_CSV = ("output", "shape", *METRICS, "cosine_threshold", "sqnr_db_threshold")
UNMATCHED_CSV = ("tensor", "op_type", "reason")  # "reference tensors with no target counterpart (and why)"
# "for SNPE the ONNX<->DLC name and layout mapping"
TENSOR_MAP_CSV = ("reference", "reference_shape", "target", "target_shape", "how", "permutation", "layout", "reason")
# "one row per model: each gate's outcome and the headline metrics": the fixed leading columns are the model, its
# target, the image count and every gate of the README's gate table, in that table's order.
GATES = (
    "layer_cosine",
    "output_cosine",
    "output_sqnr",
    "map_drop",
    "map50_drop",
    "agreement_ap",
    "miou_drop",
    "mask_agreement",
    "top1_drop",
    "top1_agreement",
    "oks_ap_drop",
    "keypoint_agreement",
    "mask_ap_drop",
    "instance_mask_agreement",
    "fps",
    "lint",
    "baseline",
)
SUMMARY_CSV_HEAD = ("model", "target", "images", *GATES)
OUTCOMES = {"", "passed", "failed", "xfailed", "xpassed(strict)", "skipped", "error"}
LAYER_TIMES_CSV = ("layer", "op_type", "time", "unit", "share")  # "per-layer time and share"
OP_TYPES_CSV = ("op_type", "time", "unit", "share", "layers")  # "per-op-type share"
# "rule, severity, node, what, why, fix, measured time share" (plus the node's op type)
LINT_CSV = ("rule", "severity", "node", "op_type", "what", "why", "fix", "time_share")

# `<model>/accuracy.json`: "COCO AP/AP50/AP75/AR100 of both sides, the drop, agreement AP, per-class AP"
ACCURACY_KEYS = {
    "images",
    *(f"{side}.{key}" for side in ("reference", "target") for key in ("ap", "ap50", "ap75", "ar100", "per_class_ap")),
    "drop.ap",
    "drop.ap50",
    "agreement_ap",
}
# detections "in COCO results format"
DETECTION_KEYS = {"image_id", "category_id", "bbox", "score"}
# `<model>/speed.json`: "FPS and latency p50/p90/p99 of target and reference ... profiler overhead"
SPEED_SIDE_KEYS = {"fps", "latency_ms_p50", "latency_ms_p90", "latency_ms_p99"}
SPEED_KEYS = {"target", "reference", "profiling_overhead"}
# `junit.xml`: "one test case per model and gate ... with the key metrics as properties and `qc_model_page`"
# Model folders: "models/<model>/" (README: model folders live under `models/`, apart from the run's own files)
MODELS = "models"
JUNIT_PROPERTIES = {"qc_model", "qc_gate", "qc_target", "qc_model_page"}

# ------------------------------------------------------------------------------------------- the real run
TINY = "tiny-a16"
SNPE = "tiny-yolov6-snpe"
MODELS_YAML = """\
devices:
  - name: local-fake
    local: true
    remote_root: {remote}
    setup: "export PATH={bin}:$PATH"
    env: {{FAKE_SNPE_LOG: {log}}}
models:
  - name: {tiny}
    reference: tiny.onnx
    target: {{kind: ort-int8, activation_bitwidth: 16}}
    preprocess: {{size: [32, 32], mode: letterbox}}
    eval_data: {{folder: eval}}
    calibration: {{folder: calib}}
    outputs:
      pred: {{slices: {{boxes: {{axis: 1, start: 0, stop: 4}}, scores: {{axis: 1, start: 4}}}}}}
    speed: {{rounds: 5, warmup: 1, profile_runs: 2}}
    thresholds: {{layer_cosine: 0.95, output_cosine: 0.96, output_sqnr_db: 10}}
  - name: {snpe}
    reference: {assets}/model.onnx
    target: {{kind: snpe, dlc: {assets}/model.dlc, devices: [local-fake], batch_size: 2, throughput_duration_s: 1}}
    preprocess: {{size: [64, 96], mode: letterbox}}
    eval_data: {{coco: {{annotations: {assets}/eval/annotations.json, images: {assets}/eval}}}}
    outputs:
      output1_yolov6r2: {{slices: {{boxes: {{axis: 1, start: 0, stop: 4}}, classes: {{axis: 1, start: 5}}}}}}
    task:
      decoder: yolov6r2
      outputs: [output1_yolov6r2, output2_yolov6r2, output3_yolov6r2]
      layout: NCHW
      class_names: [person, car]
      pictures: 1
    speed: {{rounds: 3, warmup: 1, profile_runs: 2}}
    thresholds: {{layer_cosine: 0.9, output_cosine: 0.9, output_sqnr_db: 5, min_fps: 1, min_agreement_ap: 0.1,
                  max_map_drop: 0.5, max_map50_drop: 0.5}}
    lint: {{max_severity: error}}
"""
THRESHOLDS = {TINY: {"cosine": 0.95, "output_cosine": 0.96, "sqnr_db": 10.0}}


@dataclass(frozen=True)
class Run:
    folder: Path
    reports: Path
    proc: subprocess.CompletedProcess[str] = field(repr=False)  # failure messages stay short


@pytest.fixture(scope="session")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """`pytest benchmarks` once, in a subprocess, as a user runs it (with a JUnit file in the report folder)."""
    folder = tmp_path_factory.mktemp("contract")
    tiny_detector(folder / "tiny.onnx")
    write_images(folder / "eval", 3, seed=1)
    write_images(folder / "calib", 4, seed=1)
    assets = folder / "snpe"
    assets.mkdir()
    make_assets(assets)
    (folder / "models.yaml").write_text(
        MODELS_YAML.format(
            remote=json.dumps(str(folder / "device root")),
            bin=install(folder / "fake-snpe-bin"),
            log=folder / "calls.jsonl",
            tiny=TINY,
            snpe=SNPE,
            assets=assets,
        )
    )
    reports = folder / "reports"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "QC_CACHE"))}
    env["QC_CACHE_DIR"] = str(folder / "qc-cache")  # device locks and the dlc-info cache stay in the test
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
        str(reports),
        "--qc-cache-dir",
        str(folder / "cache"),
        "--junitxml",
        str(reports / "junit.xml"),
    ]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900, check=False)
    return Run(folder, reports, proc)


def header(path: Path) -> tuple[str, ...]:
    with path.open(newline="") as f:
        return tuple(next(csv.reader(f)))


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_the_run_is_green(run: Run) -> None:
    assert run.proc.returncode == 0, run.proc.stdout[-6000:] + run.proc.stderr[-3000:]


# ------------------------------------------------------------------------------------------- file names
def test_report_file_names(run: Run) -> None:
    missing = [name for name in TOP_FILES if not (run.reports / name).is_file()]
    folders = run.reports / MODELS
    for model in (TINY, SNPE):
        missing += [f"{MODELS}/{model}/{name}" for name in MODEL_FILES if not (folders / model / name).is_file()]
    snpe_only = (*ACCURACY_FILES, *SNPE_FILES)
    missing += [f"{MODELS}/{SNPE}/{name}" for name in snpe_only if not (folders / SNPE / name).is_file()]
    assert missing == [], f"documented report files missing from {run.reports}: {missing}"
    pictures = run.reports / MODELS / SNPE / "pictures"
    assert list(pictures.glob("*.png")), f"{SNPE}/pictures/ holds no side-by-side picture"


# ------------------------------------------------------------------------------------------- CSV columns
@pytest.mark.parametrize(
    ("name", "columns"),
    [
        ("layers.csv", LAYERS_CSV),
        ("outputs.csv", OUTPUTS_CSV),
        ("unmatched.csv", UNMATCHED_CSV),
        ("layer_times.csv", LAYER_TIMES_CSV),
        ("op_types.csv", OP_TYPES_CSV),
        ("lint.csv", LINT_CSV),
    ],
)
@pytest.mark.parametrize("model", [TINY, SNPE])
def test_model_csv_columns(run: Run, model: str, name: str, columns: tuple[str, ...]) -> None:
    path = run.reports / MODELS / model / name
    assert path.is_file(), f"{path} was not written"
    assert header(path) == columns, f"{path}: documented columns {columns}, found {header(path)}"


def test_tensor_map_columns(run: Run) -> None:
    path = run.reports / MODELS / SNPE / "tensor_map.csv"
    assert header(path) == TENSOR_MAP_CSV, f"{path}: documented columns {TENSOR_MAP_CSV}, found {header(path)}"
    assert rows(path), f"{path} maps no tensor"


def test_csv_rows_carry_the_documented_meaning(run: Run) -> None:
    layers = rows(run.reports / MODELS / TINY / "layers.csv")
    assert layers, "layers.csv has no row"
    indices = [int(r["index"]) for r in layers]
    assert indices == sorted(set(indices)), f"layers.csv rows are not in topological order: {indices}"
    assert all(r["cosine_threshold"] and float(r["cosine_threshold"]) == THRESHOLDS[TINY]["cosine"] for r in layers)
    outputs = {r["output"]: r for r in rows(run.reports / MODELS / TINY / "outputs.csv")}
    assert set(outputs) == {"pred", "pred[boxes]", "pred[scores]"}  # `tensor` or `tensor[slice]`
    for name, row in outputs.items():
        assert float(row["cosine_threshold"]) == THRESHOLDS[TINY]["output_cosine"], name
        assert float(row["sqnr_db_threshold"]) == THRESHOLDS[TINY]["sqnr_db"], name
    shares = [float(r["share"]) for r in rows(run.reports / MODELS / TINY / "op_types.csv")]
    assert abs(sum(shares) - 1.0) < 1e-3, f"op_types.csv shares sum to {sum(shares)}"


def test_summary_csv(run: Run) -> None:
    path = run.reports / "summary.csv"
    columns = header(path)
    assert columns[: len(SUMMARY_CSV_HEAD)] == SUMMARY_CSV_HEAD, f"{path}: leading columns {columns}"
    table = {r["model"]: r for r in rows(path)}
    assert set(table) == {TINY, SNPE}  # one row per model
    assert table[TINY]["target"] == "ort-int8"
    assert table[SNPE]["target"] == "snpe"
    for model, row in table.items():
        odd = {g: row[g] for g in GATES if row[g] not in OUTCOMES}
        assert odd == {}, f"{path}: {model} has gate cells that are not outcomes: {odd}"
    assert table[TINY]["layer_cosine"] == "passed"
    assert table[SNPE]["map_drop"] == "passed"


# ------------------------------------------------------------------------------------------- JSON keys
def test_accuracy_json(run: Run) -> None:
    data: dict[str, Any] = json.loads((run.reports / MODELS / SNPE / "accuracy.json").read_text())
    assert set(data) >= ACCURACY_KEYS, f"accuracy.json lacks {sorted(ACCURACY_KEYS - set(data))}"
    assert data["images"] == 3
    for key in ("reference.ap", "target.ap", "drop.ap", "agreement_ap"):
        assert isinstance(data[key], float), f"accuracy.json {key} = {data[key]!r}"
    assert isinstance(data["reference.per_class_ap"], dict)
    for name in ("detections_reference.json", "detections_target.json"):
        dets = json.loads((run.reports / MODELS / SNPE / name).read_text())
        assert dets, f"{name} is empty"
        assert all(set(d) == DETECTION_KEYS for d in dets), f"{name}: not COCO results format: {dets[0]}"


@pytest.mark.parametrize("model", [TINY, SNPE])
def test_speed_json(run: Run, model: str) -> None:
    data: dict[str, Any] = json.loads((run.reports / MODELS / model / "speed.json").read_text())
    assert set(data) >= SPEED_KEYS, f"{model}/speed.json lacks {sorted(SPEED_KEYS - set(data))}"
    for side in ("target", "reference"):
        assert isinstance(data[side], dict), f"{model}/speed.json: {side} = {data[side]!r}"
        lacking = SPEED_SIDE_KEYS - set(data[side])
        assert not lacking, f"{model}/speed.json {side} lacks {sorted(lacking)}"
        assert data[side]["fps"] > 0


# ------------------------------------------------------------------------------------------- JUnit
def test_junit_properties(run: Run) -> None:
    cases = list(ET.parse(run.reports / "junit.xml").getroot().iter("testcase"))
    assert cases
    per_model: dict[str, set[str]] = {}
    for case in cases:
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        lacking = JUNIT_PROPERTIES - set(props)
        assert not lacking, f"junit.xml {case.get('name')}: lacks properties {sorted(lacking)}"
        model = str(props["qc_model"])
        assert case.get("name", "").endswith(f"[{model}]"), case.get("name")
        assert props["qc_model_page"] == f"models/{model}/index.html"
        assert (run.reports / str(props["qc_model_page"])).is_file()
        assert props["qc_gate"] in GATES
        per_model.setdefault(model, set()).add(str(props["qc_gate"]))
    assert per_model[TINY] == {"layer_cosine", "output_cosine", "output_sqnr", "fps", "lint"}
    other_tasks = {  # the SNPE entry is a detector: no other task kind's gates
        "miou_drop",
        "mask_agreement",
        "top1_drop",
        "top1_agreement",
        "oks_ap_drop",
        "keypoint_agreement",
        "mask_ap_drop",
        "instance_mask_agreement",
    }
    assert per_model[SNPE] == {*GATES} - {"baseline"} - other_tasks
    targets = {p.get("value") for c in cases for p in c.iter("property") if p.get("name") == "qc_target"}
    assert targets == {"ort-int8", "snpe"}


# ------------------------------------------------------------------------------------------- the README itself
def readme_row(first_cell: str) -> str:
    for line in README.read_text().splitlines():
        if line.startswith(f"| {first_cell} |"):
            return line
    raise AssertionError(f"README.md: no row starting with {first_cell!r} in the reports table")


def test_readme_table_states_this_contract() -> None:
    """The README table and this module say the same: layers.csv columns literally, and every file name."""
    listed = tuple(re.findall(r"[a-z_]+", readme_row("`models/<model>/layers.csv`").split("|")[2]))
    assert listed == LAYERS_CSV, f"README.md lists layers.csv columns {listed}; the contract is {LAYERS_CSV}"
    outputs = readme_row("`models/<model>/outputs.csv`")
    for column in ("cosine_threshold", "sqnr_db_threshold"):
        assert column in outputs, f"README.md: the outputs.csv row does not mention {column}"
    text = README.read_text()
    for name in (*TOP_FILES, *MODEL_FILES, *ACCURACY_FILES, *SNPE_FILES, "pictures/"):
        assert f"`{name}`" in text or f"`models/<model>/{name}`" in text or f", {name}`" in text, name


# ------------------------------------------------------------------------------------------- the dashboard
@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    base = tmp_path_factory.mktemp("chromium")
    proc, log = start_chromium(base / "profile")
    port_file = base / "profile" / "DevToolsActivePort"
    deadline = time.monotonic() + TIMEOUT
    try:
        while not (port_file.is_file() and len(port_file.read_text().splitlines()) >= 2):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"Chromium did not open its DevTools port; its output:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)
        port, path = port_file.read_text().splitlines()[:2]
        ws = WebSocket(f"ws://127.0.0.1:{port}{path}", TIMEOUT)
        try:
            yield Browser(Cdp(ws))
        finally:
            ws.close()
    finally:
        stop(proc)


@pytest.mark.parametrize("page", ["index.html", f"models/{TINY}/index.html", f"models/{SNPE}/index.html"])
def test_dashboard_of_the_real_run_renders_offline(run: Run, browser: Browser, page: str) -> None:
    loaded = browser.load((run.reports / page).as_uri())
    check_offline(loaded, run.reports)
    if page != "index.html":
        # per model: per-layer cosine/SQNR, outputs, per-layer time, op-type share (README's dashboard row)
        assert loaded.stats["charts"] >= 4, loaded.stats
