"""Shared helpers of the SNPE output parsers: error location, number checks, units."""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Callable
from functools import wraps
from typing import ParamSpec, TypeVar

from qc.errors import ParseError

P = ParamSpec("P")
R = TypeVar("R")

_NUM = r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_SNUM = r"[-+]?" + _NUM
_MAX_SHOWN = 200

# --------------------------------------------------------------------------------------------------------------
# Error helpers


class _Where:
    """The tool and line a parser is looking at, for error messages."""

    def __init__(self, tool: str) -> None:
        self.tool = tool
        self.lineno = 0
        self.line = ""

    def at(self, lineno: int, line: str) -> None:
        self.lineno = lineno
        self.line = line

    def error(self, reason: str) -> ParseError:
        if self.lineno:
            shown = self.line if len(self.line) <= _MAX_SHOWN else self.line[: _MAX_SHOWN - 3] + "..."
            return ParseError(f"{self.tool}: {reason} (line {self.lineno}: {shown!r})")
        return ParseError(f"{self.tool}: {reason}")


def _guarded(tool: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Turn any unexpected exception of a parser into ParseError (a safety net: parsers raise ParseError)."""

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        @wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return func(*args, **kwargs)
            except ParseError:
                raise
            except (ValueError, IndexError, KeyError, TypeError, OverflowError, csv.Error, RecursionError) as exc:
                raise ParseError(f"{tool}: unreadable output ({type(exc).__name__}: {exc})") from None

        return wrapper

    return decorate


def _text_arg(tool: str, text: object) -> str:
    if isinstance(text, bytes):
        return text.decode("utf-8", errors="replace")
    if not isinstance(text, str):
        raise ParseError(f"{tool}: expected text, got {type(text).__name__}")
    return text


def _number(where: _Where, token: str, what: str) -> float:
    try:
        value = float(token)
    except ValueError:
        raise where.error(f"{what} {token!r} is not a number") from None
    if not math.isfinite(value):
        raise where.error(f"{what} {token!r} is not finite")
    return value


def _integer(where: _Where, token: str, what: str) -> int:
    token = token.strip()
    if not re.fullmatch(r"[-+]?\d{1,30}", token):
        raise where.error(f"{what} {token!r} is not an integer")
    return int(token)


_SI = {"": 1, "k": 1_000, "K": 1_000, "M": 1_000_000, "G": 1_000_000_000, "T": 1_000_000_000_000}


def _si_count(text: str) -> int | None:
    """``864 (0.0276%)`` -> 864, ``12M (3.4%)`` -> 12_000_000 (dlc-info rounds down to whole k/M)."""
    match = re.match(r"^\s*(\d{1,30})\s*([kKMGT]?)\b", text)
    if match is None:
        return None
    return int(match.group(1)) * _SI[match.group(2)]
