"""qc's QNN device parsers on every version's hand-written format fixtures (tests/fake_qnn/formats/<version>/), the
values checked against that version's hand-written expected.json; the identifier rule for tensor names."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qc.errors import ParseError
from qc.qnn.context_info import ContextInfoError, parse_context_json
from qc.qnn.names import output_file_candidates, qnn_identifier, same_tensor
from qc.qnn.profile import parse_htp_profile
from qc.qnn.viewer import ViewerParseError, parse_viewer_text

FORMATS = Path(__file__).resolve().parents[2] / "fake_qnn" / "formats"
VERSIONS = sorted(p.name for p in FORMATS.iterdir() if (p / "expected.json").is_file())


def _cases(kind: str) -> list[tuple[str, str, dict[str, Any]]]:
    cases = []
    for version in VERSIONS:
        expected = json.loads((FORMATS / version / "expected.json").read_text())
        for name, values in expected.items():
            if (
                (kind == "text" and name.endswith(".txt"))
                or (kind == "csv" and name.endswith(".csv"))
                or (kind == "json" and name.endswith(".json"))
            ):
                cases.append((version, name, values))
    return cases


def test_every_version_has_each_form() -> None:
    assert len(VERSIONS) >= 2
    for version in VERSIONS:
        expected = json.loads((FORMATS / version / "expected.json").read_text())
        assert {"viewer_detailed.txt", "viewer.csv", "context.json"} <= set(expected), version


def _check_profile(report_ops: dict[str, float], io: dict[str, float], values: dict[str, Any]) -> None:
    assert report_ops == pytest.approx(values["ops"])
    assert io == pytest.approx(values["io"])


@pytest.mark.parametrize(("version", "name", "values"), _cases("text"), ids=lambda v: str(v)[:30])
def test_viewer_text(version: str, name: str, values: dict[str, Any]) -> None:
    report = parse_viewer_text((FORMATS / version / name).read_text())
    assert report.layout == values["layout"]
    assert report.profile.runs == values["runs"]
    if "graph" in values:
        assert report.graph == values["graph"]
    if values["ips"] is None:
        assert report.ips is None
    else:
        assert report.ips == pytest.approx(values["ips"])
    ops = {op.name: op.cycles for op in report.profile.ops}
    io = {item.kind: item.cycles for item in report.profile.io}
    _check_profile(ops, io, values)
    for key, total in values["totals"].items():
        assert report.profile.totals[key][0] == pytest.approx(total), key
    names = {row.layer for row in report.profile.layer_rows()}
    assert not any("OpId" in n or n.startswith(("Input", "Output")) for n in names), "I/O pseudo-ops are no layers"


@pytest.mark.parametrize(("version", "name", "values"), _cases("csv"), ids=lambda v: str(v)[:30])
def test_viewer_csv(version: str, name: str, values: dict[str, Any]) -> None:
    profile = parse_htp_profile((FORMATS / version / name).read_text())
    assert profile.runs == values["runs"]
    ops = {op.name: op.cycles for op in profile.ops}
    io = {item.kind: item.cycles for item in profile.io}
    _check_profile(ops, io, values)


@pytest.mark.parametrize("version", VERSIONS)
def test_text_and_csv_agree(version: str) -> None:
    """The detailed text and the CSV of the same version describe the same executions."""
    text = parse_viewer_text((FORMATS / version / "viewer_detailed.txt").read_text()).profile
    csv = parse_htp_profile((FORMATS / version / "viewer.csv").read_text())
    assert {o.name: o.cycles for o in text.ops} == pytest.approx({o.name: o.cycles for o in csv.ops})
    assert [(r.layer, r.op_type) for r in text.layer_rows()] == [(r.layer, r.op_type) for r in csv.layer_rows()]


def test_viewer_maps_ops_to_onnx_nodes() -> None:
    text = (FORMATS / "qairt-2.4x" / "viewer_detailed.txt").read_text()
    nodes = {"/backbone/stem/Conv": "Conv", "/head/Conv": "Conv", "/head/Sigmoid": "Sigmoid"}
    rows = {r.layer: r for r in parse_viewer_text(text, nodes).profile.layer_rows()}
    assert rows["/backbone/stem/Conv"].time == pytest.approx(450000)  # its _token_1 split summed in
    assert rows["/backbone/stem/Conv"].op_type == "Conv"
    assert rows["Transpose_token_3"].op_type == "Transpose (HTP-inserted)"
    assert sum(r.share for r in rows.values()) == pytest.approx(1.0)


@pytest.mark.parametrize(("version", "name", "values"), _cases("json"), ids=lambda v: str(v)[:30])
def test_context_json(version: str, name: str, values: dict[str, Any]) -> None:
    info = parse_context_json((FORMATS / version / name).read_text())
    graph = info.graph()
    assert graph.name == values["graph"]
    pairs = [*zip(graph.inputs, values["inputs"], strict=True), *zip(graph.outputs, values["outputs"], strict=True)]
    for found, want in pairs:
        assert found.name == want["name"]
        assert found.dtype == want["dtype"]
        assert list(found.dims) == want["dims"]
        assert found.scale == (pytest.approx(want["scale"]) if want["scale"] is not None else None)
        assert found.offset == want["offset"]
    assert info.graph(values["graph"]) is graph
    with pytest.raises(ContextInfoError, match="no graph 'nope'"):
        info.graph("nope")


def test_context_json_refuses_what_it_cannot_use() -> None:
    base = json.loads((FORMATS / "qairt-2.4x" / "context.json").read_text())
    tensor = base["info"]["graphs"][0]["info"]["graphOutputs"][0]["info"]
    tensor["quantizeParams"]["scaleOffset"]["scale"] = 0
    with pytest.raises(ContextInfoError, match="'_7': scale 0 is not a positive"):
        parse_context_json(json.dumps(base))
    tensor["quantizeParams"] = {"quantizationEncoding": "QNN_QUANTIZATION_ENCODING_AXIS_SCALE_OFFSET"}
    assert parse_context_json(json.dumps(base)).graph().outputs[0].encoding == "per-axis"
    tensor["dataType"] = "QNN_DATATYPE_STRING"
    with pytest.raises(ContextInfoError, match="dataType 'QNN_DATATYPE_STRING'"):
        parse_context_json(json.dumps(base))
    with pytest.raises(ContextInfoError, match=r"no 'info\.graphs'"):
        parse_context_json("{}")


def test_viewer_without_executions_says_why() -> None:
    with pytest.raises(ViewerParseError, match="--profiling_level"):
        parse_viewer_text("Init Stats:\n-----\n    NetRun: 12 us\n")


@pytest.mark.parametrize(
    ("name", "ident"),
    [
        ("7", "_7"),  # documented: Result_0/_7_native.raw
        ("/model/basenet/slice1/0/Conv_output_0", "_model_basenet_slice1_0_Conv_output_0"),  # documented --debug dump
        ("output1_yolov6r2", "output1_yolov6r2"),
        ("model.24/Concat:0", "model_24_Concat_0"),
        ("a--b", "a__b"),  # runs are not collapsed
        ("", "_"),
        ("é", "_"),
    ],
)
def test_qnn_identifier(name: str, ident: str) -> None:
    assert qnn_identifier(name) == ident
    assert same_tensor(name, ident)


def test_output_file_candidates() -> None:
    assert output_file_candidates("7", native=True) == ["_7_native.raw", "7_native.raw"]
    assert output_file_candidates("/a/b", native=False) == ["_a_b.raw"]
    assert output_file_candidates("..", native=False) == ["__.raw"]
    assert np.all([c.endswith(".raw") for c in output_file_candidates("x.y", native=False)])


def test_parse_errors_are_parse_errors() -> None:
    assert issubclass(ViewerParseError, ParseError)
    assert issubclass(ContextInfoError, ParseError)
