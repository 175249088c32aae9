"""SNPE output parsers on sample outputs (tests/unit/snpe/data, built from the formats in snpe-tools.md)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from qc.errors import ParseError
from qc.snpe.parsers import (
    parse_diagview_csv,
    parse_diagview_text,
    parse_dlc_info_csv,
    parse_dlc_info_text,
    parse_encoding,
    parse_failed_write,
    parse_throughput,
)

DATA = Path(__file__).parent / "data"


def sample(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


# ------------------------------------------------------------------------------------------------ throughput


def test_throughput_total_line_wins_over_thread_line() -> None:
    result = parse_throughput(sample("throughput_dsp.txt"))
    assert result.total_infs_per_sec == pytest.approx(1581.96)
    (thread,) = result.threads
    assert (thread.index, thread.runtime) == (0, "dsp_fixed8_tf")
    assert thread.infs_per_sec == pytest.approx(1581.96)
    assert thread.images_processed == 15803
    assert thread.build_time_us == 48593
    assert thread.elapsed_time_us == 10020649
    assert thread.batch == 1


def test_throughput_several_containers() -> None:
    result = parse_throughput(sample("throughput_two_containers.txt"))
    assert result.total_infs_per_sec == pytest.approx(1015.5)  # not thread 0's 812.4
    assert [t.runtime for t in result.threads] == ["dsp_fixed8_tf", "gpu_float16"]


def test_throughput_errors_name_tool_and_line() -> None:
    with pytest.raises(ParseError, match=r"snpe-throughput-net-run: no 'Total throughput:' line.*203\.10"):
        parse_throughput(sample("throughput_two_containers.txt").replace("Total throughput: 1015.50 infs/sec", ""))
    with pytest.raises(ParseError, match=r"malformed 'Total throughput:' line \(line 2: 'Total throughput: fast'\)"):
        parse_throughput("x\nTotal throughput: fast\n")
    with pytest.raises(ParseError, match="disagree"):
        parse_throughput("Total throughput: 10 infs/sec\nTotal throughput: 11 infs/sec\n")
    with pytest.raises(ParseError, match="not finite"):
        parse_throughput("Total throughput: 1e999 infs/sec\n")
    with pytest.raises(ParseError, match="malformed thread line"):
        parse_throughput("[Thread zero - dsp] 5 infs/sec\nTotal throughput: 5 infs/sec\n")


def test_throughput_total_with_log_prefix() -> None:
    assert parse_throughput("[INFO] Total throughput: 12.5 infs/sec\n").total_infs_per_sec == 12.5


# ------------------------------------------------------------------------------------------------ diagview


def test_diagview_text_dsp_cycles() -> None:
    times = parse_diagview_text(sample("diagview.txt"))
    assert times.unit == "cycles"
    assert [r.index for r in times.rows] == list(range(7))
    assert times.total == 0 + 162014 + 91455 + 20317 + 9310 + 15771 + 1133
    assert times.rows[1].time == 162014
    assert times.rows[1].runtime == "DSP"
    assert times.rows[1].share == pytest.approx(162014 / times.total)
    assert sum(r.share for r in times.rows) == pytest.approx(1.0)
    assert times.total_inference_time_us == 3318
    assert times.network["Forward Propagate Time"].value == 3244
    assert times.top(2)[0].index == 1


def test_diagview_text_cpu_us() -> None:
    times = parse_diagview_text(sample("diagview_cpu.txt"))
    assert times.unit == "us"
    assert times.total == 3 + 20111 + 15007 + 6389
    assert times.rows[0].name is None


def test_diagview_text_named_rows_and_several_runs() -> None:
    text = "Layer Times:\n0: /model.0/conv/Conv: 100 us : CPU\n1: conv:OpId_1: 300 us : CPU\n"
    times = parse_diagview_text(text + text.replace("100", "200"))
    assert [(r.name, r.time) for r in times.rows] == [("/model.0/conv/Conv", 150.0), ("conv", 300.0)]


def test_diagview_csv_v2() -> None:
    times = parse_diagview_csv(sample("diagview_v2.csv"))
    assert times.unit == "cycles"
    assert times.rows[0].name == "/backbone/stem/block/conv/Conv"  # ":OpId_0" and " (cycles)" removed
    assert times.rows[0].raw_name == "/backbone/stem/block/conv/Conv:OpId_0 (cycles)"
    assert times.rows[6].message == "fused, no time"
    assert times.network["Total Inference Time"].value == 3318
    assert times.total_inference_time_us == 3318
    assert times.rows[3].name == "/detect/Div"
    assert times.rows[0].share == pytest.approx(162014 / times.total)


def test_diagview_csv_column_order_and_extra_columns() -> None:
    text = (
        "Execution Id,Message,Time,Unit of Measurement,Layer Name,Layer Id\n"
        "0,,10,USEC,Total Inference Time,\n"
        "0,,4,USEC,a:OpId_0,0\n"
        "0,,6,USEC,b,1\n"
    )
    times = parse_diagview_csv(text)
    assert times.unit == "us"
    assert [(r.name, r.time, r.share) for r in times.rows] == [("a", 4.0, 0.4), ("b", 6.0, 0.6)]


def test_diagview_errors() -> None:
    with pytest.raises(ParseError, match="snpe-diagview: no per-layer times"):
        parse_diagview_text("Total Inference Time: 3318 us\n")
    with pytest.raises(ParseError, match=r"malformed layer time line \(line 2: '3: lots of cycles'\)"):
        parse_diagview_text("Layer Times:\n3: lots of cycles\n")
    with pytest.raises(ParseError, match="different units"):
        parse_diagview_text("Layer Times:\n0: 5 us : CPU\n1: 7 cycles : DSP\n")
    with pytest.raises(ParseError, match="no header row with 'Layer Id'"):
        parse_diagview_csv("a,b\n1,2\n")
    with pytest.raises(ParseError, match=r"Layer Id 'x' is not an integer \(line 2"):
        parse_diagview_csv("Layer Id,Layer Name,Time,Unit of Measurement\nx,conv,5,us\n")
    with pytest.raises(ParseError, match="without a unit"):
        parse_diagview_csv("Layer Id,Layer Name,Time\n0,conv,5\n")


# ------------------------------------------------------------------------------------------------ dlc-info


@pytest.mark.parametrize("name", ["dlc_info_yolov6n.txt", "dlc_info_yolov6n.csv"])
def test_dlc_info_layers(name: str) -> None:
    parse = parse_dlc_info_csv if name.endswith(".csv") else parse_dlc_info_text
    info = parse(sample(name))
    assert info.graph_name == "yolov6n-r2-288x512"
    assert [layer.type for layer in info.layers] == [
        "Conv2d",
        "Conv2d",
        "Sigmoid",
        "Eltwise_Binary",
        "Eltwise_Binary",
        "Concat",
        "Reshape",
    ]
    stem = info.layers[0]
    assert (stem.id, stem.name) == (0, "/backbone/stem/block/conv/Conv")
    assert [t.name for t in stem.inputs] == [
        "images",
        "backbone.stem.block.conv.weight",
        "backbone.stem.block.conv.bias",
    ]
    image = stem.inputs[0]
    assert (image.dtype, image.dims, image.tensor_type, image.is_network_input) == (
        "uFxp_8",
        (1, 288, 512, 3),
        "APP_WRITE",
        True,
    )
    assert stem.inputs[1].is_network_input is False
    assert stem.out_dims == [(1, 144, 256, 16)]
    assert stem.runtimes == ["A", "D", "G", "C"]
    assert stem.params["stride"] == "[2, 2]"
    assert stem.params["pad_amount"] == "[[1, 1], [1, 1]]"
    assert stem.param_count == 448
    assert stem.macs == 15_000_000
    weight = stem.encodings["backbone.stem.block.conv.weight"]
    assert (weight.bitwidth, weight.offset, weight.axis, weight.num_channels) == (8, -128.0, 3, 16)
    assert weight.min == pytest.approx(-1.134207)
    assert weight.per_channel is not None
    assert len(weight.per_channel) == 1
    bias = stem.encodings["backbone.stem.block.conv.bias"]
    assert (bias.bitwidth, bias.per_channel, bias.offset) == (32, None, -2147483648.0)
    out = stem.encodings["/backbone/stem/block/conv/Conv_output_0"]
    assert out.scale == pytest.approx(0.024207242578)
    assert not any("encoding" in key for key in stem.params)


@pytest.mark.parametrize("name", ["dlc_info_yolov6n.txt", "dlc_info_yolov6n.csv"])
def test_dlc_info_div_concat_and_tables(name: str) -> None:
    parse = parse_dlc_info_csv if name.endswith(".csv") else parse_dlc_info_text
    info = parse(sample(name))
    div = info.layer("/detect/Div")
    assert div is not None
    assert div.params["operation"] == "2"
    assert div.eltwise_operation == "DIVIDE"
    assert [layer.name for layer in info.of_type("Eltwise_Binary") if layer.eltwise_operation == "DIVIDE"] == [
        "/detect/Div"
    ]
    mul = info.layer("/detect/Mul")
    assert mul is not None
    assert mul.eltwise_operation == "MULTIPLY"
    concat = info.of_type("Concat")[0]
    assert [t.dims for t in concat.inputs] == [(1, 36, 64, 4), (1, 36, 64, 1), (1, 36, 64, 80)]
    assert concat.outputs[0].tensor_type == "APP_READ"
    assert concat.params == {"axis": "3"}
    assert [(t.name, t.dims, t.dtype) for t in info.inputs] == [("images", (1, 288, 512, 3), "uFxp_8")]
    assert [t.name for t in info.outputs] == ["output1_yolov6r2"]
    assert info.outputs[0].encoding is not None
    assert info.outputs[0].encoding.max == 22.25
    assert [t.name for t in info.unconsumed] == ["/detect/Reshape_dbg_output_0"]
    assert info.totals.params == 5648
    assert info.totals.macs_text == "27M"
    assert info.totals.ops == ["Concat", "Conv2d", "Eltwise_Binary", "Reshape", "Sigmoid"]
    assert info.totals.memory == "12.3 MiB"
    assert "use_per_channel_quantization=[true]" in info.meta["Quantizer command"]
    assert info.encoding_of("/detect/Div_output_0") is not None


def test_text_and_csv_agree() -> None:
    for stem in ("dlc_info_yolov6n", "dlc_info_all_encodings"):
        text = parse_dlc_info_text(sample(f"{stem}.txt"))
        table = parse_dlc_info_csv(sample(f"{stem}.csv"))
        assert text == table


def test_dlc_info_all_channel_encodings() -> None:
    info = parse_dlc_info_text(sample("dlc_info_all_encodings.txt"))
    weight = info.layers[0].encodings["backbone.stem.block.conv.weight"]
    assert weight.per_channel is not None
    assert [c.channel for c in weight.per_channel] == [0, 1, 2, 3]
    assert weight.per_channel[2].min == pytest.approx(-0.83)
    assert weight.min == pytest.approx(-1.134207)
    assert (weight.axis, weight.num_channels) == (3, 4)


def test_dlc_info_real_concat_row() -> None:
    info = parse_dlc_info_text(sample("dlc_info_concat_row.txt"))
    (concat,) = info.layers
    assert (concat.id, concat.name, concat.type) == (238, "/model.24/Concat_3", "Concat")
    assert [t.name for t in concat.inputs] == [
        "/model.24/Reshape_1_output_0",
        "/model.24/Reshape_3_output_0",
        "/model.24/Reshape_5_output_0",
    ]
    assert concat.inputs[0].dims == (1, 19200, 85)
    assert concat.outputs[0].name == "output0"
    assert concat.outputs[0].dtype == "Float_32"
    assert concat.out_dims == [(1, 25200, 85)]
    assert concat.params == {"axis": "1"}
    assert info.outputs[0].encoding is None
    assert info.outputs[0].encoding_text == "No encoding info for this tensor"


def test_dlc_info_tensor_names_with_parentheses_and_pipes() -> None:
    header = "| Id | Name | Type | Inputs | Outputs | Out Dims | Runtimes | Parameters |"
    row = (
        "| 0 | conv | Conv2d | in (x) (data type: Float_32; tensor dimension: [1]; tensor type: NATIVE)"
        " | out (data type: Float_16; tensor dimension: ]; tensor type: NATIVE) | 1 | C | key: a|b |"
    )
    layer = parse_dlc_info_text(f"{header}\n{row}\n").layers[0]
    assert layer.inputs[0].name == "in (x)"
    assert layer.outputs[0].dims == ()  # dlc-info prints "]" for a scalar
    assert layer.params == {"key": "a|b"}  # extra "|" go to the last cell
    aligned = "| Id | Name     | Type   | Inputs | Outputs | Out Dims | Runtimes | Parameters |"
    good_row = "| 0  | odd|name | Conv2d | in     | out     | 1        | C        | key: a|b   |"
    layer = parse_dlc_info_text(f"-----\n{aligned}\n-----\n{good_row}\n").layers[0]
    assert layer.name == "odd|name"  # aligned rows are cut at the header's "|" columns
    assert layer.params == {"key": "a|b"}
    assert layer.inputs[0].dtype is None  # older SNPE: bare tensor names
    with pytest.raises(ParseError, match="is not an integer"):  # unaligned: a "|" in a name shifts the cells
        parse_dlc_info_text(f"{header}\n{row.replace('| conv |', '| odd|name |')}\n")


def test_dlc_info_errors() -> None:
    header = "| Id | Name | Type | Inputs | Outputs | Out Dims | Runtimes | Parameters |\n"
    with pytest.raises(ParseError, match="snpe-dlc-info: no layer table"):
        parse_dlc_info_text("DLC info of: x\nnothing here\n")
    with pytest.raises(ParseError, match=r"layer Id 'x1' is not an integer \(line 2: '\| x1 \| a \| Conv2d"):
        parse_dlc_info_text(header + "| x1 | a | Conv2d | | | | | |\n")
    with pytest.raises(ParseError, match="continuation row before any layer row"):
        parse_dlc_info_text(header + "|  |  |  | t | | | | |\n")
    with pytest.raises(ParseError, match="malformed tensor cell"):
        parse_dlc_info_text(header + "| 0 | a | Conv2d | t (data type: Float_32) | | | | |\n")
    with pytest.raises(ParseError, match="dimension 'a' is not an integer"):
        parse_dlc_info_text(header + "| 0 | a | Conv2d | | | 1xa | | |\n")
    with pytest.raises(ParseError, match="axis-quant line without a per-channel encoding"):
        parse_dlc_info_text(header + "| 0 | a | Conv2d | | | | | axis-quant: axis: 3, num_elements: 4 |\n")
    with pytest.raises(ParseError, match="malformed encoding"):
        parse_dlc_info_text(header + "| 0 | a | Conv2d | | | | | w encoding : bitwidth 8, min x |\n")
    with pytest.raises(ParseError, match=r"snpe-dlc-info CSV: .*line 2"):
        parse_dlc_info_csv("Id,Name,Type,Inputs,Outputs,Out Dims,Runtimes,Parameters\nq,a,b,,,,,\n")
    with pytest.raises(ParseError, match="no graph named 'nope'"):
        parse_dlc_info_text(sample("dlc_info_yolov6n.txt"), graph="nope")


def test_parse_encoding() -> None:
    enc = parse_encoding(
        "bitwidth 8, min -3.221591000000, max 4.315159000000, scale 0.029556000000, offset -109.000000000000"
    )
    assert (enc.bitwidth, enc.min, enc.max, enc.scale, enc.offset) == (8, -3.221591, 4.315159, 0.029556, -109.0)
    per_axis = parse_encoding(
        "bitwidth 8, min -1.0, max 1.0, scale 0.0078, offset -128.0 axis: 3, num_elements: 64 "
        "(above encoding is only for the first (channel_0) of 64 channels)"
    )
    assert (per_axis.axis, per_axis.num_channels) == (3, 64)
    with pytest.raises(ParseError, match="unexpected text after the encoding"):
        parse_encoding("bitwidth 8, min -1.0, max 1.0, scale 0.0078, offset -128.0 garbage")


# ------------------------------------------------------------------------------------------------ net-run


def test_failed_write() -> None:
    path = parse_failed_write(sample("net_run_failed_write.txt"))
    assert path == "/data/local/tmp/qc-run1/out/Result_0/model.24/Reshape_1_output_0.raw"
    assert parse_failed_write("all good\n") is None
    assert parse_failed_write("Failed to write data to: '/tmp/a b/c.raw'  \n") == "/tmp/a b/c.raw"
    with pytest.raises(ParseError, match="without a path"):
        parse_failed_write("Failed to write data to:   \n")


@pytest.mark.parametrize(
    ("parser", "message"),
    [
        (parse_throughput, "snpe-throughput-net-run: no 'Total throughput:' line found (last line: '')"),
        (parse_diagview_text, "snpe-diagview: no per-layer times found"),
        (parse_diagview_csv, "snpe-diagview CSV: no header row with 'Layer Id' found"),
        (parse_dlc_info_text, "snpe-dlc-info: no layer table (header 'Id | Name | Type | Inputs | Outputs ...') found"),
        (
            parse_dlc_info_csv,
            "snpe-dlc-info CSV: no layer table (header 'Id | Name | Type | Inputs | Outputs ...') found",
        ),
    ],
    ids=["throughput", "diagview_text", "diagview_csv", "dlc_info_text", "dlc_info_csv"],
)
@pytest.mark.parametrize("text", ["", "\n  \n"], ids=["empty", "blank"])
def test_empty_input_is_a_parse_error(parser: Callable[[str], object], message: str, text: str) -> None:
    """Empty (or blank) tool output never parses into an empty result: the error names the tool and what it
    looked for."""
    with pytest.raises(ParseError) as err:
        parser(text)
    assert str(err.value) == message
