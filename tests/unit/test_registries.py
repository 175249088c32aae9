"""The registries: gate vocabulary, target kinds, task kinds; heavy imports stay lazy; no kind branch elsewhere."""

from __future__ import annotations

import re
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from qc import gates
from qc.config import GATES, ModelSpec, Thresholds, ThresholdValues
from qc.errors import ConfigError
from qc.targets import TARGETS, target_class
from qc.tasks import TASKS, task_class

REPO = Path(__file__).resolve().parents[2]


def _union_tags(annotation: object) -> set[str]:
    """The ``kind`` literals of the members of a tagged union annotation."""
    found: set[str] = set()
    for arg in typing.get_args(annotation):
        if isinstance(arg, type) and issubclass(arg, BaseModel) and "kind" in arg.model_fields:
            found.update(typing.get_args(arg.model_fields["kind"].annotation))
        else:
            found |= _union_tags(arg)
    return found


def test_every_target_kind_of_the_config_has_an_implementation_and_back() -> None:
    kinds = _union_tags(ModelSpec.model_fields["target"].annotation)
    assert kinds == set(TARGETS)
    for kind in kinds:
        cls = target_class(kind)
        assert cls.kind == kind
        assert cls.speed_source in ("host", "runner")
        assert cls.lint_profile in ("reference", "target")


def test_every_task_kind_of_the_config_has_an_implementation_and_its_gates() -> None:
    kinds = _union_tags(ModelSpec.model_fields["task"].annotation)
    assert kinds == set(TASKS)
    for kind in kinds:
        assert task_class(kind).kind == kind
        assert gates.gates_needing("accuracy", task=kind)


def test_unknown_kinds_are_config_errors_naming_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown target kind 'qnn-typo'; target kinds are \['onnx'"):
        target_class("qnn-typo")
    with pytest.raises(ConfigError, match="unknown task kind 'pose'"):
        task_class("pose")
    with pytest.raises(ConfigError, match="unknown gate 'map'"):
        gates.gate_info("map")


def test_gate_registry_is_the_config_vocabulary() -> None:
    assert GATES == gates.GATE_NAMES
    assert len(set(GATES)) == len(GATES)
    assert gates.gates_needing("accuracy", task="detection") == ("map_drop", "map50_drop", "agreement_ap")
    assert gates.gates_needing("accuracy", task="segmentation") == ("miou_drop", "mask_agreement")
    assert gates.gates_needing("accuracy", task="classification") == ("top1_drop", "top1_agreement")
    assert gates.gates_needing("accuracy", task="keypoints") == ("oks_ap_drop", "keypoint_agreement")
    assert gates.gates_needing("accuracy", task="instance-segmentation") == ("mask_ap_drop", "instance_mask_agreement")
    assert gates.gates_needing("comparison") == ("layer_cosine", "output_cosine", "output_sqnr")
    accuracy = gates.gates_needing("accuracy")
    assert gates.advice_gates() == ("output_cosine", "output_sqnr", *accuracy)
    labelled = {g for g in GATES if gates.gate_info(g).labels}
    assert {"map_drop", "map50_drop", "miou_drop", "top1_drop", "oks_ap_drop", "mask_ap_drop"} <= labelled
    assert not {"agreement_ap", "mask_agreement", "top1_agreement", "keypoint_agreement"} & labelled
    assert all(gates.gate_info(g).needs == "accuracy" for g in labelled)


def test_a_gate_without_its_evidence_fails_with_what_is_missing() -> None:
    spec = ModelSpec.model_validate(
        {
            "name": "m",
            "reference": "r.onnx",
            "target": {"kind": "onnx", "model": "t.onnx"},
            "eval_data": {"folder": "."},
        }
    )
    verdict = gates.check("output_sqnr", gates.Evidence(spec))
    assert not verdict.passed
    assert verdict.message == "m: gate 'output_sqnr' needs comparison results."


def test_tolerances_resolve_once_and_an_override_of_zero_stays_zero() -> None:
    t = Thresholds(layer_cosine=0.98, overrides={"x*": ThresholdValues(layer_cosine=0.0, output_sqnr_db=0.0)})
    resolved = t.for_tensor("x1")
    assert (resolved.layer_cosine, resolved.output_cosine, resolved.output_sqnr_db) == (0.0, 0.99, 0.0)
    assert t.for_tensor("y").layer_cosine == 0.98


@pytest.mark.parametrize(
    ("module", "absent"),
    [
        ("qc.pipeline", ("paramiko", "qc.snpe.runner", "qc.device.transport", "onnx", "numba")),
        ("qc.gates", ("onnx", "paramiko")),
        ("qc.config", ("onnx", "paramiko", "onnxruntime")),
        ("qc.pytest_plugin", ("paramiko", "onnx")),
    ],
)
def test_heavy_modules_are_imported_only_when_used(module: str, absent: tuple[str, ...]) -> None:
    code = f"import sys, {module}; print(sorted(m for m in {absent!r} if m in sys.modules))"
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "[]", f"import {module} loaded {run.stdout.strip()}"


KIND_BRANCH = re.compile(
    r"isinstance\([^)]*\b(SnpeTarget|OrtInt8Target|OnnxTarget|SnpeRunner)\b"
    r"|target\.kind\s*(==|!=|in\b|not in\b)"
    r"|kind\s*(==|!=)\s*[\"'](snpe|onnx|ort-int8|qnn|qnn-htp)[\"']"
)


def test_no_target_kind_branch_outside_config_and_the_target_modules() -> None:
    found = []
    for folder in ("qc", "fixtures", "benchmarks"):
        for path in sorted((REPO / folder).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            if rel == "qc/config.py" or rel.startswith(("qc/targets/", "qc/snpe/", "qc/qnn/")):
                continue
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if KIND_BRANCH.search(line):
                    found.append(f"{rel}:{n}: {line.strip()}")
    assert found == []


def test_cli_lists_the_gate_registry(capsys: pytest.CaptureFixture[str]) -> None:
    from qc.cli import main

    assert main(["gates"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(GATES)
    assert "needs accuracy (detection)" in lines[GATES.index("map_drop")]
    columns = {line.index(" needs ") for line in lines}
    assert len(columns) == 1, "the needs column starts at one place whatever the longest gate name"
    docs = {line.index(gates.gate_info(line.split()[0]).doc) for line in lines}
    assert len(docs) == 1, "the description column starts at one place"


def test_implementations_satisfy_the_protocols_statically() -> None:
    """mypy checks these assignments: each implementation class is a ``type[Target]`` / ``type[Task]``."""
    from qc.targets.base import Target
    from qc.targets.onnx import Onnx
    from qc.targets.ort_int8 import OrtInt8
    from qc.targets.snpe import Snpe
    from qc.tasks.base import Task
    from qc.tasks.detection import DetectionTask

    targets: list[type[Target]] = [OrtInt8, Onnx, Snpe]
    tasks: list[type[Task]] = [DetectionTask]
    assert [t.kind for t in targets] == ["ort-int8", "onnx", "snpe"]
    assert [t.kind for t in tasks] == ["detection"]


def test_task_section_is_tagged_on_kind_with_detection_as_default(tmp_path: Path) -> None:
    from qc.config import load_models

    (tmp_path / "names.txt").write_text("a\n")
    entry = (
        "models:\n  - name: m\n    reference: r.onnx\n    target: {kind: onnx, model: r.onnx}\n"
        "    eval_data: {folder: .}\n    task: {%s decoder: yolov8, class_names: names.txt}\n"
    )
    (tmp_path / "models.yaml").write_text(entry % "")
    (tmp_path / "r.onnx").write_bytes(b"")
    (spec,) = load_models(tmp_path / "models.yaml")
    assert spec.task is not None
    assert spec.task.kind == "detection"
    assert spec.applies("map_drop")
    (tmp_path / "models.yaml").write_text(entry % "kind: pose,")
    with pytest.raises(ConfigError) as err:
        load_models(tmp_path / "models.yaml")
    assert "models[0].task: unknown task kind 'pose'; expected one of 'detection'" in str(err.value)


def test_a_task_gate_listed_for_an_entry_without_that_task_is_an_error(tmp_path: Path) -> None:
    from qc.config import load_models

    (tmp_path / "r.onnx").write_bytes(b"")
    (tmp_path / "models.yaml").write_text(
        "models:\n  - name: m\n    reference: r.onnx\n    target: {kind: onnx, model: r.onnx}\n"
        "    eval_data: {folder: .}\n    gates: [output_cosine, map_drop]\n"
    )
    with pytest.raises(ConfigError, match=r"gates \['map_drop'\] need a task of kind \['detection'\]"):
        load_models(tmp_path / "models.yaml")
