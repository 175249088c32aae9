"""Lint on the parsed snpe-dlc-info graph: the same rules as on ONNX."""

from __future__ import annotations

from pathlib import Path

import pytest

from qc.graph.lint import Severity, lint
from qc.snpe.graph import view_from_dlc
from qc.snpe.parsers import parse_dlc_info_text

DATA = Path(__file__).parent / "data"


def test_eltwise_div_by_a_static_operand_is_a_div_error() -> None:
    view = view_from_dlc(parse_dlc_info_text((DATA / "dlc_info_yolov6n.txt").read_text()))
    ops = {n.name: n.op_type for n in view.nodes}
    assert ops["/detect/Div"] == "Div"
    assert ops["/detect/Mul"] == "Mul"
    assert ops["/backbone/stem/block/conv/Conv"] == "Conv"
    findings = lint(view, profile={"/detect/Div": 0.12})
    div = [f for f in findings if f.rule == "div"]
    assert [f.node for f in div] == ["/detect/Div"]
    assert div[0].severity == Severity.ERROR  # the divisor is a constant
    assert div[0].time_share == 0.12
    assert "images" in view.inputs


FORMATS = Path(__file__).resolve().parents[2] / "fake_snpe" / "formats"


@pytest.mark.parametrize("version", sorted(p.name for p in FORMATS.iterdir() if (p / "dlc_info.txt").is_file()))
def test_elementwise_neuron_codes_map_to_activations_and_unknown_codes_are_reported(version: str) -> None:
    view = view_from_dlc(parse_dlc_info_text((FORMATS / version / "dlc_info.txt").read_text()))
    ops = {n.name: n.op_type for n in view.nodes}
    assert ops["/backbone/stem/Relu"] == "Relu"  # operation: 4
    assert ops["/detect/Sigmoid"] == "Sigmoid"  # operation: 6
    assert ops["/detect/Div"] == "Div"
    assert ops["/detect/Act_custom"] == "ElementWiseNeuron(op=12)"  # not in QNN's table: never guessed
