"""Decoders on constructed tensors whose correct boxes are known."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from qc.errors import ConfigError, DataError
from qc.eval.decoders import DecodeSettings, decoder_names, get_decoder
from qc.eval.types import RawDetections

NC = 3
F32 = npt.NDArray[np.float32]


def sorted_dets(d: RawDetections) -> list[Any]:
    rows = [(b.tolist(), float(s), int(c)) for b, s, c in zip(d.boxes, d.scores, d.classes, strict=True)]
    return sorted(rows, key=lambda r: -r[1])


# ---------------------------------------------------------------------------------------------- yolo-decoded


def yolo_decoded_tensor() -> F32:
    t = np.zeros((2, 50, 5 + NC), dtype=np.float32)
    t[0, 3, :5] = [50, 60, 20, 40, 0.9]  # box 40,40,60,80
    t[0, 3, 5 + 2] = 0.8
    t[0, 10, :5] = [100, 100, 10, 10, 0.5]  # box 95,95,105,105, two classes
    t[0, 10, 5 + 0] = 0.6
    t[0, 10, 5 + 1] = 0.4
    t[0, 20, :5] = [10, 10, 4, 4, 1.0]  # objectness but no class: no detection
    t[1, 0, :5] = [8, 8, 16, 16, 0.5]  # second image
    t[1, 0, 5 + 1] = 0.5
    return t


def test_yolo_decoded_multi_label() -> None:
    out = get_decoder("yolo-decoded")({"output0": yolo_decoded_tensor()}, DecodeSettings())
    assert len(out) == 2
    got = sorted_dets(out[0])
    assert [g[0] for g in got] == [[40, 40, 60, 80], [95, 95, 105, 105], [95, 95, 105, 105]]
    assert [g[1] for g in got] == pytest.approx([0.72, 0.3, 0.2])
    assert [g[2] for g in got] == [2, 0, 1]
    assert sorted_dets(out[1]) == [([0.0, 0.0, 16.0, 16.0], 0.25, 1)]


def test_yolo_decoded_deploy_keeps_best_class_and_threshold() -> None:
    out = get_decoder("yolo-decoded")({"output0": yolo_decoded_tensor()}, DecodeSettings.deploy())
    got = sorted_dets(out[0])
    assert [g[2] for g in got] == [2, 0]
    assert [g[1] for g in got] == pytest.approx([0.72, 0.3])
    assert len(out[1]) == 1  # 0.25 >= 0.25


def test_yolo_decoded_nms_suppresses_duplicates() -> None:
    t = np.zeros((1, 4, 5 + NC), dtype=np.float32)
    t[0, 0, :5] = [50, 50, 20, 20, 0.9]
    t[0, 1, :5] = [51, 50, 20, 20, 0.8]  # same object, lower score
    t[0, :2, 5] = 1.0
    out = get_decoder("yolo-decoded")({"o": t}, DecodeSettings())
    assert sorted_dets(out[0]) == [([40, 40, 60, 60], pytest.approx(0.9), 0)]


def test_output_name_selection() -> None:
    t = yolo_decoded_tensor()
    dec = get_decoder("yolo-decoded")
    with pytest.raises(DataError, match=r"set task\.outputs"):
        dec({"a": t, "b": t}, DecodeSettings())
    assert len(dec({"a": t, "b": t[:1]}, DecodeSettings(output_names=("b",)))) == 1
    with pytest.raises(DataError, match="'c'"):
        dec({"a": t}, DecodeSettings(output_names=("c",)))
    with pytest.raises(DataError, match="holds 3 classes but num_classes is 80"):
        dec({"a": t}, DecodeSettings(num_classes=80))
    with pytest.raises(DataError, match=r"\(B, N, 5 \+ nc\)"):
        dec({"a": t[:, :, :5]}, DecodeSettings())


# ---------------------------------------------------------------------------------------------- yolov8


def test_yolov8() -> None:
    t = np.zeros((1, 4 + NC, 30), dtype=np.float32)
    t[0, :4, 7] = [50, 60, 20, 40]
    t[0, 4 + 2, 7] = 0.8
    t[0, :4, 12] = [100, 100, 10, 10]
    t[0, 4 + 0, 12] = 0.3
    t[0, 4 + 1, 12] = 0.6
    out = get_decoder("yolov8")({"output0": t}, DecodeSettings())
    got = sorted_dets(out[0])
    assert got == [
        ([40, 40, 60, 80], pytest.approx(0.8), 2),
        ([95, 95, 105, 105], pytest.approx(0.6), 1),
        ([95, 95, 105, 105], pytest.approx(0.3), 0),
    ]
    assert len(get_decoder("yolov8")({"output0": t}, DecodeSettings.deploy())[0]) == 2


# ---------------------------------------------------------------------------------------------- yolov6r2

IN_HW = (64, 96)  # grids 8x12 (s8), 4x6 (s16), 2x3 (s32)


def yolov6_heads() -> dict[str, F32]:
    c = 4 + 1 + NC
    heads = {
        "output1_yolov6r2": np.zeros((1, c, 8, 12), np.float32),
        "output2_yolov6r2": np.zeros((1, c, 4, 6), np.float32),
        "output3_yolov6r2": np.zeros((1, c, 2, 3), np.float32),
    }
    h8 = heads["output1_yolov6r2"]
    h8[0, :4, 2, 3] = [1, 2, 3, 4]  # cell x=3, y=2 -> (3.5-1, 2.5-2, 3.5+3, 2.5+4) * 8
    h8[0, 4, 2, 3] = 0.0  # confidence channel: must be ignored
    h8[0, 5 + 1, 2, 3] = 0.9
    h8[0, 4, 5, 5] = 1.0  # confidence 1 but no class score: no detection
    h8[0, :4, 5, 5] = [1, 1, 1, 1]
    h32 = heads["output3_yolov6r2"]
    h32[0, :4, 1, 2] = [0.5, 0.5, 0.5, 0.5]  # cell x=2, y=1 -> (2, 1, 3, 2) * 32
    h32[0, 4, 1, 2] = 1.0
    h32[0, 5 + 2, 1, 2] = 0.7
    return heads


EXPECTED_V6 = [([20.0, 4.0, 52.0, 52.0], pytest.approx(0.9), 1), ([64.0, 32.0, 96.0, 64.0], pytest.approx(0.7), 2)]


def test_yolov6r2_nchw() -> None:
    out = get_decoder("yolov6r2")(yolov6_heads(), DecodeSettings(input_hw=IN_HW))
    assert sorted_dets(out[0]) == EXPECTED_V6


def test_yolov6r2_nhwc_and_order_independent() -> None:
    nhwc = {k: np.ascontiguousarray(v.transpose(0, 2, 3, 1)) for k, v in reversed(yolov6_heads().items())}
    out = get_decoder("yolov6r2")(nhwc, DecodeSettings(layout="NHWC", input_hw=IN_HW))
    assert sorted_dets(out[0]) == EXPECTED_V6


def test_yolov6r2_strides_without_input_size() -> None:
    out = get_decoder("yolov6r2")(yolov6_heads(), DecodeSettings())
    assert sorted_dets(out[0]) == EXPECTED_V6


def test_yolov6r2_errors() -> None:
    dec = get_decoder("yolov6r2")
    with pytest.raises(DataError, match="integer stride"):
        dec(yolov6_heads(), DecodeSettings(input_hw=(60, 96)))
    with pytest.raises(DataError, match="is layout NHWC right"):
        dec(yolov6_heads(), DecodeSettings(layout="NHWC"))
    heads = yolov6_heads()
    del heads["output3_yolov6r2"]
    with pytest.raises(DataError, match="needs 3 output tensor"):
        dec(heads, DecodeSettings())


# ---------------------------------------------------------------------------------------------- registry


def test_registry_and_errors() -> None:
    assert decoder_names() == ["yolo-decoded", "yolov6r2", "yolov8"]
    with pytest.raises(ConfigError, match="Unknown decoder 'yolov99'"):
        get_decoder("yolov99")
    with pytest.raises(ConfigError, match="cannot import module"):
        get_decoder("qc_no_such_module_xyz:decode")
    with pytest.raises(ConfigError, match="has no attribute 'nope'"):
        get_decoder("qc.eval.decoders:nope")
    with pytest.raises(ConfigError, match=r"form 'package\.module:function'"):
        get_decoder("qc.eval.decoders:")


def test_user_decoder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "qc_test_user_decoder.py").write_text(
        textwrap.dedent(
            """
            import numpy as np
            from qc.eval.types import RawDetections

            def decode(outputs, settings):
                t = outputs["out"]
                return [RawDetections(t[i, :, :4], t[i, :, 4], np.zeros(t.shape[1], np.int64))
                        for i in range(t.shape[0])]

            def bad(outputs, settings):
                return "nonsense"
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "qc_test_user_decoder", raising=False)
    t = np.array([[[1, 2, 3, 4, 0.5]]], dtype=np.float32)
    out = get_decoder("qc_test_user_decoder:decode")({"out": t}, DecodeSettings())
    assert sorted_dets(out[0]) == [([1, 2, 3, 4], 0.5, 0)]
    with pytest.raises(DataError, match="must return a list"):
        get_decoder("qc_test_user_decoder:bad")({"out": t}, DecodeSettings())
