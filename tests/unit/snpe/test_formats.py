"""Every parser on every SDK version's hand-written format fixture (``tests/fake_snpe/formats/<version>/``).

The expected values sit in each version's ``expected.json``, written by hand from the fixture text; nothing here is
produced by qc's code or by the fake toolkit.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from qc.errors import ParseError
from qc.snpe.parsers import (
    LayerTimes,
    parse_diagview_csv,
    parse_diagview_text,
    parse_dlc_info_text,
    parse_parallel_run,
    parse_processed_inputs,
    parse_throughput,
)
from qc.snpe.runner import NATIVE_DTYPES

FORMATS = Path(__file__).resolve().parents[2] / "fake_snpe" / "formats"
VERSIONS = sorted(p.name for p in FORMATS.iterdir() if (p / "expected.json").is_file())


def _cases(tool: str) -> list[Any]:
    cases = []
    for version in VERSIONS:
        expected = json.loads((FORMATS / version / "expected.json").read_text())
        for fixture, want in expected.get(tool, {}).items():
            cases.append(pytest.param(FORMATS / version / fixture, want, id=f"{version}/{fixture}"))
    return cases


def test_there_are_at_least_two_versions_and_each_covers_every_tool() -> None:
    assert len(VERSIONS) >= 2
    tools = ("diagview_text", "diagview_csv", "throughput", "parallel_run", "net_run", "dlc_info")
    for version in VERSIONS:
        expected = json.loads((FORMATS / version / "expected.json").read_text())
        assert all(expected.get(tool) for tool in tools), (version, [t for t in tools if not expected.get(t)])


def _check_times(times: LayerTimes, want: dict[str, Any]) -> None:
    assert times.unit == want["unit"]
    assert len(times.rows) == want["layers"]
    assert times.total == pytest.approx(want["total"])
    assert {r.kind: r.time for r in times.io} == pytest.approx(want["io"])
    assert all(r.kind == "layer" for r in times.rows)
    assert not any((r.name or "").startswith(("Input OpId", "Output OpId")) for r in times.rows)
    slowest = times.top(1)[0]
    assert [slowest.index, slowest.name] == want["slowest"]
    assert times.rows[0].name == want["first_name"]
    assert times.total_inference_time_us == pytest.approx(want["total_inference_us"])
    assert sum(r.share for r in times.rows) == pytest.approx(1.0)
    if times.io:  # an I/O row's share is of everything profiled, layers and transfers
        assert times.all_total == pytest.approx(want["total"] + sum(want["io"].values()))
        for row in times.io:
            assert row.share == pytest.approx(row.time / times.all_total)


@pytest.mark.parametrize(("path", "want"), _cases("diagview_text"))
def test_diagview_text(path: Path, want: dict[str, Any]) -> None:
    _check_times(parse_diagview_text(path.read_text()), want)


@pytest.mark.parametrize(("path", "want"), _cases("diagview_csv"))
def test_diagview_csv(path: Path, want: dict[str, Any]) -> None:
    _check_times(parse_diagview_csv(path.read_text()), want)


@pytest.mark.parametrize(("path", "want"), _cases("diagview_text"))
def test_diagview_text_without_its_layer_rows_is_an_error(path: Path, want: dict[str, Any]) -> None:
    lines = [line for line in path.read_text().splitlines() if not line.strip()[:1].isdigit()]
    with pytest.raises(ParseError, match="no per-layer times"):
        parse_diagview_text("\n".join(lines))


def test_the_htp_output_transfer_is_never_the_slowest_layer() -> None:
    """The real QAIRT 2.37 capture: the Output row holds 45% of all cycles and is not a layer."""
    times = parse_diagview_text((FORMATS / "qairt-2.37" / "diagview_dsp.txt").read_text())
    output = next(r for r in times.io if r.kind == "output")
    assert output.share == pytest.approx(6038 / 13541)
    assert times.top(1)[0].name == "detect/Concat"
    assert times.top(1)[0].share == pytest.approx(2152 / 5361)


@pytest.mark.parametrize(("path", "want"), _cases("throughput"))
def test_throughput(path: Path, want: float) -> None:
    result = parse_throughput(path.read_text())
    assert result.total_infs_per_sec == pytest.approx(want)
    assert result.tool == "snpe-throughput-net-run"
    assert parse_parallel_run(path.read_text()).total_infs_per_sec == pytest.approx(want)  # a total line wins


@pytest.mark.parametrize(("path", "want"), _cases("parallel_run"))
def test_parallel_run_takes_the_first_rate(path: Path, want: float) -> None:
    result = parse_parallel_run(path.read_text())
    assert result.total_infs_per_sec == pytest.approx(want)
    assert result.tool == "snpe-parallel-run"
    with pytest.raises(ParseError, match="Total throughput"):
        parse_throughput(path.read_text())


def test_parallel_run_without_a_rate_is_an_error() -> None:
    with pytest.raises(ParseError, match=r"snpe-parallel-run: no '<number> infs/sec'"):
        parse_parallel_run("Processing DNN input(s):\ninputs/a.raw\nERROR: device lost\n")


@pytest.mark.parametrize(("path", "want"), _cases("net_run"))
def test_net_run_processed_inputs(path: Path, want: dict[str, Any]) -> None:
    seen = parse_processed_inputs(path.read_text())
    assert len(seen.executions) == want["executions"]
    assert all(len(paths) == 1 for paths in seen.executions)
    assert {p: n for p, n in seen.counts.items() if n > 1} == want["repeated"]


def test_net_run_paths_on_the_header_line_and_named_inputs() -> None:
    """QAIRT 2.4x prints the path on the header line; multi-input lists name each input."""
    text = (
        "Processing graph : g\nProcessing DNN input(s): /tmp/ws/input.raw\n"
        "Processing DNN input(s):\nimages:=inputs/0_0.raw mask:=inputs/0_1.raw\nSuccessfully executed graph g\n"
    )
    seen = parse_processed_inputs(text)
    assert seen.executions == [["/tmp/ws/input.raw"], ["inputs/0_0.raw", "inputs/0_1.raw"]]


@pytest.mark.parametrize(("path", "want"), _cases("dlc_info"))
def test_dlc_info(path: Path, want: dict[str, Any]) -> None:
    info = parse_dlc_info_text(path.read_text())
    assert len(info.layers) == want["layers"]
    assert info.graph_name == want["graph"]
    assert [t.name for t in info.inputs] == want["inputs"]
    assert [t.name for t in info.outputs] == want["outputs"]
    assert {layer.name: layer.op_label for layer in info.layers if layer.name in want["op_labels"]} == want["op_labels"]
    cells = {c.name: c.dtype for layer in info.layers for c in (*layer.inputs, *layer.outputs)}
    for io in (*info.inputs, *info.outputs):
        assert io.dtype == cells[io.name]
    assert {name: cells[name] for name in want["dtypes"]} == want["dtypes"]
    for dtype in want["dtypes"].values():
        assert dtype in NATIVE_DTYPES, f"{dtype} has no native file type"
    enc = info.encoding_of(want["outputs"][0])
    assert enc is not None
    assert (enc.bitwidth, enc.offset) == (want["output_encoding"]["bitwidth"], want["output_encoding"]["offset"])
    assert math.isclose(enc.scale, want["output_encoding"]["scale"], rel_tol=1e-6)
    for tensor, (axis, channels, offset) in want["weight_axis"].items():
        weight = info.encoding_of(tensor)
        assert weight is not None
        assert (weight.axis, weight.num_channels, weight.offset) == (axis, channels, offset)


def test_symmetric_native_types_are_signed() -> None:
    import numpy as np

    assert NATIVE_DTYPES["sFxp_8"] is np.int8
    assert NATIVE_DTYPES["sFxp_16"] is np.int16
