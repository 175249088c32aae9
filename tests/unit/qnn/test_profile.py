"""The QNN HTP profile CSV parser on real captured profiles and on hand-made broken ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from qc.errors import ParseError
from qc.qnn.profile import INSERTED, map_op_name, parse_htp_profile, read_htp_profile

DATA = Path(__file__).parent / "data"
HEADER = "Msg Timestamp,Message,Time,Unit of Measurement,Timing Source,Event Level,Event Identifier\n"
TINY_NODES = {
    "x_QuantizeLinear": "QuantizeLinear",
    "W_DequantizeLinear": "DequantizeLinear",
    "conv0": "Conv",
    "relu0": "Relu",
    "y_QuantizeLinear": "QuantizeLinear",
    "y_DequantizeLinear": "DequantizeLinear",
}


def _run(*nodes: str, execute: float = 100.0) -> str:
    return "".join(nodes) + f"0,EXECUTE,{execute},US,BACKEND,ROOT,QNN (execute) time\n"


def test_tiny_profile_means_maps_and_keeps_io_apart() -> None:
    profile = read_htp_profile(DATA / "htp_profile_conv_relu.csv", TINY_NODES)
    assert profile.runs == 2
    by_name = {op.name: op for op in profile.ops}
    conv = by_name["conv0_token_1"]
    assert (conv.onnx_node, conv.op_type, conv.cycles) == ("conv0", "Conv", (75312 + 73644) / 2)
    assert by_name["x_QuantizeLinear"].onnx_node == "x_QuantizeLinear"
    transpose = by_name["Transpose_token_4"]
    assert transpose.inserted
    assert transpose.op_type == "Transpose"
    assert by_name["DequantizeLinear_token_10"].inserted
    assert {(io.kind, io.op_id) for io in profile.io} == {("input", 2), ("output", 3)}
    assert profile.accelerator_cycles == (176927 + 168003) / 2
    assert profile.totals["QNN (execute) time"] == ((10082 + 12002) / 2, "US")
    assert profile.finalize["QNN (finalize) time"] == (10380.0, "US")
    assert profile.finalize["VTCM Allocation"] == (30.0, "US")
    # the nodes plus I/O add up to the accelerator's cycles in each run: nothing is counted twice or lost
    ops_and_io = sum(op.cycles for op in profile.ops) + sum(io.cycles for io in profile.io)
    assert ops_and_io == pytest.approx(profile.accelerator_cycles)


def test_layer_rows_are_cycles_with_inserted_ops_labelled() -> None:
    profile = read_htp_profile(DATA / "htp_profile_conv_relu.csv", TINY_NODES)
    rows = {r.layer: r for r in profile.layer_rows()}
    assert rows["conv0"].op_type == "Conv"
    assert rows["conv0"].unit == "cycles"
    assert rows["Transpose_token_4"].op_type == f"Transpose ({INSERTED})"
    assert "Input OpId_2" not in rows
    assert all(r.unit == "cycles" for r in rows.values())
    assert sum(r.share for r in rows.values()) == pytest.approx(1.0)
    layer_profile = profile.layer_profile()
    assert layer_profile.run_ms is None
    assert len(layer_profile.rows) == len(rows)


def test_detector_profile_maps_every_fused_layer() -> None:
    names = {f"leaky_{i}": "LeakyRelu" for i in (0, 2, 4, 6, 8, 10, 12, 13, 14, 18, 21)}
    names |= {f"conv_{i}": "Conv" for i in (0, 2, 4, 6, 8, 10, 12, 13, 14, 15, 18, 21, 22)}
    names |= {"images_QuantizeLinear": "QuantizeLinear", "upsample_19": "Resize", "route_20": "Concat"}
    profile = read_htp_profile(DATA / "htp_profile_yolov3_tiny_int8.csv", names)
    assert profile.runs == 4
    top = profile.top_ops(5)
    assert len(top) == 5
    assert top[0].time >= top[-1].time
    mapped = {op.onnx_node for op in profile.ops if op.onnx_node}
    assert {"leaky_0", "conv_0", "upsample_19", "route_20"} <= mapped
    conv0 = [op for op in profile.ops if op.onnx_node == "conv_0"]
    assert conv0
    assert conv0[0].name.startswith("conv_0_token_")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("conv0", ("conv0", "Conv")),
        ("conv0_token_12", ("conv0", "Conv")),
        ("conv0_token_1_token_2", ("conv0", "Conv")),
        ("relu0_7", ("relu0", "Relu")),
        ("Transpose_token_17", (None, "Transpose")),
        ("DequantizeLinear_token_3", (None, "DequantizeLinear")),
        ("relu0_dq", (None, "DequantizeLinear")),
        ("conv0_q", (None, "QuantizeLinear")),
        ("some/inserted_thing", (None, "Unknown")),
    ],
)
def test_map_op_name(name: str, expected: tuple[str | None, str]) -> None:
    assert map_op_name(name, {"conv0": "Conv", "relu0": "Relu"}) == expected


def test_split_op_is_summed_into_its_onnx_node() -> None:
    text = HEADER + _run(
        "0,NODE,10,CYCLES,BACKEND,SUB-EVENT,conv0_token_1:OpId_5 (cycles)\n",
        "0,NODE,30,CYCLES,BACKEND,SUB-EVENT,conv0_token_2:OpId_6 (cycles)\n",
    )
    rows = parse_htp_profile(text, {"conv0": "Conv"}).layer_rows()
    assert [(r.layer, r.op_type, r.time) for r in rows] == [("conv0", "Conv", 40.0)]


def test_quoted_names_with_commas_and_colons() -> None:
    text = HEADER + _run('0,NODE,7,CYCLES,BACKEND,SUB-EVENT,"a,b:c:OpId_9 (cycles)"\n')
    (op,) = parse_htp_profile(text, {"a,b:c": "Add"}).ops
    assert (op.name, op.op_id, op.onnx_node) == ("a,b:c", 9, "a,b:c")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "expected the header"),
        ("a,b,c\n", "expected the header"),
        (HEADER, "no complete execution"),
        (HEADER + "0,NODE,5,CYCLES,BACKEND,SUB-EVENT,x:OpId_1 (cycles)\n", "no complete execution"),
        (HEADER + "0,NODE,abc,CYCLES,BACKEND,SUB-EVENT,x:OpId_1 (cycles)\n", "line 2: Time 'abc' is not a number"),
        (HEADER + "0,NODE,-1,CYCLES,BACKEND,SUB-EVENT,x:OpId_1 (cycles)\n", "not a finite non-negative"),
        (HEADER + "0,NODE,nan,CYCLES,BACKEND,SUB-EVENT,x:OpId_1 (cycles)\n", "not a finite non-negative"),
        (HEADER + "0,NODE,5,CYCLES\n", "line 2: expected 7 columns, found 4"),
        (HEADER + _run("0,NODE,5,CYCLES,BACKEND,SUB-EVENT,no op id here\n"), "is not '<name>:OpId_<k> (<unit>)'"),
        (
            HEADER
            + _run(
                "0,NODE,5,CYCLES,BACKEND,SUB-EVENT,a:OpId_1 (cycles)\n",
                "0,NODE,5,US,BACKEND,SUB-EVENT,b:OpId_2 (us)\n",
            ),
            "mix units",
        ),
    ],
)
def test_broken_profiles_raise_parse_error(text: str, message: str) -> None:
    with pytest.raises(ParseError, match="QNN profile CSV") as info:
        parse_htp_profile(text)
    assert message in str(info.value)


def test_unreadable_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "absent.csv"
    with pytest.raises(ParseError, match=str(missing)):
        read_htp_profile(missing)
