"""The ``snpe`` target end to end: real OpenSSH (tests/sshd.py), the fake SNPE toolkit (tests/fake_snpe), qc's runner.

A missing sshd fails these tests (tests/sshd.py never skips).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from qc.assets import AssetPaths
from qc.errors import DeviceError, ParseError
from qc.runners.ort import OrtRunner
from qc.snpe.runner import SnpeRunner
from tests.integration.snpe.conftest import FAKE_VERSIONS, DeviceFactory, RunnerFactory, SnpeAssets, tool_calls
from tests.integration.snpe.helpers import OUTPUTS
from tests.sshd import SshdServer

REPO = Path(__file__).resolve().parents[3]
NASTY = "dev root 'q\"uote; touch INJECTED $(touch INJECTED2) `touch INJECTED3`"


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def remote_entries(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


# --------------------------------------------------------------------------------------------- every gate, e2e

MODELS_YAML = """\
devices:
  - name: rvc4-fake
    host: 127.0.0.1
    port: {port}
    user: {user}
    auth: {{key_file: {key}}}
    known_hosts: {known_hosts}
    remote_root: {remote}
    setup: "export PATH={bin}:$PATH"
    env: {{FAKE_SNPE_LOG: {log}, FAKE_SNPE_VERSION: {version}}}
    runtime: dsp
    perf_profile: burst
models:
  - name: tiny-yolov6-snpe
    reference: {assets}/model.onnx
    target: {{kind: snpe, dlc: {assets}/model.dlc, devices: [rvc4-fake], batch_size: 2, throughput_duration_s: 1}}
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
    speed: {{rounds: 3, warmup: 1, profile_runs: 3}}
    thresholds: {{layer_cosine: 0.99, output_cosine: 0.99, output_sqnr_db: 20, min_fps: 1, min_agreement_ap: 0.3,
                  max_map_drop: 0.1, max_map50_drop: 0.05}}
"""


@pytest.mark.parametrize("version", FAKE_VERSIONS)
def test_every_gate_runs_through_sshd_and_the_fake_toolkit(
    sshd_server: SshdServer, snpe_assets: SnpeAssets, tmp_path: Path, version: str
) -> None:
    remote = tmp_path / "device root"
    log = tmp_path / "calls.jsonl"
    (tmp_path / "models.yaml").write_text(
        MODELS_YAML.format(
            port=sshd_server.port,
            user=sshd_server.user,
            key=sshd_server.client_key,
            known_hosts=sshd_server.known_hosts,
            remote=json.dumps(str(remote)),
            bin=snpe_assets.bin,
            log=log,
            assets=snpe_assets.folder,
            version=version,
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "QC_CACHE"))}
    env["QC_CACHE_DIR"] = str(tmp_path / "qc-cache")  # device locks and the dlc-info cache stay in the test
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        str(REPO / "benchmarks"),
        "-p",
        "no:cacheprovider",
        "--qc-models",
        str(tmp_path / "models.yaml"),
        "--qc-report-dir",
        str(tmp_path / "reports"),
        "--qc-cache-dir",
        str(tmp_path / "cache"),
        "--qc-no-history",
        "-v",
        "-n",
        "2",  # two workers lease the one device in turn (file locks under $QC_CACHE_DIR/devices)
    ]
    run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, check=False, env=env)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    for gate in (
        "layer_cosine",
        "output_cosine",
        "output_sqnr",
        "map_drop",
        "map50_drop",
        "agreement_ap",
        "fps",
        "lint",
    ):
        passed = [line for line in out.splitlines() if "PASSED" in line and f"::test_{gate}[tiny-yolov6-snpe]" in line]
        assert passed, f"{gate}\n{out}"
    report = tmp_path / "reports" / "models" / "tiny-yolov6-snpe"
    with (report / "tensor_map.csv").open() as f:
        tmap = {r["reference"]: r for r in csv.DictReader(f)}
    assert tmap["output1_yolov6r2"]["permutation"] == "0,3,1,2"
    assert tmap["output1_yolov6r2"]["target_shape"] == "1x8x12x7"
    assert tmap["/backbone/stage1/Conv_output_0"]["layout"] == "op"  # 16 channels at 16x24: decided by the op
    assert "ambiguous layout" in tmap["/detect/Reshape_dbg_output_0"]["reason"]
    with (report / "unmatched.csv").open() as f:
        unmatched = {r["tensor"]: r["reason"] for r in csv.DictReader(f)}
    assert list(unmatched) == ["/detect/Reshape_dbg_output_0"]
    with (report / "layers.csv").open() as f:
        layers = list(csv.DictReader(f))
    assert len(layers) == 32  # every tensor but the ambiguous one, the input included
    assert all(float(r["cosine_mean"]) > 0.99 for r in layers)
    speed = json.loads((report / "speed.json").read_text())
    assert "snpe-throughput-net-run --use_dsp" in speed["target"]["source"]
    assert speed["target"]["fps"] > 1
    with (report / "layer_times.csv").open() as f:
        times = list(csv.DictReader(f))
    assert {r["unit"] for r in times} == {"cycles"}
    assert {r["op_type"] for r in times} >= {"Conv2d", "Relu", "Sigmoid", "Eltwise_Binary:MULTIPLY", "Concat"}
    assert "?" not in {r["op_type"] for r in times}  # every diagview row matched to a dlc-info layer by name
    assert not [r for r in times if "OpId" in r["layer"] or r["layer"].startswith(("Input", "Output"))]
    assert sum(float(r["share"]) for r in times) == pytest.approx(1.0)
    if version == "qairt-2.37":  # HTP transfers: an I/O line in speed.json, never a layer
        assert [t["layer"] for t in speed["io_transfers"]] == ["Input OpId_2", "Output OpId_3"]
        assert speed["io_time_total"] > max(float(r["time"]) for r in times)  # the fake's Output is the biggest row
    else:
        assert speed["io_transfers"] == []
    with (report / "lint.csv").open() as f:
        lint_rows = list(csv.DictReader(f))
    assert lint_rows
    assert all(r["time_share"] for r in lint_rows)  # shares measured by snpe-diagview on the device
    accuracy = json.loads((report / "accuracy.json").read_text())
    assert accuracy["images"] == 3  # hand-written boxes on a random model: AP is checked on the demo detector below
    assert accuracy["agreement_ap"] >= 0.3
    # The device: every run folder removed; the tools got the flags qc promises.
    assert remote_entries(remote) == []
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    net_runs = [c for c in calls if c["tool"] == "snpe-net-run"]
    assert all(
        "--use_dsp" in c["argv"] and c["argv"][c["argv"].index("--perf_profile") + 1] == "burst" for c in net_runs
    )
    assert max(c["inputs"] for c in net_runs if "--profiling_level" not in c["argv"]) == 2  # batch_size
    debug_runs = [c for c in net_runs if "--debug" in c["argv"]]
    assert [c["inputs"] for c in debug_runs] == [2, 1]  # 3 images in batches of 2
    final_runs = [c for c in net_runs if "--debug" not in c["argv"] and "--profiling_level" not in c["argv"]]
    assert all(
        {"--use_native_input_files", "--use_native_output_files", "--userbuffer_auto"} <= set(c["argv"])
        for c in final_runs
    )
    throughput = [c for c in calls if c["tool"] == "snpe-throughput-net-run"]
    assert throughput
    assert throughput[0]["argv"][throughput[0]["argv"].index("--duration") + 1] == "1"
    assert any(c["tool"] == "snpe-diagview" and "--csv_format_version" in c["argv"] for c in calls)
    assert any(c["tool"] == "snpe-dlc-info" for c in calls)  # not on the host's PATH: ran on the device
    assert list((tmp_path / "qc-cache" / "devices").glob("rvc4-fake-*.lock"))


def test_warm_cache_needs_no_device(
    snpe_device: DeviceFactory, snpe_assets: SnpeAssets, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In-process through ModelStages: the comparison and accuracy are cached (key: the DLC's sha256), the
    dlc-info text too, so a second run contacts no device at all; tensor_map.csv is written again from the cache."""
    from qc.cache import StageCache
    from qc.config import ModelSpec
    from qc.pipeline import Context, ModelStages

    device = snpe_device()
    spec = ModelSpec.model_validate(
        {
            "name": "tiny-snpe",
            "reference": snpe_assets.model,
            "target": {"kind": "snpe", "dlc": snpe_assets.dlc, "devices": [device.name], "batch_size": 3},
            "preprocess": {"size": [64, 96]},
            "eval_data": {"coco": {"annotations": snpe_assets.annotations, "images": snpe_assets.eval}},
            "task": {"decoder": "yolov6r2", "outputs": list(OUTPUTS), "class_names": ["person", "car"]},
        }
    )

    def stages(report: str) -> ModelStages:
        ctx = Context(
            StageCache(tmp_path / "cache"), tmp_path / report, devices=(device,), device_lock_dir=tmp_path / "locks"
        )
        return ModelStages(spec, ctx)

    first = stages("r1")
    cold = first.comparison()
    first.accuracy()
    assert isinstance(first.target(), SnpeRunner)
    first.close()
    assert remote_entries(tmp_path / "device") == []
    assert (tmp_path / "r1" / "models" / "tiny-snpe" / "tensor_map.csv").is_file()
    calls = len(tool_calls(tmp_path))

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("a warm cache must not contact the device")

    monkeypatch.setattr(SnpeRunner, "session", forbidden)
    second = stages("r2")
    assert second.comparison().to_json() == cold.to_json()
    second.accuracy()
    assert len(tool_calls(tmp_path)) == calls
    assert (tmp_path / "r2" / "models" / "tiny-snpe" / "tensor_map.csv").read_text() == (
        tmp_path / "r1" / "models" / "tiny-snpe" / "tensor_map.csv"
    ).read_text()


def test_demo_detector_on_its_labelled_photos_scores_the_documented_ap(
    snpe_device: DeviceFactory, demo_assets: AssetPaths, tmp_path: Path
) -> None:
    """The demo YOLOv3-tiny as a fake DLC (8-bit activations, box decoding in float) on the 4 labelled demo photos
    (annotations.json: human labels, COCO ids): the reference AP is the figure docs/results.md documents (0.2284),
    computed against labels qc did not make; the target through SSH and the fake toolkit stays close to it."""
    from qc.cache import StageCache
    from qc.config import ModelSpec
    from qc.pipeline import Context, ModelStages
    from tests.integration.snpe.helpers import DEMO_MODEL, DEMO_PREPROCESS, demo_dlc

    root = demo_assets.root
    dlc = demo_dlc(root, tmp_path / "yolov3-tiny.dlc")
    device = snpe_device()
    spec = ModelSpec.model_validate(
        {
            "name": "demo-snpe",
            "reference": root / DEMO_MODEL,
            "target": {"kind": "snpe", "dlc": dlc, "devices": [device.name], "batch_size": 4},
            "preprocess": DEMO_PREPROCESS,
            "eval_data": {
                "coco": {"annotations": root / "eval" / "annotations.json", "images": root / "eval" / "images"}
            },
            "task": {
                "decoder": "yolo-decoded",
                "outputs": ["yolo_decoded"],
                "class_names": root / "darknet" / "coco.names",
            },
        }
    )
    ctx = Context(
        StageCache(tmp_path / "cache"), tmp_path / "reports", devices=(device,), device_lock_dir=tmp_path / "locks"
    )
    stages = ModelStages(spec, ctx)
    try:
        result, _ref, _tgt = stages.accuracy()
        assert isinstance(stages.target(), SnpeRunner)
    finally:
        stages.close()
    assert result.images == 4
    assert result.reference is not None
    assert result.target is not None
    assert result.reference.ap == pytest.approx(0.2284, abs=1e-3)
    # 8-bit activations, float decoding: measured drop -0.004, agreement 0.893 (deterministic). A "device" that
    # scales one tensor by 0.8 (FAKE_SNPE_FAULT=perturb=convolutional_13: drop 0.019; perturb=head_13: agreement
    # 0.862) fails one of the two bounds.
    assert abs(result.drop("ap")) < 0.01
    assert result.target.num_detections > 0
    assert 0.87 < result.agreement.ap < 1.0  # quantized: close to the reference, never identical
    net_runs = [c for c in tool_calls(tmp_path) if c["tool"] == "snpe-net-run"]
    assert [c["inputs"] for c in net_runs] == [4]  # the 4 photos in one call, through SSH
    assert remote_entries(tmp_path / "device") == []


# --------------------------------------------------------------------------------------------- data path


@pytest.mark.parametrize("fake_version", FAKE_VERSIONS, indirect=True)
def test_outputs_come_back_in_the_onnx_layout_and_close_to_the_reference(
    snpe_device: DeviceFactory,
    snpe_runner: RunnerFactory,
    snpe_assets: SnpeAssets,
    reference: OrtRunner,
    tmp_path: Path,
) -> None:
    runner = snpe_runner(snpe_device(), batch_size=2)
    feeds = snpe_assets.feeds()
    with runner.session():
        finals = runner.run_batch(feeds)
        debug = runner.run_all_batch(feeds)
    for feed, final, everything in zip(feeds, finals, debug, strict=True):
        ref_all = reference.run_all(feed)
        assert set(final) == set(OUTPUTS)
        for name in OUTPUTS:
            assert final[name].shape == ref_all[name].shape
            assert cosine(final[name], ref_all[name]) > 0.999
        for m in runner.tensor_map():
            if m.target is None:
                continue
            assert everything[m.target].shape == ref_all[m.reference.name].shape, m.reference.name
            assert cosine(everything[m.target], ref_all[m.reference.name]) > 0.99, m.reference.name
    assert len(runner.run_dirs) == 1  # one session: one run folder, the DLC uploaded once
    calls = tool_calls(tmp_path)
    assert [c["inputs"] for c in calls if c["tool"] == "snpe-net-run"] == [2, 1, 2, 1]


def test_remote_root_with_spaces_quotes_and_semicolons(
    snpe_device: DeviceFactory,
    snpe_runner: RunnerFactory,
    snpe_assets: SnpeAssets,
    reference: OrtRunner,
    tmp_path: Path,
    sshd_server: SshdServer,
) -> None:
    root = tmp_path / NASTY
    runner = snpe_runner(snpe_device(remote_root=str(root)), batch_size=2)
    feeds = snpe_assets.feeds()[:2]
    with runner.session():
        outs = runner.run_batch(feeds)
        alls = runner.run_all_batch(feeds)
    profile = runner.layer_times(feeds[0], runs=2)  # diagview, on the device, in the nasty folder
    assert profile.rows
    assert cosine(outs[1]["output2_yolov6r2"], reference.run(feeds[1])["output2_yolov6r2"]) > 0.999
    assert "/detect/reg_preds.1/Conv_output_0" in alls[0]  # a nested debug folder under the nasty root
    assert runner.run_dirs[0].path.startswith(str(root) + "/qc-")
    assert remote_entries(root) == [Path(runner.run_dirs[0].path).name]
    runner.close()
    assert root.is_dir()
    assert remote_entries(root) == []  # the run folder was removed, nothing else was created
    home = Path(os.path.expanduser(f"~{sshd_server.user}"))
    for where in (tmp_path, home, Path("/")):
        assert not any((where / n).exists() for n in ("INJECTED", "INJECTED2", "INJECTED3")), where


def test_run_dir_holds_the_dlc_across_stages_and_is_removed_at_close(
    snpe_device: DeviceFactory, snpe_runner: RunnerFactory, snpe_assets: SnpeAssets, tmp_path: Path
) -> None:
    runner = snpe_runner(snpe_device())
    with runner.session() as sess:
        runner.run(snpe_assets.feeds()[0])
        inside = Path(sess.rundir.path)
        assert (inside / "model.dlc").is_file()
        assert not list(inside.glob("b*"))  # each batch folder is removed once its results are back
    stamp = (inside / "model.dlc").stat().st_mtime_ns
    runner.speed(snpe_assets.feeds()[0])  # a second stage: another lease, the same folder, no second upload
    assert (inside / "model.dlc").stat().st_mtime_ns == stamp
    assert len(runner.run_dirs) == 1
    runner.close()
    assert not inside.exists()
    assert runner.run_dirs[0].removed
    assert not runner.run_dirs[0].failed
    assert remote_entries(tmp_path / "device") == []


@pytest.mark.parametrize("keep", [True, False])
def test_run_dir_is_kept_after_a_failure_only_with_keep_on_failure(
    snpe_device: DeviceFactory, snpe_runner: RunnerFactory, snpe_assets: SnpeAssets, keep: bool
) -> None:
    runner = snpe_runner(snpe_device(env={"FAKE_SNPE_FAULT": "missing_output"}), keep_on_failure=keep)
    with pytest.raises(DeviceError):
        runner.run(snpe_assets.feeds()[0])
    runner.close()
    record = runner.run_dirs[-1]
    assert record.failed
    assert record.kept is keep
    assert Path(record.path).exists() is keep
    if keep:  # what failed is there to inspect: the DLC, the inputs, the outputs
        assert (Path(record.path) / "model.dlc").is_file()
        assert list(Path(record.path).glob("b0001/out/Result_0"))


# --------------------------------------------------------------------------------------------- faults


def test_missing_output_file_is_an_error_naming_file_tensor_and_size(
    snpe_device: DeviceFactory, snpe_runner: RunnerFactory, snpe_assets: SnpeAssets
) -> None:
    runner = snpe_runner(snpe_device(env={"FAKE_SNPE_FAULT": "missing_output"}))
    with pytest.raises(DeviceError) as err:
        runner.run(snpe_assets.feeds()[0])
    text = str(err.value)
    assert "wrote no file for output 'output1_yolov6r2'" in text
    assert "Result_0/output1_yolov6r2.raw (672 bytes = 1x8x12x7 x uFxp_8)" in text
    assert "127.0.0.1" in text


def test_output_file_of_the_wrong_size_is_never_accepted(
    snpe_device: DeviceFactory, snpe_runner: RunnerFactory, snpe_assets: SnpeAssets
) -> None:
    runner = snpe_runner(snpe_device(env={"FAKE_SNPE_FAULT": "short_output"}))
    with pytest.raises(DeviceError) as err:
        runner.run(snpe_assets.feeds()[0])
    text = str(err.value)
    assert "has 336 bytes" in text
    assert "tensor 'output1_yolov6r2' of dims 1x8x12x7 as uFxp_8 needs 672" in text


def test_float_outputs_are_checked_against_float32_size(
    snpe_device: DeviceFactory, snpe_runner: RunnerFactory, snpe_assets: SnpeAssets
) -> None:
    runner = snpe_runner(snpe_device(env={"FAKE_SNPE_FAULT": "short_output"}), native_io=False)
    with pytest.raises(DeviceError, match=r"has 1344 bytes.*as Float_32 needs 2688"):
        runner.run(snpe_assets.feeds()[0])


@pytest.mark.parametrize(
    ("fault", "tool", "line"),
    [
        ("bad_throughput", "snpe-throughput-net-run", "Total throughput: fast infs/sec"),
        ("bad_dlcinfo", "snpe-dlc-info", "dimension 'x' is not an integer (line 119: '| 16 | /detect/Concat_0 "),
        ("bad_diagview", "snpe-diagview", "backbone/stem/Relu:OpId_20 (cycles),lots,cycles"),
    ],
)
def test_unparsable_tool_output_names_the_tool_and_shows_the_line(
    snpe_device: DeviceFactory,
    snpe_runner: RunnerFactory,
    snpe_assets: SnpeAssets,
    fault: str,
    tool: str,
    line: str,
) -> None:
    runner = snpe_runner(snpe_device(env={"FAKE_SNPE_FAULT": fault}))
    feed = snpe_assets.feeds()[0]
    calls: dict[str, Callable[[], object]] = {
        "bad_throughput": lambda: runner.speed(feed),
        "bad_dlcinfo": runner.tensor_map,
        "bad_diagview": lambda: runner.layer_times(feed, runs=2),
    }
    with pytest.raises(ParseError) as err:
        calls[fault]()
    text = str(err.value)
    assert text.startswith("tiny (target): " + tool)
    assert line in text
    assert "(line " in text


def test_exit_status_137_says_out_of_memory_and_to_lower_the_batch_size(
    snpe_device: DeviceFactory, snpe_runner: RunnerFactory, snpe_assets: SnpeAssets
) -> None:
    runner = snpe_runner(snpe_device(env={"FAKE_SNPE_FAULT": "oom"}), batch_size=3)
    with pytest.raises(DeviceError) as err:
        runner.run_batch(snpe_assets.feeds())
    text = str(err.value)
    assert "exit status 137" in text
    assert "out of memory" in text
    assert "while running 3 input(s) in one call: lower target.batch_size in models.yaml (now 3)" in text


def test_failed_write_creates_the_folder_and_retries(
    snpe_device: DeviceFactory,
    snpe_runner: RunnerFactory,
    snpe_assets: SnpeAssets,
    reference: OrtRunner,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without the folders created up front, snpe-net-run --debug fails with ``Failed to write data to``: qc
    creates the folders it names and runs again, and every tensor comes back."""
    runner = snpe_runner(snpe_device(), batch_size=2)
    monkeypatch.setattr("qc.snpe.runner.debug_folders", lambda tensors, images: [])
    feeds = snpe_assets.feeds()[:2]
    alls = runner.run_all_batch(feeds)
    assert runner.write_retries == 1  # every failed path of the first call is created at once
    calls = [c for c in tool_calls(tmp_path) if c["tool"] == "snpe-net-run"]
    assert len(calls) == 2
    want = {m.target for m in runner.tensor_map() if m.target is not None}
    for feed, got in zip(feeds, alls, strict=True):
        assert set(got) == want
        ref = reference.run_all(feed)
        assert cosine(got["/detect/cls_preds.2/Sigmoid_output_0"], ref["/detect/cls_preds.2/Sigmoid_output_0"]) > 0.99


def test_failed_write_outside_the_run_folder_is_refused(
    snpe_device: DeviceFactory,
    snpe_runner: RunnerFactory,
    snpe_assets: SnpeAssets,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runner = snpe_runner(snpe_device())
    monkeypatch.setattr("qc.snpe.runner.debug_folders", lambda tensors, images: [])
    monkeypatch.setattr("qc.snpe.tools._failed_writes", lambda result: ["/etc/qc-evil/x.raw"])
    with pytest.raises(DeviceError, match=r"could not write /etc/qc-evil/x.raw, which is outside the run folder"):
        runner.run_all(snpe_assets.feeds()[0])
    assert not Path("/etc/qc-evil").exists()


# --------------------------------------------------------------------------------------------- tools and auth


@pytest.mark.parametrize("fake_version", FAKE_VERSIONS, indirect=True)
def test_diagview_without_csv_v2_falls_back_to_the_text_form(
    snpe_device: DeviceFactory, snpe_runner: RunnerFactory, snpe_assets: SnpeAssets, fake_version: str
) -> None:
    env = {"FAKE_SNPE_FAULT": "old_diagview", "FAKE_SNPE_VERSION": fake_version}
    runner = snpe_runner(snpe_device(env=env))
    profile = runner.layer_times(snpe_assets.feeds()[0], runs=2)
    layers = runner.dlc_info().layers
    assert len(profile.rows) == len(layers)
    assert profile.rows[0].unit == "cycles"
    assert abs(sum(r.share for r in profile.rows) - 1.0) < 1e-9
    assert profile.run_ms is not None
    if fake_version == "snpe-2.9":
        # Name-less rows: a diagview index is not a dlc-info layer id, so no layer and no op type is claimed.
        assert [r.layer for r in profile.rows[:2]] == ["diagview row 0", "diagview row 1"]
        assert {r.op_type for r in profile.rows} == {"?"}
        assert profile.io == []
    else:
        # HTP rows: the Input transfer comes first (diagview row 0) and is kept apart; layers matched by name.
        assert profile.rows[0].layer == "/backbone/stem/Conv"
        assert profile.rows[0].op_type == "Conv2d"
        assert [r.layer for r in profile.rows] == [layer.name for layer in layers]
        assert [r.layer for r in profile.io] == ["Input OpId_2", "Output OpId_3"]


@pytest.mark.parametrize("fake_version", FAKE_VERSIONS, indirect=True)
def test_an_input_file_processed_twice_fails_with_the_buffer_explanation(
    snpe_device: DeviceFactory, snpe_runner: RunnerFactory, snpe_assets: SnpeAssets, fake_version: str
) -> None:
    runner = snpe_runner(snpe_device(env={"FAKE_SNPE_FAULT": "repeat_inputs", "FAKE_SNPE_VERSION": fake_version}))
    with pytest.raises(DeviceError) as err:
        runner.run(snpe_assets.feeds()[0])
    message = str(err.value)
    assert "printed the input file inputs/00000_0.raw 2 times, but input_list.txt lists it 1 time(s)" in message
    assert "input buffers are set up wrong" in message
    assert "--use_native_input_files" in message
    profile_runner = snpe_runner(snpe_device(env={"FAKE_SNPE_VERSION": fake_version}))
    profile = profile_runner.layer_times(snpe_assets.feeds()[0], runs=3)  # one file listed 3 times: not a repeat
    assert profile.rows


def test_host_side_tools_run_on_this_machine_when_on_its_path(
    snpe_device: DeviceFactory,
    snpe_runner: RunnerFactory,
    snpe_assets: SnpeAssets,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.fake_snpe import install

    device_bin = install(tmp_path / "device-bin", ("snpe-net-run", "snpe-throughput-net-run"))
    host_bin = install(tmp_path / "host-bin", ("snpe-dlc-info", "snpe-diagview"))
    monkeypatch.setenv("PATH", f"{host_bin}{os.pathsep}{os.environ['PATH']}")
    runner = snpe_runner(snpe_device(setup=f"export PATH={device_bin}:$PATH"))
    profile = runner.layer_times(snpe_assets.feeds()[0], runs=2)
    assert profile.rows[0].layer == "/backbone/stem/Conv"  # the CSV v2 names, read on this machine
    assert len(runner.run_dirs) == 1  # dlc-info needed no device session


def test_missing_tool_on_the_device_points_at_the_setup_line(
    snpe_device: DeviceFactory, snpe_runner: RunnerFactory, snpe_assets: SnpeAssets
) -> None:
    runner = snpe_runner(snpe_device(setup="true"))
    with pytest.raises(
        DeviceError,
        match=r"snpe-dlc-info on fake-rvc4-\w+ \(root@127\.0\.0\.1:\d+\) failed with "
        r"exit status 127 \(command not found: check the device's 'setup' line and PATH\)",
    ):
        runner.tensor_map()


def test_no_secret_in_errors_or_logs(
    snpe_device: DeviceFactory,
    snpe_runner: RunnerFactory,
    snpe_assets: SnpeAssets,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = "s3cr3t-" + os.urandom(6).hex()
    dotenv = tmp_path / ".env"
    dotenv.write_text(f"QC_TEST_DEVICE_PASSWORD={secret}\n")
    device = snpe_device(auth={"password_env": "QC_TEST_DEVICE_PASSWORD", "dotenv": dotenv})
    runner = snpe_runner(device)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(DeviceError) as err:
        runner.run(snpe_assets.feeds()[0])
    assert "Authentication as root" in str(err.value)
    assert "password from $QC_TEST_DEVICE_PASSWORD" in str(err.value)
    assert secret not in str(err.value)
    assert secret not in caplog.text
    assert secret not in repr(runner.__dict__)


@pytest.mark.parametrize("fake_version", ["qairt-2.37"], indirect=True)
def test_symmetric_sfxp_outputs_come_back_as_int8_native_files_and_are_dequantized(
    snpe_device: DeviceFactory,
    snpe_runner: RunnerFactory,
    snpe_assets: SnpeAssets,
    reference: OrtRunner,
    tmp_path: Path,
    fake_version: str,
) -> None:
    from tests.fake_snpe.dlc import build_dlc
    from tests.integration.snpe.helpers import feeds

    calibration = list(feeds(snpe_assets.folder / "calib"))
    dlc = build_dlc(snpe_assets.model, calibration, tmp_path / "sym.dlc", symmetric=OUTPUTS, graph="tiny-yolov6r2")
    runner = snpe_runner(snpe_device(), dlc=dlc)
    assert {io.dtype for io in runner.dlc_info().outputs} == {"sFxp_8"}
    assert {io.encoding.offset for io in runner.dlc_info().outputs if io.encoding} == {0.0}
    feed = snpe_assets.feeds()[0]
    out = runner.run(feed)
    ref = reference.run(feed)
    for name in OUTPUTS:
        assert out[name].dtype == np.float32
        assert cosine(out[name], ref[name]) > 0.999
    final = [c for c in tool_calls(tmp_path) if c["tool"] == "snpe-net-run"]
    assert "--use_native_output_files" in final[-1]["argv"]
