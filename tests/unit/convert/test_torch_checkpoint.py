"""The torch-free checkpoint reader: both PyTorch formats, written here by hand, and refusal of foreign globals."""

from __future__ import annotations

import io
import pickle
import struct
import sys
import types
import zipfile
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qc.convert.torch_checkpoint import LEGACY_MAGIC, load_state_dict
from qc.errors import ModelError


class _Storage:
    def __init__(self, key: str, data: np.ndarray) -> None:
        self.key = key
        self.data = data


class _Tensor:
    def __init__(self, storage: _Storage, offset: int, size: tuple[int, ...], stride: tuple[int, ...]) -> None:
        self.args: tuple[Any, ...] = (storage, offset, size, stride, False, OrderedDict())

    def __reduce__(self) -> tuple[Any, ...]:
        return (sys.modules["torch._utils"]._rebuild_tensor_v2, self.args)


@pytest.fixture
def fake_torch() -> Iterator[types.ModuleType]:
    """Just enough of a ``torch`` module for pickle to name the globals a real checkpoint names."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args: Any) -> None:
        raise AssertionError("never called while writing")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2  # type: ignore[attr-defined]
    storage_cls = type("FloatStorage", (), {"__module__": "torch", "__qualname__": "FloatStorage"})
    torch.FloatStorage = storage_cls  # type: ignore[attr-defined]
    torch._utils = utils  # type: ignore[attr-defined]
    saved = {k: sys.modules.get(k) for k in ("torch", "torch._utils")}
    sys.modules["torch"], sys.modules["torch._utils"] = torch, utils
    try:
        yield torch
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def _state(torch: types.ModuleType) -> tuple[OrderedDict[str, _Tensor], list[_Storage], dict[str, np.ndarray]]:
    w = np.arange(24, dtype=np.float32)
    b = np.array([1.5, -2.0, 3.25], np.float32)
    s0, s1 = _Storage("0", w), _Storage("1", b)
    sd = OrderedDict(
        [
            ("conv.weight", _Tensor(s0, 0, (2, 3, 4), (12, 4, 1))),
            ("conv.weight_t", _Tensor(s0, 4, (3, 2), (1, 4))),  # a strided view with an offset
            ("conv.bias", _Tensor(s1, 0, (3,), (1,))),
        ]
    )
    expected = {
        "conv.weight": w.reshape(2, 3, 4),
        "conv.weight_t": np.lib.stride_tricks.as_strided(w[4:], (3, 2), (4, 16)).copy(),
        "conv.bias": b,
    }
    return sd, [s0, s1], expected


def _pickle(obj: Any, torch: types.ModuleType, legacy: bool) -> bytes:
    buf = io.BytesIO()

    class P(pickle.Pickler):
        def persistent_id(self, o: Any) -> Any:
            if isinstance(o, _Storage):
                base = ("storage", torch.FloatStorage, o.key, "cpu", o.data.size)
                return (*base, None) if legacy else base
            return None

    P(buf, protocol=2).dump(obj)
    return buf.getvalue()


def test_zip_format(tmp_path: Path, fake_torch: types.ModuleType) -> None:
    sd, storages, expected = _state(fake_torch)
    path = tmp_path / "ckpt.pth"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", _pickle(sd, fake_torch, legacy=False))
        for s in storages:
            zf.writestr(f"archive/data/{s.key}", s.data.tobytes())
    got = load_state_dict(path)
    assert list(got) == list(expected)
    for k, v in expected.items():
        assert np.array_equal(got[k], v)
        assert got[k].flags.c_contiguous


def test_legacy_format_and_truncation(tmp_path: Path, fake_torch: types.ModuleType) -> None:
    sd, storages, expected = _state(fake_torch)
    body = b"".join(pickle.dumps(v, protocol=2) for v in (LEGACY_MAGIC, 1001, {"little_endian": True}))
    body += _pickle(sd, fake_torch, legacy=True) + pickle.dumps([s.key for s in storages], protocol=2)
    for s in storages:
        body += struct.pack("<q", s.data.size) + s.data.tobytes()
    path = tmp_path / "legacy.pth"
    path.write_bytes(body)
    got = load_state_dict(path)
    for k, v in expected.items():
        assert np.array_equal(got[k], v)
    path.write_bytes(body[:-4])
    with pytest.raises(ModelError, match="truncated"):
        load_state_dict(path)


def test_foreign_globals_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", b"\x80\x02cos\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03.")
    with pytest.raises(ModelError, match=r"references os\.system"):
        load_state_dict(path)
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ModelError):
        load_state_dict(path)
