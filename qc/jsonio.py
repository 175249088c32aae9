"""JSON files without bare NaN/Infinity: a non-finite number is written ``null`` with its reason beside it.

Strict parsers (browsers' ``JSON.parse``, ``jq``) reject ``NaN``. Every JSON file qc writes goes through
:func:`dumps` (``allow_nan=False`` proves it) and is read back with :func:`loads`, which restores the numbers:

``{"ap": nan, "reason": "no detections"}`` is written ``{"ap": null, "ap_reason": "NaN: no detections", ...}``;
``{"sqnr_db": inf}`` is written ``{"sqnr_db": null, "sqnr_db_reason": "+inf: ..."}``. The reason is the mapping's
own explanation when it has one (a ``reason``, ``undefined`` or ``empty_reason`` field, also as ``prefix.field``
for flat keys such as ``reference.ap``), else a generic one. A non-finite number inside a list has nowhere to put
a reason: it becomes ``null`` and reads back as ``None``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

REASON_SUFFIX = "_reason"
_TOKENS = {"NaN": math.nan, "+inf": math.inf, "-inf": -math.inf}
_REASON_FIELDS = ("undefined", "reason", "empty_reason")
_GENERIC = {
    "NaN": "not a number (undefined)",
    "+inf": "infinite (JSON has no infinity)",
    "-inf": "minus infinite (JSON has no infinity)",
}


def _token(value: float) -> str:
    return "NaN" if math.isnan(value) else ("+inf" if value > 0 else "-inf")


def _own_reason(mapping: Mapping[str, Any], key: str) -> str | None:
    prefix = key.rsplit(".", 1)[0] + "." if "." in key else ""
    for name in _REASON_FIELDS:
        for candidate in (f"{prefix}{name}", name):
            text = mapping.get(candidate)
            if isinstance(text, str) and text:
                return text
    return None


def encode(value: Any) -> Any:
    """A copy of ``value`` that ``json.dumps(..., allow_nan=False)`` accepts (tuples become lists)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            skey = str(key)
            if isinstance(item, float) and not math.isfinite(item):
                token = _token(item)
                if skey + REASON_SUFFIX in value:
                    raise ValueError(f"cannot write {skey!r} as null: the key {skey + REASON_SUFFIX!r} is taken")
                out[skey] = None
                out[skey + REASON_SUFFIX] = f"{token}: {_own_reason(value, skey) or _GENERIC[token]}"
            else:
                out[skey] = encode(item)
        return out
    if isinstance(value, list | tuple):
        return [encode(item) for item in value]
    return value


def decode(value: Any) -> Any:
    """The inverse of :func:`encode`: ``null`` with a ``<key>_reason`` of NaN/+inf/-inf is that number again."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key.endswith(REASON_SUFFIX) and value.get(key.removesuffix(REASON_SUFFIX), 0) is None:
                token = str(item).split(":", 1)[0]
                if token in _TOKENS:
                    continue  # consumed by its number below
            reason = value.get(key + REASON_SUFFIX)
            token = str(reason).split(":", 1)[0] if isinstance(reason, str) else ""
            out[key] = _TOKENS[token] if item is None and token in _TOKENS else decode(item)
        return out
    if isinstance(value, list):
        return [decode(item) for item in value]
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` of :func:`encode` with ``allow_nan=False``: never a bare NaN/Infinity."""
    return json.dumps(encode(value), allow_nan=False, **kwargs)


def loads(text: str) -> Any:
    """``json.loads`` then :func:`decode` (files written before, with bare NaN, still read)."""
    return decode(json.loads(text))


def write_json(path: Path, value: Any, **kwargs: Any) -> Path:
    """Write ``value`` atomically as JSON through :func:`dumps` (``indent=1`` unless given)."""
    from qc.cache import atomic_write_text

    kwargs.setdefault("indent", 1)
    atomic_write_text(path, dumps(value, **kwargs))
    return path


def read_json(path: Path) -> Any:
    """:func:`loads` of a UTF-8 file."""
    return loads(path.read_text(encoding="utf-8"))
