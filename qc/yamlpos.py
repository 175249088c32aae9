"""YAML loading that remembers where every value came from, so errors can say ``file:LINE:COL``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from qc.errors import ConfigError

Loc = tuple[str | int, ...]


@dataclass
class Positions:
    """Maps a path into the loaded data (keys and list indices) to a 1-based (line, column)."""

    values: dict[Loc, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Loc, tuple[int, int]] = field(default_factory=dict)

    def locate(self, loc: Sequence[str | int], *, at_key: bool = False) -> tuple[int, int]:
        """Position of the deepest existing prefix of ``loc``.

        Components that are not part of the data (pydantic adds union tags such as ``'ort-int8'``) are skipped.
        With ``at_key`` (an unknown field), the position of the key itself rather than of its value.
        """
        best: Loc = ()
        for part in loc:
            candidate = (*best, part)
            if candidate in self.values:
                best = candidate
        if at_key and best in self.keys:
            return self.keys[best]
        return self.values.get(best, (1, 1))


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def load_yaml_with_positions(path: Path) -> tuple[Any, Positions]:
    """Parse ``path``; raise one :class:`ConfigError` listing syntax errors or duplicate keys with positions."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the file: {exc.strerror or exc}.") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ConfigError(f"{where}: invalid YAML: {exc.problem}.") from None
    positions = Positions()
    problems: list[str] = []
    if root is None:
        return None, positions
    constructor = yaml.SafeLoader("")

    def build(node: yaml.Node, loc: Loc) -> Any:
        positions.values[loc] = _mark(node)
        if isinstance(node, yaml.MappingNode):
            constructor.flatten_mapping(node)
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = constructor.construct_object(key_node, deep=True)
                if not isinstance(key, str | int):
                    line, col = _mark(key_node)
                    problems.append(f"{path}:{line}:{col}: mapping keys must be strings, found {key!r}.")
                    continue
                if key in out:
                    line, col = _mark(key_node)
                    problems.append(f"{path}:{line}:{col}: {key}: duplicate key.")
                    continue
                positions.keys[(*loc, key)] = _mark(key_node)
                out[key] = build(value_node, (*loc, key))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [build(item, (*loc, i)) for i, item in enumerate(node.value)]
        return constructor.construct_object(node, deep=True)

    data = build(root, ())
    if problems:
        raise ConfigError("\n".join(problems))
    return data, positions


def dotted(loc: Sequence[str | int]) -> str:
    """``('models', 0, 'target', 'kind')`` -> ``models[0].target.kind``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
