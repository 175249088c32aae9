"""HTML pieces shared by every page: escaping, table cells and sortable tables, notes, links, Plotly label text."""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from qc.report.dashboard.data import Loaded, finite, fmt_num

OUTCOMES = ("passed", "failed", "xfailed", "xpassed(strict)", "xpassed", "error", "skipped")


esc = html.escape


def unique_labels(labels: Iterable[str]) -> list[str]:
    """Category labels for a bar chart, duplicates padded with spaces so they stay separate bars."""
    out: list[str] = []
    for label in labels:
        while label in out:
            label += " "
        out.append(label)
    return out


def plot_text(text: str) -> str:
    """Text for Plotly labels: Plotly reads a subset of HTML in labels, so names are entity-escaped."""
    return esc(text, quote=False)


def href(*parts: str) -> str:
    return "/".join(quote(p) for p in parts)


def flatten(settings: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.extend(flatten(value, f"{name}."))
        elif isinstance(value, list | tuple | set | frozenset):
            out.append((name, ", ".join(str(v) for v in value)))
        else:
            out.append((name, "" if value is None else str(value)))
    return out


# --------------------------------------------------------------------------------------------------- HTML


@dataclass(frozen=True)
class Cell:
    """One table cell: ``markup`` is already escaped; ``sort`` is the key the column sorts on."""

    markup: str
    sort: str | None = None
    cls: str = ""


def text(value: Any, cls: str = "") -> Cell:
    return Cell(esc("" if value is None else str(value)), cls=cls)


def number(value: float | None, digits: int = 4, cls: str = "") -> Cell:
    if value is None:
        return Cell('<span class="muted">—</span>', sort="", cls=cls)
    key = "" if not finite(value) else repr(value)
    return Cell(esc(fmt_num(value, digits)), sort=key, cls=cls)


def outcome(value: str | None) -> Cell:
    if not value:
        return Cell('<span class="muted">—</span>', sort="", cls="gate")
    if value not in OUTCOMES:
        return Cell(f'<span class="muted" title="not an outcome: {esc(value)}">?</span>', sort="", cls="gate")
    kind = {"xpassed(strict)": "failed", "xpassed": "failed", "error": "failed"}.get(value, value)
    return Cell(f'<span class="badge {kind}">{esc(value)}</span>', sort=value, cls="gate")


def table(headers: Sequence[str], rows: Iterable[Sequence[Cell]], *, cls: str = "") -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for c in row:
            attrs = f' class="{esc(c.cls)}"' if c.cls else ""
            if c.sort is not None:
                attrs += f' data-sort="{esc(c.sort)}"'
            cells.append(f"<td{attrs}>{c.markup}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return (
        f'<div class="scroll"><table class="sortable {esc(cls)}"><thead><tr>{head}</tr></thead>'
        f"<tbody>\n{chr(10).join(body)}\n</tbody></table></div>"
    )


def note(sentence: str) -> str:
    return f'<p class="note">{esc(sentence)}</p>'


def why_missing(loaded: Loaded, stage: str, *, empty: str) -> str | None:
    """The sentence for a file with nothing to show, or None when it has rows/data."""
    name = loaded.path.name
    if loaded.missing:
        return f"No {stage} ran for this model ({name} is missing)."
    if loaded.problem == "empty":
        return f"{name} is empty: {empty}"
    if loaded.problem:
        return f"{name} could not be read: {loaded.problem}."
    if not loaded.rows and loaded.data is None:
        return f"{name} has no rows: {empty}"
    return None


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def bullets(items: Iterable[str]) -> str:
    """Already-escaped items as a compact list ("" when there are none)."""
    lis = "".join(f"<li>{item}</li>" for item in items)
    return f'<ul class="tight">{lis}</ul>' if lis else ""


def verdict(passed: Any) -> Cell:
    return outcome("passed" if passed is True else "failed" if passed is False else None)
