"""qnn-net-run I/O files: layouts, native types, the input list, size checks, the command line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qc.errors import DataError, DeviceError, ModelError
from qc.qnn.context_info import ContextTensor
from qc.qnn.netrun import (
    IoPlan,
    dequantize,
    match_tensors,
    net_run_argv,
    quantize,
    read_output,
    resolve_layout,
    write_inputs,
)

U8 = "QNN_DATATYPE_UFIXED_POINT_8"


def tensor(name: str, dims: tuple[int, ...], dtype: str = U8, scale: float = 0.1, offset: int = -128) -> ContextTensor:
    if "FIXED" in dtype:
        return ContextTensor(name, dtype, dims, "scale_offset", scale, offset)
    return ContextTensor(name, dtype, dims, "none")


def test_layouts() -> None:
    nhwc = tensor("x", (1, 8, 12, 3))
    assert resolve_layout("t", "x", (1, 3, 8, 12), nhwc, "auto") == (0, 3, 1, 2)
    assert resolve_layout("t", "x", (1, 8, 12, 3), nhwc, "auto") == (0, 1, 2, 3)
    with pytest.raises(ModelError, match="both as the ONNX layout and as NHWC; set io_layout"):
        resolve_layout("t", "x", (1, 3, 3, 3), tensor("x", (1, 3, 3, 3)), "auto")
    assert resolve_layout("t", "x", (1, 3, 3, 3), tensor("x", (1, 3, 3, 3)), "nhwc") == (0, 3, 1, 2)
    with pytest.raises(ModelError, match=r"'x' has dims \[1, 8, 12, 3\].*\[1, 4, 8, 12\]"):
        resolve_layout("t", "x", (1, 4, 8, 12), nhwc, "auto")
    assert resolve_layout("t", "y", (1, "n"), tensor("y", (1, 5)), "auto") == (0, 1)
    with pytest.raises(ModelError, match=r"does not give the shape of 'x'.*set io_layout"):
        resolve_layout("t", "x", (), nhwc, "auto")
    assert resolve_layout("t", "x", (), nhwc, "nhwc") == (0, 3, 1, 2)


def test_match_by_verbatim_or_identifier_name() -> None:
    tensors = [tensor("_7", (1, 4)), tensor("scores", (1, 2))]
    plans = match_tensors("t", {"7": (1, 4), "scores": (1, 2)}, tensors, "auto", "output")
    assert [(p.key, p.tensor.name) for p in plans] == [("7", "_7"), ("scores", "scores")]
    with pytest.raises(ModelError, match="output 'boxes' matches none of the context's graph outputs"):
        match_tensors("t", {"boxes": (1, 4)}, tensors, "auto", "output")


def test_quantize_round_trip() -> None:
    x = np.linspace(-12.8, 12.7, 256, dtype=np.float32)
    q = quantize(x, 0.1, -128, np.uint8)
    assert q.dtype == np.uint8
    assert q.min() == 0
    assert q.max() == 255
    assert np.allclose(dequantize(q, 0.1, -128), x, atol=0.05 + 1e-6)
    assert quantize(np.array([100.0]), 0.1, -128, np.uint8)[0] == 255  # clipped


def test_write_inputs_native_and_list(tmp_path: Path) -> None:
    plans = [
        IoPlan("images", tensor("images", (1, 2, 2, 3), scale=1 / 255, offset=0), (0, 3, 1, 2)),
        IoPlan("gain", tensor("gain", (1,), "QNN_DATATYPE_FLOAT_16"), (0,)),
    ]
    x = np.arange(12, dtype=np.float32).reshape(1, 3, 2, 2) / 11.0
    listing = write_inputs("t", tmp_path, plans, [{"images": x, "gain": np.array([2.0], np.float32)}], native=True)
    assert listing == "images:=inputs/00000_0.raw gain:=inputs/00000_1.raw\n"
    img = np.fromfile(tmp_path / "inputs/00000_0.raw", np.uint8).reshape(1, 2, 2, 3)
    assert np.array_equal(img, np.round(np.transpose(x, (0, 2, 3, 1)) * 255).astype(np.uint8))
    assert np.fromfile(tmp_path / "inputs/00000_1.raw", "<f2")[0] == 2.0
    with pytest.raises(DataError, match="no value for model input 'gain'"):
        write_inputs("t", tmp_path, plans, [{"images": x}], native=True)
    with pytest.raises(DataError, match=r"becomes \[1, 2, 3, 3\].*dims \[1, 2, 2, 3\]"):
        write_inputs("t", tmp_path, plans[:1], [{"images": np.zeros((1, 3, 2, 3), np.float32)}], native=False)


def test_write_inputs_repeat_single_input(tmp_path: Path) -> None:
    plans = [IoPlan("x", tensor("x", (1, 2), "QNN_DATATYPE_FLOAT_32"), (0, 1))]
    listing = write_inputs("t", tmp_path, plans, [{"x": np.ones((1, 2), np.float32)}], native=False, repeat=3)
    assert listing == "inputs/00000_0.raw\n" * 3


def test_read_output(tmp_path: Path) -> None:
    folder = tmp_path / "Result_0"
    folder.mkdir()
    plan = IoPlan("7", tensor("_7", (1, 2, 2, 1), scale=0.5, offset=-2), (0, 3, 1, 2))
    np.array([0, 1, 2, 3], np.uint8).tofile(folder / "_7_native.raw")
    got = read_output("t", folder, plan, image=0, native=True, label="dev")
    assert got.shape == (1, 1, 2, 2)
    assert np.allclose(got.ravel(), [-1.0, -0.5, 0.0, 0.5])
    (folder / "_7_native.raw").write_bytes(b"\x00\x01")
    with pytest.raises(DeviceError, match=r"has 2 bytes.*needs 4\. A partial"):
        read_output("t", folder, plan, image=0, native=True, label="dev")
    (folder / "_7_native.raw").unlink()
    with pytest.raises(DeviceError, match=r"wrote no file for output '_7' \(model output '7'\).*_7_native.raw"):
        read_output("t", folder, plan, image=0, native=True, label="dev")
    np.array([1, 2, 3, 4], "<f4").tofile(folder / "_7.raw")
    assert np.allclose(read_output("t", folder, plan, image=0, native=False, label="dev").ravel(), [1, 2, 3, 4])


def test_per_axis_native_output_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "Result_0"
    folder.mkdir()
    plan = IoPlan("y", ContextTensor("y", U8, (1, 2), "per-axis"), (0, 1))
    np.zeros(2, np.uint8).tofile(folder / "y_native.raw")
    with pytest.raises(ModelError, match="per-axis encoding, which qc cannot dequantize; set native_io: false"):
        read_output("t", folder, plan, image=0, native=True, label="dev")


def test_argv() -> None:
    argv = net_run_argv("/r/qc-1/context.bin", backend="libQnnHtp.so", native=True, profiling="detailed")
    assert argv[:3] == ["qnn-net-run", "--retrieve_context", "/r/qc-1/context.bin"]
    assert "--use_native_input_files" in argv
    assert "--use_native_output_files" in argv
    assert argv[-2:] == ["--profiling_level", "detailed"]
    assert "--debug" not in net_run_argv("c", backend="b", native=False, perf_profile="burst")
