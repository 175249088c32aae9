"""Parsers under hypothesis: random text and mutated real samples raise ParseError or parse, nothing else."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qc.errors import ParseError
from qc.snpe.parsers import (
    DlcInfo,
    LayerTimes,
    ThroughputResult,
    parse_diagview_csv,
    parse_diagview_text,
    parse_dlc_info_csv,
    parse_dlc_info_text,
    parse_encoding,
    parse_failed_write,
    parse_throughput,
)

DATA = Path(__file__).parent / "data"

Parser = Callable[[str], object]

PARSERS: dict[str, tuple[Parser, list[str]]] = {
    "throughput": (parse_throughput, ["throughput_dsp.txt", "throughput_two_containers.txt"]),
    "diagview_text": (parse_diagview_text, ["diagview.txt", "diagview_cpu.txt"]),
    "diagview_csv": (parse_diagview_csv, ["diagview_v2.csv"]),
    "dlc_info_text": (
        parse_dlc_info_text,
        ["dlc_info_yolov6n.txt", "dlc_info_all_encodings.txt", "dlc_info_concat_row.txt"],
    ),
    "dlc_info_csv": (parse_dlc_info_csv, ["dlc_info_yolov6n.csv", "dlc_info_all_encodings.csv"]),
    "failed_write": (parse_failed_write, ["net_run_failed_write.txt"]),
    "encoding": (parse_encoding, []),
}

# Characters that matter to the formats, so that random text often looks almost valid.
ALPHABET = st.sampled_from([*"0123456789 .,:;|-+x[]()_\"'\n\r\tabcdeinopstuyADGCTN/µé\x00", "\u2028"])
TOKENS = st.sampled_from(
    [
        "Total throughput:",
        " infs/sec",
        "[Thread 0 - dsp] ",
        "Layer Times:",
        "Layer Id,Layer Name,Time,Unit of Measurement,Message\n",
        " cycles : DSP",
        "| Id | Name | Type | Inputs | Outputs | Out Dims | Runtimes | Parameters |\n",
        "| Input Name | Dimensions | Type | Encoding Info |\n",
        " (data type: uFxp_8; tensor dimension: [1,2]; tensor type: NATIVE)",
        " encoding : bitwidth 8, min -1.0, max 1.0, scale 0.1, offset -10.0",
        " encoding for channel_0: bitwidth 8, min -1, max 1, scale 0.1, offset -1",
        "axis-quant: axis: 3, num_elements: 4",
        "Total parameters: ",
        "Total MACs per inference: ",
        "Failed to write data to: ",
        "1e999",
        "-----\n",
        "|  |  |  | ",
        '"',
        "\n",
    ]
)
TEXT = st.lists(st.one_of(st.text(ALPHABET, max_size=20), TOKENS), max_size=40).map("".join)


def _only_parse_errors(parser: Parser, text: str) -> None:
    """Parsing either succeeds or raises ParseError with a message; any other exception fails the test."""
    error: ParseError | None = None
    try:
        parser(text)
    except ParseError as exc:
        error = exc
    if error is not None:
        assert type(error) is ParseError
        assert str(error).split(":")[0] in {
            "snpe-throughput-net-run",
            "snpe-diagview",
            "snpe-diagview CSV",
            "snpe-dlc-info",
            "snpe-dlc-info CSV",
            "snpe-net-run",
        }


@pytest.mark.parametrize("name", sorted(PARSERS))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.one_of(TEXT, st.text(max_size=300)))
def test_random_text(name: str, text: str) -> None:
    _only_parse_errors(PARSERS[name][0], text)


@st.composite
def mutated(draw: st.DrawFn, source: str) -> str:
    """A real sample with a few random edits: deletions, duplications, insertions, replaced lines."""
    lines = source.splitlines(keepends=True)
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            lines = [""]
        kind = draw(st.sampled_from(["delete", "duplicate", "insert", "replace", "truncate", "chars"]))
        i = draw(st.integers(0, len(lines) - 1))
        if kind == "delete":
            del lines[i]
        elif kind == "duplicate":
            lines.insert(i, lines[i])
        elif kind == "insert":
            lines.insert(i, draw(TEXT) + "\n")
        elif kind == "replace":
            lines[i] = draw(TEXT) + "\n"
        elif kind == "truncate":
            lines[i] = lines[i][: draw(st.integers(0, max(0, len(lines[i]) - 1)))]
        else:
            line = lines[i]
            if line:
                j = draw(st.integers(0, len(line) - 1))
                lines[i] = line[:j] + draw(st.text(ALPHABET, min_size=0, max_size=3)) + line[j + 1 :]
    return "".join(lines)


SAMPLES = [(name, file) for name, (_p, files) in sorted(PARSERS.items()) for file in files]


@pytest.mark.parametrize(("name", "file"), SAMPLES)
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_samples(name: str, file: str, data: st.DataObject) -> None:
    source = (DATA / file).read_text(encoding="utf-8")
    text = data.draw(mutated(source))
    _only_parse_errors(PARSERS[name][0], text)


def fingerprint(result: object) -> object:
    """The parts of a parse result that the sample files state plainly (counts, names, numbers), as literals."""
    if isinstance(result, ThroughputResult):
        return (result.total_infs_per_sec, [(t.index, t.runtime, t.infs_per_sec, t.batch) for t in result.threads])
    if isinstance(result, LayerTimes):
        rows = [(r.index, r.name, r.time, r.message) for r in result.rows]
        return (result.unit, result.total, rows)
    if isinstance(result, DlcInfo):
        return (
            result.graph_name,
            [(layer.id, layer.name, layer.type) for layer in result.layers],
            [(io.name, io.dims, io.dtype) for io in result.inputs],
            [(io.name, io.dims, io.dtype) for io in result.outputs],
            [(io.name, io.dims) for io in result.unconsumed],
            result.totals.params,
        )
    return result


YOLOV6N_LAYERS = [
    (0, "/backbone/stem/block/conv/Conv", "Conv2d"),
    (1, "/detect/cls_preds.0/Conv", "Conv2d"),
    (2, "/detect/Sigmoid", "Sigmoid"),
    (3, "/detect/Div", "Eltwise_Binary"),
    (4, "/detect/Mul", "Eltwise_Binary"),
    (5, "/detect/Concat", "Concat"),
    (6, "/detect/Reshape_dbg", "Reshape"),
]
YOLOV6N_IO = (
    [("images", (1, 288, 512, 3), "uFxp_8")],
    [("output1_yolov6r2", (1, 36, 64, 85), "uFxp_8")],
    [("/detect/Reshape_dbg_output_0", (1, 2304, 4))],
)
DSP_CYCLES = [162014.0, 91455.0, 20317.0, 9310.0, 15771.0, 1133.0]  # diagview.txt rows 1..6 (row 0: 0 cycles)

# What each sample says, read off the files by hand (tests/unit/snpe/data).
EXPECTED: dict[str, object] = {
    "throughput_dsp.txt": (1581.96, [(0, "dsp_fixed8_tf", 1581.96, 1)]),
    "throughput_two_containers.txt": (1015.50, [(0, "dsp_fixed8_tf", 812.40, 1), (1, "gpu_float16", 203.10, 1)]),
    "diagview.txt": (
        "cycles",
        300000.0,
        [(0, None, 0.0, None)] + [(i, None, t, None) for i, t in enumerate(DSP_CYCLES, 1)],
    ),
    "diagview_cpu.txt": (
        "us",
        41510.0,
        [(0, None, 3.0, None), (1, None, 20111.0, None), (2, None, 15007.0, None), (3, None, 6389.0, None)],
    ),
    "diagview_v2.csv": (
        "cycles",
        300000.0,
        [
            (0, "/backbone/stem/block/conv/Conv", 162014.0, None),
            (1, "/detect/cls_preds.0/Conv", 91455.0, None),
            (2, "/detect/Sigmoid", 20317.0, None),
            (3, "/detect/Div", 9310.0, None),
            (4, "/detect/Mul", 1133.0, None),
            (5, "/detect/Concat", 15771.0, None),
            (6, "/detect/Reshape_dbg", 0.0, "fused, no time"),
        ],
    ),
    "dlc_info_yolov6n.txt": ("yolov6n-r2-288x512", YOLOV6N_LAYERS, *YOLOV6N_IO, 5648),
    "dlc_info_all_encodings.txt": ("yolov6n-r2-288x512", YOLOV6N_LAYERS, *YOLOV6N_IO, 5312),
    "dlc_info_yolov6n.csv": ("yolov6n-r2-288x512", YOLOV6N_LAYERS, *YOLOV6N_IO, 5648),
    "dlc_info_all_encodings.csv": ("yolov6n-r2-288x512", YOLOV6N_LAYERS, *YOLOV6N_IO, 5312),
    "dlc_info_concat_row.txt": (
        "yolov6n-coco-640x640",
        [(238, "/model.24/Concat_3", "Concat")],
        [],
        [("output0", (1, 25200, 85), "Float_32")],
        [],
        0,
    ),
    "net_run_failed_write.txt": "/data/local/tmp/qc-run1/out/Result_0/model.24/Reshape_1_output_0.raw",
}


def test_every_sample_has_an_expectation() -> None:
    assert sorted(EXPECTED) == sorted(file for _name, file in SAMPLES)


@pytest.mark.parametrize(("name", "file"), SAMPLES)
def test_samples_parse(name: str, file: str) -> None:
    result = PARSERS[name][0]((DATA / file).read_text(encoding="utf-8"))
    assert fingerprint(result) == EXPECTED[file]


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_non_text_input(name: str) -> None:
    parser = PARSERS[name][0]
    with pytest.raises(ParseError):
        parser(None)  # type: ignore[arg-type]
    with pytest.raises(ParseError):
        parser(12)  # type: ignore[arg-type]
