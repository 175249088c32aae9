"""YAML loading that remembers where every value came from, so errors can say ``file:LINE:COL``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from qc.errors import ConfigError

Loc = tuple[str | int, ...]

MAX_EXPANSION = 10
"""Aliases may make the loaded data at most this many times larger (in values) than the nodes written in the file."""
MIN_VALUE_BUDGET = 10_000
"""... and always allow this many values: a legitimate file reuses an anchor a few times, a YAML bomb explodes."""


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
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the file: {exc.strerror or exc}.") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(
            f"{path}:{line}:{col}: not a UTF-8 text file (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
            "expected a YAML file."
        ) from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ConfigError(f"{where}: invalid YAML: {exc.problem}.") from None
    except yaml.reader.ReaderError as exc:  # a control character: not a text file
        line = text.count("\n", 0, exc.position) + 1
        col = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        char = exc.character if isinstance(exc.character, int) else ord(exc.character)
        raise ConfigError(
            f"{path}:{line}:{col}: invalid YAML: {exc.reason} (character 0x{char:02x}); expected a YAML text file."
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}.") from None
    positions = Positions()
    problems: list[str] = []
    if root is None:
        return None, positions
    constructor = yaml.SafeLoader("")
    written = _count_nodes(root)
    budget = max(MIN_VALUE_BUDGET, MAX_EXPANSION * written)
    built = 0
    active: set[int] = set()  # ids of the collection nodes being built: an alias to one of them is a cycle

    def build(node: yaml.Node, loc: Loc) -> Any:
        nonlocal built
        built += 1
        if built > budget:
            line, col = _mark(node)
            raise ConfigError(
                f"{path}:{line}:{col}: YAML aliases expand to more than {budget} values from {written} written in "
                "the file; refusing to load it (an alias bomb?). Write the values out instead of nesting aliases."
            )
        positions.values[loc] = _mark(node)
        if isinstance(node, yaml.MappingNode | yaml.SequenceNode):
            if id(node) in active:
                line, col = _mark(node)
                raise ConfigError(f"{path}:{line}:{col}: a YAML alias refers to a value that contains it (a cycle).")
            active.add(id(node))
            try:
                return build_collection(node, loc)
            finally:
                active.discard(id(node))
        return constructor.construct_object(node, deep=True)

    def build_collection(node: yaml.MappingNode | yaml.SequenceNode, loc: Loc) -> Any:
        if isinstance(node, yaml.MappingNode):
            constructor.flatten_mapping(node)
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    line, col = _mark(key_node)
                    problems.append(f"{path}:{line}:{col}: mapping keys must be strings, found a {key_node.id}.")
                    continue
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
        return [build(item, (*loc, i)) for i, item in enumerate(node.value)]

    try:
        data = build(root, ())
    except yaml.MarkedYAMLError as exc:  # e.g. a bad merge key or an unknown tag
        mark = exc.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ConfigError(f"{where}: invalid YAML: {exc.problem}.") from None
    if problems:
        raise ConfigError("\n".join(problems))
    return data, positions


def _count_nodes(root: yaml.Node) -> int:
    """Distinct nodes of the composed document (an alias is counted once, where its anchor is)."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                stack.extend((k, v))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
    return len(seen)


def dotted(loc: Sequence[str | int]) -> str:
    """``('models', 0, 'target', 'kind')`` -> ``models[0].target.kind``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
