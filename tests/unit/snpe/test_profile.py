"""diagview rows -> layer profile (qc.snpe.profile) and the processed-input check (qc.snpe.tools) on the format
fixtures of each SDK version."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest

from qc.errors import DeviceError
from qc.snpe.parsers import parse_diagview_text, parse_dlc_info_text
from qc.snpe.profile import layer_profile, match_layer
from qc.snpe.tools import Session, check_processed_inputs

FORMATS = Path(__file__).resolve().parents[2] / "fake_snpe" / "formats"


def test_htp_rows_are_matched_by_name_and_transfers_kept_apart() -> None:
    info = parse_dlc_info_text((FORMATS / "qairt-2.37" / "dlc_info.txt").read_text())
    times = parse_diagview_text((FORMATS / "qairt-2.37" / "diagview_dsp.txt").read_text())
    profile = layer_profile(times, info)
    rows = {r.layer: r for r in profile.rows}
    # diagview row 1 is dlc-info layer 0, row 5 is layer 4: matched by name, not by index
    assert rows["/backbone/stem/Conv"].op_type == "Conv2d"
    assert rows["/backbone/stem/Relu"].op_type == "Relu"
    assert rows["/detect/Div"].op_type == "Eltwise_Binary:DIVIDE"
    assert rows["/detect/Concat"].share == pytest.approx(2152 / 5361)
    assert [(r.layer, r.op_type) for r in profile.io] == [
        ("Input OpId_2", "input transfer"),
        ("Output OpId_3", "output transfer"),
    ]
    assert profile.run_ms == pytest.approx(1.328)


def test_name_less_rows_claim_no_layer() -> None:
    """SNPE 2.x text rows have no names: an index is not a layer id, so no layer or op type is claimed."""
    info = parse_dlc_info_text((FORMATS / "snpe-2.9" / "dlc_info.txt").read_text())
    times = parse_diagview_text((FORMATS / "snpe-2.9" / "diagview_dsp.txt").read_text())
    profile = layer_profile(times, info)
    assert [r.layer for r in profile.rows[:3]] == ["diagview row 0", "diagview row 1", "diagview row 2"]
    assert {r.op_type for r in profile.rows} == {"?"}


def test_cpu_names_with_a_leading_underscore_match_their_onnx_layer() -> None:
    info = parse_dlc_info_text((FORMATS / "qairt-2.37" / "dlc_info.txt").read_text())
    layer = match_layer("_backbone/stem/Relu", info.layers)
    assert layer is not None
    assert layer.name == "/backbone/stem/Relu"
    assert match_layer("_model/fc_1/MatMul", info.layers) is None  # not in this DLC: never a guess
    assert match_layer(None, info.layers) is None


def _session() -> Session:
    return cast(Session, SimpleNamespace(who="tiny (target)", label="rvc4 (root@host:22)"))


@pytest.mark.parametrize("version", ["snpe-2.9", "qairt-2.37"])
def test_processed_inputs_check(version: str) -> None:
    listing = "inputs/00000_0.raw\ninputs/00001_0.raw\ninputs/00002_0.raw\n"
    check_processed_inputs(_session(), (FORMATS / version / "net_run.txt").read_text(), listing)
    wrong = (FORMATS / version / "net_run_wrong_buffers.txt").read_text()
    with pytest.raises(DeviceError, match=r"printed the input file inputs/00000_0.raw \d times, but input_list.txt"):
        check_processed_inputs(_session(), wrong, listing)
    repeated = "".join("inputs/00000_0.raw\n" for _ in range(4))  # a profiling run lists one file 4 times
    text = "".join("Processing DNN input(s):\ninputs/00000_0.raw\n" for _ in range(4))
    check_processed_inputs(_session(), text, repeated)
