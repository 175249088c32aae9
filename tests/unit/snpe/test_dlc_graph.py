"""Lint on the parsed snpe-dlc-info graph: the same rules as on ONNX."""

from __future__ import annotations

from pathlib import Path

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
