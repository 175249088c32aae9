"""The gate suite on a ``kind: qnn`` entry, end to end: ``pytest benchmarks --qc-models`` in a subprocess, the device
on real OpenSSH (tests/sshd.py, reached with an encrypted key whose passphrase is in a .env file) running the fake
QNN toolkit of each format version (tests/fake_qnn/formats/<version>).

Verdicts: the output, accuracy, fps and lint gates pass; layer_cosine fails naming why (a context binary gives no
layer outputs), a strict xfail when the entry expects it (first version) and a failed run when it does not (second);
an entry that leaves it out of ``gates`` never runs it. The device runs each evaluation image once per entry (one
``qnn-net-run`` per batch for the comparison and the accuracy together), the reports hold speed.json with its I/O
line and outputs.csv, and the passphrase appears nowhere.
A missing sshd fails (tests/sshd.py never skips).
"""

from __future__ import annotations

import csv
import json
import math
import secrets
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.bench import bench
from tests.integration.qnn_device.conftest import FAKE_VERSIONS
from tests.integration.qnn_device.yolo import OUTPUTS, QnnYolo, make_qnn_yolo
from tests.sshd import SshdServer

BATCH = 2

MODELS_YAML = """\
devices:
  - name: rvc4-fake
    host: 127.0.0.1
    port: {port}
    user: {user}
    auth: {{key_file: {key}, passphrase_env: QC_E2E_KEY_PASSPHRASE, dotenv: {dotenv}}}
    known_hosts: {known_hosts}
    remote_root: {remote}
    setup: "export PATH={bin}:$PATH"
    env: {{FAKE_QNN_LOG: {log}, FAKE_QNN_VERSION: {version}}}
    perf_profile: burst
models:
  - name: tiny-qnn
    reference: {assets}/model.onnx
    target: {{kind: qnn, context_binary: {assets}/model_qnn.bin, source_model: {assets}/model.qdq.onnx,
              devices: [rvc4-fake], batch_size: {batch}, speed_inferences: 5}}
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
    speed: {{profile_runs: 3}}
    thresholds: {{output_cosine: 0.98, output_sqnr_db: 15, min_fps: 1, min_agreement_ap: 0.3, max_map_drop: 0.2,
                  max_map50_drop: 0.2}}
    lint: {{max_severity: error}}
{expect}  - name: tiny-qnn-outputs
    reference: {assets}/model.onnx
    target: {{kind: qnn, context_binary: {assets}/model_qnn.bin, devices: [rvc4-fake], batch_size: {batch}}}
    preprocess: {{size: [64, 96], mode: letterbox}}
    eval_data: {{coco: {{annotations: {assets}/eval/annotations.json, images: {assets}/eval}}}}
    thresholds: {{output_cosine: 0.98, output_sqnr_db: 15}}
    gates: [output_cosine, output_sqnr]
"""


@pytest.fixture(scope="module")
def yolo(tmp_path_factory: pytest.TempPathFactory) -> QnnYolo:
    return make_qnn_yolo(tmp_path_factory.mktemp("qnn-e2e-assets"))


def encrypted_copy(key: Path, out: Path, passphrase: str) -> Path:
    """The test sshd's client key, re-encrypted with ``passphrase`` (ssh-keygen -p)."""
    out.write_bytes(key.read_bytes())
    out.chmod(0o600)
    subprocess.run(
        ["ssh-keygen", "-q", "-p", "-P", "", "-N", passphrase, "-f", str(out)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return out


def lines_with(out: str, word: str, test: str, model: str) -> list[str]:
    return [line for line in out.splitlines() if word in line and f"::{test}[{model}]" in line]


@pytest.mark.parametrize(
    ("version", "expects_layer_failure"), [(FAKE_VERSIONS[0], True), (FAKE_VERSIONS[-1], False)], ids=FAKE_VERSIONS
)
def test_gate_suite_on_a_qnn_entry_through_sshd(
    sshd_server: SshdServer,
    yolo: QnnYolo,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    record_property: Callable[[str, object], None],
    version: str,
    expects_layer_failure: bool,
) -> None:
    passphrase = "pp-" + secrets.token_hex(8)
    key = encrypted_copy(sshd_server.client_key, tmp_path / "client_key", passphrase)
    dotenv = tmp_path / ".env"
    dotenv.write_text(f"QC_E2E_KEY_PASSPHRASE={passphrase}\n")
    remote = tmp_path / "device root"
    log = tmp_path / "calls.jsonl"
    (tmp_path / "models.yaml").write_text(
        MODELS_YAML.format(
            port=sshd_server.port,
            user=sshd_server.user,
            key=key,
            dotenv=dotenv,
            known_hosts=sshd_server.known_hosts,
            remote=json.dumps(str(remote)),
            bin=yolo.bin,
            log=log,
            assets=yolo.folder,
            version=version,
            batch=BATCH,
            expect="    expect: {layer_cosine: fail}\n" if expects_layer_failure else "",
        )
    )
    monkeypatch.setenv("QC_CACHE_DIR", str(tmp_path / "qc-cache"))  # device locks and the context-info cache
    monkeypatch.delenv("QC_E2E_KEY_PASSPHRASE", raising=False)  # the passphrase comes from the .env file only
    start = time.perf_counter()
    run = bench(tmp_path, "--qc-no-history", "-v", "-n", "2")
    elapsed = time.perf_counter() - start
    out = run.stdout + run.stderr
    assert run.returncode == (0 if expects_layer_failure else 1), out
    for gate in ("output_cosine", "output_sqnr", "map_drop", "map50_drop", "agreement_ap", "fps", "lint"):
        assert lines_with(out, "PASSED", f"test_{gate}", "tiny-qnn"), f"{gate}\n{out}"
    for gate in ("output_cosine", "output_sqnr"):
        assert lines_with(out, "PASSED", f"test_{gate}", "tiny-qnn-outputs"), f"{gate}\n{out}"
    # layer_cosine fails naming why (a strict xfail when the entry expects it); never runs for the entry that
    # leaves it out of its gates
    if expects_layer_failure:
        assert lines_with(out, "XFAIL", "test_layer_cosine", "tiny-qnn"), out
    else:
        assert lines_with(out, "FAILED", "test_layer_cosine", "tiny-qnn"), out
        assert "tiny-qnn: no layer could be compared;" in out
        assert "qnn-net-run cannot use --debug (every layer's output) with --retrieve_context" in out
    assert not [line for line in out.splitlines() if "test_layer_cosine[tiny-qnn-outputs]" in line]
    for gate in ("map_drop", "fps", "lint", "agreement_ap"):
        assert not [line for line in out.splitlines() if f"test_{gate}[tiny-qnn-outputs]" in line]

    report = tmp_path / "reports" / "models" / "tiny-qnn"
    speed = json.loads((report / "speed.json").read_text())
    assert "qnn-net-run --retrieve_context --backend libQnnHtp.so" in speed["target"]["source"]
    assert "NetRun IPS" in speed["target"]["source"]
    assert speed["target"]["fps"] > 1
    io = [t["layer"] for t in speed["io_transfers"]]
    assert io, speed  # HTP Input/Output OpId transfers: the I/O line, never layers
    assert all(name.startswith(("Input OpId_", "Output OpId_")) for name in io)
    with (report / "layer_times.csv").open() as f:
        times = list(csv.DictReader(f))
    assert times
    assert not [r for r in times if "OpId" in r["layer"] or r["layer"].startswith(("Input", "Output"))]
    assert {"/backbone/stem/Conv", "/backbone/stage1/Conv"} <= {r["layer"] for r in times}  # ONNX node names
    assert {r["unit"] for r in times} == {"cycles"}
    assert sum(float(r["share"]) for r in times) == pytest.approx(1.0)
    with (report / "outputs.csv").open() as f:
        outputs = {r["output"]: r for r in csv.DictReader(f)}
    assert set(outputs) == {*OUTPUTS, f"{OUTPUTS[0]}[boxes]", f"{OUTPUTS[0]}[classes]"}
    assert all(float(r["cosine_mean"]) > 0.98 for r in outputs.values())
    with (report / "unmatched.csv").open() as f:
        reasons = {r["reason"] for r in csv.DictReader(f)}
    assert len(reasons) == 1
    assert "--retrieve_context" in reasons.pop()
    assert json.loads((report / "target_run.json").read_text())["origin"] == "given (target.context_binary)"
    run_settings = json.loads((tmp_path / "reports" / "run.json").read_text())["settings"]["tiny-qnn"]
    assert run_settings["target as run"]["context_binary"] == str(yolo.context)  # the model page's run settings
    assert "target as run" in (report / "index.html").read_text()
    accuracy = json.loads((report / "accuracy.json").read_text())
    assert accuracy["images"] == 3
    assert accuracy["agreement_ap"] >= 0.3
    with (report / "lint.csv").open() as f:
        lint_rows = list(csv.DictReader(f))
    assert lint_rows
    assert all(r["time_share"] for r in lint_rows)  # shares measured by qnn-profile-viewer on the device

    # the device: per entry, each image through qnn-net-run once (tiny-qnn: its comparison and accuracy share the
    # pass, else 3 passes would show; tiny-qnn-outputs: declares no slices, so its comparison is its own pass)
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    net_runs = [c for c in calls if c["tool"] == "qnn-net-run"]
    plain = [c for c in net_runs if "--profiling_level" not in c["argv"]]
    profiled = [c["argv"][c["argv"].index("--profiling_level") + 1] for c in net_runs if c not in plain]
    assert len(plain) == 2 * math.ceil(3 / BATCH)
    assert profiled.count("basic") == 1  # the fps gate's timed run
    # per-op profile: session-scoped per pytest worker, so once per worker that runs tiny-qnn's fps or lint gate
    assert 1 <= profiled.count("detailed") <= 2
    assert len(profiled) == profiled.count("basic") + profiled.count("detailed")
    assert all("--retrieve_context" in c["argv"] and "--debug" not in c["argv"] for c in net_runs)
    assert all(c["argv"][c["argv"].index("--perf_profile") + 1] == "burst" for c in net_runs)
    assert any(c["tool"] == "qnn-profile-viewer" for c in calls)
    assert not list(remote.iterdir())  # every run folder removed
    # the passphrase never reaches the output, a log or a report
    assert passphrase not in out
    for path in (tmp_path / "reports").rglob("*"):
        if path.is_file():
            assert passphrase.encode() not in path.read_bytes(), path
    record_property("qnn_net_runs", len(net_runs))
    record_property("seconds", round(elapsed, 1))
    print(f"{version}: {len(plain)} plain + {len(profiled)} profiled qnn-net-run call(s), {elapsed:.1f} s")
