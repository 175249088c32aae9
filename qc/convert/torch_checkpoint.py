"""Read a PyTorch checkpoint (state dict) into numpy arrays without torch, through a restricted unpickler.

Both of PyTorch's formats are read: the zip archive (``torch.save`` since 1.6: ``<root>/data.pkl`` plus one raw
file per storage under ``<root>/data/``) and the legacy stream (a magic number, protocol version and system info,
the pickled object, the list of storage keys, then each storage as an int64 element count and its raw bytes).
The unpickler resolves only the handful of globals a state dict needs (tensor rebuilders, storage types,
``OrderedDict``); anything else (a pickled class, a function call) is refused, so a hostile checkpoint cannot run
code. Tensors are copied into fresh, C-contiguous little-endian arrays.
"""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from qc.errors import ModelError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

_STORAGE_DTYPES: dict[str, np.dtype[Any]] = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


@dataclass(frozen=True)
class _StorageType:
    name: str

    @property
    def dtype(self) -> np.dtype[Any]:
        return _STORAGE_DTYPES[self.name]


@dataclass
class _Storage:
    key: str
    dtype: np.dtype[Any]
    numel: int
    data: np.ndarray | None = None


@dataclass(frozen=True)
class _TensorRef:
    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor(storage: _Storage, offset: int, size: Any, stride: Any, *_: Any) -> _TensorRef:
    return _TensorRef(storage, int(offset), tuple(int(s) for s in size), tuple(int(s) for s in stride))


def _rebuild_parameter(data: _TensorRef, *_: Any) -> _TensorRef:
    return data


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: IO[bytes], source: str, storages: dict[str, _Storage]) -> None:
        super().__init__(file)
        self.source = source
        self.storages = storages

    def find_class(self, module: str, name: str) -> Any:
        if module == "collections" and name == "OrderedDict":
            return OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise ModelError(
            f"{self.source}: the checkpoint references {module}.{name}; only state dicts of tensors are read "
            "(tensor rebuilders, storage types, OrderedDict)."
        )

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise ModelError(f"{self.source}: unexpected persistent id {pid!r:.80} (expected a storage).")
        storage_type, key, _location, numel = pid[1], str(pid[2]), pid[3], int(pid[4])
        if not isinstance(storage_type, _StorageType):
            raise ModelError(f"{self.source}: storage {key} has an unsupported type {storage_type!r:.80}.")
        if len(pid) > 5 and pid[5] is not None:
            raise ModelError(f"{self.source}: storage views (legacy view_metadata) are not supported.")
        storage = self.storages.get(key)
        if storage is None:
            storage = self.storages[key] = _Storage(key, storage_type.dtype, numel)
        return storage


def _materialise(obj: Any, source: str) -> Any:
    if isinstance(obj, _TensorRef):
        data = obj.storage.data
        if data is None:
            raise ModelError(f"{source}: storage {obj.storage.key} has no data.")
        itemsize = data.dtype.itemsize
        needed = obj.offset + sum((s - 1) * st for s, st in zip(obj.size, obj.stride, strict=True)) + 1
        if obj.size and min(obj.size) > 0 and needed > data.size:
            raise ModelError(
                f"{source}: a tensor of shape {obj.size} reads past its storage {obj.storage.key} "
                f"({data.size} elements)."
            )
        view = np.lib.stride_tricks.as_strided(
            data[obj.offset :], shape=obj.size, strides=tuple(st * itemsize for st in obj.stride), writeable=False
        )
        return np.ascontiguousarray(view).astype(data.dtype.newbyteorder("="), copy=True)
    if isinstance(obj, dict):
        return {k: _materialise(v, source) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_materialise(v, source) for v in obj)
    return obj


def _load_zip(path: Path) -> Any:
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        pkl = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pkl) != 1:
            raise ModelError(f"{path}: a zip checkpoint must hold one data.pkl, found {len(pkl)}.")
        root = pkl[0][: -len("data.pkl")]
        storages: dict[str, _Storage] = {}
        obj = _Unpickler(io.BytesIO(zf.read(pkl[0])), str(path), storages).load()
        for key, storage in storages.items():
            member = f"{root}data/{key}"
            try:
                raw = zf.read(member)
            except KeyError:
                raise ModelError(f"{path}: storage {key} has no member {member}.") from None
            want = storage.numel * storage.dtype.itemsize
            if len(raw) < want:
                raise ModelError(f"{path}: {member} holds {len(raw)} bytes, expected {want}.")
            storage.data = np.frombuffer(raw[:want], dtype=storage.dtype)
    return _materialise(obj, str(path))


def _load_legacy(path: Path) -> Any:
    with path.open("rb") as f:
        header = [pickle.load(f) for _ in range(3)]  # trusted scalars/dicts only: magic, protocol, sys info
        if header[0] != LEGACY_MAGIC:
            raise ModelError(f"{path}: not a PyTorch checkpoint (bad magic number).")
        storages: dict[str, _Storage] = {}
        obj = _Unpickler(f, str(path), storages).load()
        keys = pickle.load(f)
        if not isinstance(keys, list) or set(map(str, keys)) != set(storages):
            raise ModelError(f"{path}: the storage key list does not match the storages the object references.")
        for key in map(str, keys):
            storage = storages[key]
            (count,) = struct.unpack("<q", f.read(8))
            if count != storage.numel:
                raise ModelError(f"{path}: storage {key} records {count} elements, expected {storage.numel}.")
            raw = f.read(count * storage.dtype.itemsize)
            if len(raw) != count * storage.dtype.itemsize:
                raise ModelError(f"{path}: storage {key} is truncated.")
            storage.data = np.frombuffer(raw, dtype=storage.dtype)
        trailing = f.read(1)
        if trailing:
            raise ModelError(f"{path}: unexpected bytes after the last storage.")
    return _materialise(obj, str(path))


def load_state_dict(path: Path) -> dict[str, np.ndarray]:
    """The tensors of a PyTorch state-dict checkpoint as numpy arrays, keyed by parameter name (file order)."""
    path = Path(path)
    try:
        obj = _load_zip(path) if zipfile.is_zipfile(path) else _load_legacy(path)
    except (pickle.UnpicklingError, EOFError, struct.error, ValueError, OSError) as exc:
        raise ModelError(f"{path}: cannot read the checkpoint: {exc}") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ModelError(f"{path}: expected a state dict, found {type(obj).__name__}.")
    out: dict[str, np.ndarray] = {}
    for key, value in obj.items():
        if isinstance(value, np.ndarray):
            out[str(key)] = value
    if not out:
        raise ModelError(f"{path}: the checkpoint holds no tensors.")
    return out
