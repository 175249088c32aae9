"""Shard planning against the pinned pytest-split: with the folded durations, every cut falls between two models."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st
from pytest_split.algorithms import Algorithms

from qc.pytest_plugin.shard import MIN_MODEL_SECONDS, plan


@dataclass(frozen=True)
class FakeItem:
    """What pytest-split reads of an item: its node id."""

    nodeid: str


def gate_ids(gates_per_model: list[int]) -> list[tuple[str, str | None]]:
    return [(f"t.py::test_g{g}[m{m}]", f"m{m}") for m, n in enumerate(gates_per_model) for g in range(n)]


def groups(tests: list[tuple[str, str | None]], durations: dict[str, float], splits: int) -> list[list[str]]:
    algorithm = Algorithms["duration_based_chunks"].value  # pytest-split's default algorithm
    out = algorithm(splits, [FakeItem(t) for t, _ in tests], durations)
    return [[i.nodeid for i in g.selected] for g in out]


@settings(max_examples=300, deadline=None)
@given(
    gates=st.lists(st.integers(1, 6), min_size=1, max_size=9),
    seconds=st.lists(st.one_of(st.none(), st.floats(0.0, 500.0)), min_size=54, max_size=54),
    splits=st.integers(1, 5),
)
def test_every_cut_falls_between_models(gates: list[int], seconds: list[float | None], splits: int) -> None:
    tests = gate_ids(gates)
    measured = {t: s for (t, _), s in zip(tests, seconds, strict=False) if s is not None}  # some never measured
    planned = plan(tests, measured)
    assert set(planned) == {t for t, _ in tests}  # no test falls back to pytest-split's average
    model = dict(tests)
    seen: dict[str | None, int] = {}
    chosen = groups(tests, planned, splits)
    assert sorted(t for g in chosen for t in g) == sorted(planned)
    for index, group in enumerate(chosen):
        for test in group:
            assert seen.setdefault(model[test], index) == index, f"model {model[test]} cut across groups"


def test_a_model_weighs_its_measured_total_on_its_last_gate() -> None:
    tests = gate_ids([3, 2])
    measured = {tests[0][0]: 10.0, tests[1][0]: 1.0, tests[3][0]: 4.0}  # one gate of each model never measured
    planned = plan(tests, measured)
    mean = (10.0 + 1.0 + 4.0) / 3
    assert [planned[t] for t, _ in tests] == [0.0, 0.0, 11.0 + mean, 0.0, 4.0 + mean]


def test_unmeasured_models_split_evenly() -> None:
    tests = gate_ids([5, 5, 5, 5])
    planned = plan(tests, {})
    assert [len(g) for g in groups(tests, planned, 2)] == [10, 10]
    assert min(v for v in planned.values() if v) >= MIN_MODEL_SECONDS


def test_other_tests_keep_their_own_durations() -> None:
    tests: list[tuple[str, str | None]] = [("t.py::test_plain", None), *gate_ids([2])]
    planned = plan(tests, {"t.py::test_plain": 2.5})
    assert planned["t.py::test_plain"] == 2.5
