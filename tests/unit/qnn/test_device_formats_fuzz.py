"""The QNN device parsers under hypothesis: random and mutated viewer text / context JSON parse or raise ParseError."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qc.errors import ParseError
from qc.qnn.context_info import parse_context_json
from qc.qnn.viewer import parse_viewer_text

FORMATS = Path(__file__).resolve().parents[2] / "fake_qnn" / "formats"
TEXTS = sorted(p.read_text() for p in FORMATS.glob("*/viewer_*.txt"))
JSONS = sorted(p.read_text() for p in FORMATS.glob("*/context.json"))
NODES = {"conv0": "Conv", "/head/Conv": "Conv"}

TOKENS = st.sampled_from(
    [
        "Execute Stats (Average):\n",
        "Execute Stats:\n",
        "Execute Stat 1\n",
        "Graph 0 (g):\n",
        "Graph 1 (h):\n",
        "    NetRun: 12 us\n",
        "    Backend (Accelerator (execute) time (cycles)): 10 cycles\n",
        "        x:OpId_3 (cycles): 5 cycles\n",
        "        y:OpId_4 (us) : 5 us\n",
        "        Input OpId_2 (cycles): 1e999 cycles\n",
        "NetRun IPS: 1.5 inf/sec\n",
        ": 1",
        "-----\n",
        "\x00",
        "\u2028",
    ]
)
TEXT = st.lists(st.one_of(st.text(max_size=20), TOKENS), max_size=40).map("".join)


def _viewer_ok(text: str) -> None:
    with contextlib.suppress(ParseError):
        parse_viewer_text(text, NODES)


def _context_ok(text: str) -> None:
    with contextlib.suppress(ParseError):
        parse_context_json(text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TEXT)
def test_viewer_random_text(text: str) -> None:
    _viewer_ok(text)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(TEXTS), st.integers(0, 10_000), st.integers(0, 200), st.text(max_size=12))
def test_viewer_mutated(text: str, at: int, cut: int, insert: str) -> None:
    at %= len(text) + 1
    _viewer_ok(text[:at] + insert + text[at + cut :])


JSON_LEAF = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False), st.text(max_size=8)
)
JSON_VALUE = st.recursive(
    JSON_LEAF,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(JSONS), st.data())
def test_context_json_mutated(text: str, data: st.DataObject) -> None:
    """Replace one value anywhere in a real dump by an arbitrary JSON value."""
    doc = json.loads(text)
    paths: list[list[object]] = []

    def walk(node: object, path: list[object]) -> None:
        paths.append(path)
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, [*path, key])
        elif isinstance(node, list):
            for k, value in enumerate(node):
                walk(value, [*path, k])

    walk(doc, [])
    path = data.draw(st.sampled_from(paths))
    value = data.draw(JSON_VALUE)
    if not path:
        doc = value
    else:
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        parent[path[-1]] = value
    _context_ok(json.dumps(doc))


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_context_random_text(text: str) -> None:
    _context_ok(text)
