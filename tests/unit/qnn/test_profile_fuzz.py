"""The QNN profile parser under hypothesis: random text and mutated real profiles parse or raise ParseError."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qc.errors import ParseError
from qc.qnn.profile import ProfileParseError, parse_htp_profile

DATA = Path(__file__).parent / "data"
SAMPLES = ["htp_profile_conv_relu.csv", "htp_profile_yolov3_tiny_int8.csv"]
NODES = {"conv0": "Conv", "relu0": "Relu", "leaky_0": "LeakyRelu", "x_QuantizeLinear": "QuantizeLinear"}

ALPHABET = st.sampled_from([*"0123456789 .,:;_-+eE()\"'\n\r\tabcdinopstuxyACDEIKLNOPRSTUVXY", "\u2028", "\x00"])
TOKENS = st.sampled_from(
    [
        "Msg Timestamp,Message,Time,Unit of Measurement,Timing Source,Event Level,Event Identifier\n",
        "0,NODE,",
        "0,EXECUTE,10,US,BACKEND,ROOT,QNN (execute) time\n",
        "0,FINALIZE,5,US,BACKEND,ROOT,QNN (finalize) time\n",
        ",CYCLES,BACKEND,SUB-EVENT,",
        ":OpId_",
        " (cycles)",
        "Input OpId_2 (cycles)",
        "_token_",
        ",ROOT,",
        "1e999",
        "nan",
        '"',
        "\n",
    ]
)
TEXT = st.lists(st.one_of(st.text(ALPHABET, max_size=20), TOKENS), max_size=40).map("".join)


def _only_parse_errors(text: str) -> None:
    error: ParseError | None = None
    try:
        parse_htp_profile(text, NODES)
    except ParseError as exc:
        error = exc
    if error is not None:
        assert type(error) is ProfileParseError
        assert str(error).startswith("QNN profile CSV")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.one_of(TEXT, st.text(max_size=300)))
def test_random_text(text: str) -> None:
    _only_parse_errors(text)


@st.composite
def mutated(draw: st.DrawFn, source: str) -> str:
    """A real profile with a few random edits: deleted, duplicated, inserted, replaced or truncated lines."""
    lines = source.splitlines(keepends=True)
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            lines = [""]
        kind = draw(st.sampled_from(["delete", "duplicate", "insert", "replace", "truncate", "chars"]))
        i = draw(st.integers(0, len(lines) - 1))
        if kind == "delete":
            del lines[i]
        elif kind == "duplicate":
            lines.insert(i, lines[i])
        elif kind == "insert":
            lines.insert(i, draw(TEXT) + "\n")
        elif kind == "replace":
            lines[i] = draw(TEXT) + "\n"
        elif kind == "truncate":
            lines[i] = lines[i][: draw(st.integers(0, max(0, len(lines[i]) - 1)))]
        elif lines[i]:
            j = draw(st.integers(0, len(lines[i]) - 1))
            lines[i] = lines[i][:j] + draw(st.text(ALPHABET, max_size=3)) + lines[i][j + 1 :]
    return "".join(lines)


@pytest.mark.parametrize("file", SAMPLES)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_samples(file: str, data: st.DataObject) -> None:
    _only_parse_errors(data.draw(mutated((DATA / file).read_text(encoding="utf-8"))))


@pytest.mark.parametrize("value", [None, b"bytes", 3])
def test_non_text_input(value: object) -> None:
    with pytest.raises(ProfileParseError, match="expected text"):
        parse_htp_profile(value)  # type: ignore[arg-type]
