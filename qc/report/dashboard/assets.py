"""The static parts of every page: the page frame, its CSS, the table sorter, and the one ``plotly.min.js`` copy."""

from __future__ import annotations

import datetime
import os
import time
from pathlib import Path

from qc.report.dashboard.markup import esc

PAGE = "index.html"
PLOTLY_JS = "plotly.min.js"


CSS = """
:root { color-scheme: light; --fg: #1f2328; --muted: #6e7781; --line: #d0d7de; --bg2: #f6f8fa; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: var(--fg); margin: 0 auto; padding: 1rem 1.5rem 3rem; max-width: 1600px; line-height: 1.4; }
h1 { font-size: 1.5rem; margin: .3rem 0 .6rem; } h2 { font-size: 1.2rem; margin: 2rem 0 .5rem;
     border-bottom: 1px solid var(--line); padding-bottom: .2rem; } h3 { font-size: 1rem; margin: 1rem 0 .4rem; }
a { color: #0969da; } nav a { margin-right: .9rem; }
.note { color: var(--muted); font-style: italic; } .muted { color: var(--muted); }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: .85rem; margin: .3rem 0 1rem; }
th, td { border: 1px solid var(--line); padding: .25rem .5rem; text-align: left; vertical-align: top; }
th { background: var(--bg2); position: sticky; top: 0; }
table.sortable th { cursor: pointer; user-select: none; }
td.model { white-space: nowrap; font-weight: 600; }
table.models td { white-space: nowrap; } table.models td.name { white-space: normal; min-width: 16rem; }
table.sortable th[aria-sort="ascending"]::after { content: " ▲"; }
table.sortable th[aria-sort="descending"]::after { content: " ▼"; }
td[data-sort] { font-variant-numeric: tabular-nums; }
td.wrap { max-width: 28rem; } td.name { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  word-break: break-all; max-width: 30rem; }
tr:nth-child(even) td { background: #fbfcfd; }
td.bad, tr.bad td { background: #ffebe9 !important; }
.badge { display: inline-block; padding: 0 .45rem; border-radius: .6rem; font-size: .8rem; white-space: nowrap; }
.badge.passed { background: #dafbe1; color: #116329; } .badge.failed { background: #ffebe9; color: #a40e26; }
.badge.xfailed { background: #fff8c5; color: #7d4e00; } .badge.skipped { background: var(--bg2); color: var(--muted); }
.chart { width: 100%; min-height: 360px; }
.trends { display: grid; grid-template-columns: repeat(auto-fill, minmax(380px, 1fr)); gap: .5rem; }
.trends .chart { min-height: 260px; }
.pictures { display: flex; flex-wrap: wrap; gap: 1rem; }
figure { margin: 0; } figure img { max-width: 100%; border: 1px solid var(--line); }
figcaption { font-size: .8rem; color: var(--muted); }
details > summary { cursor: pointer; margin: .3rem 0; }
td.evidence { min-width: 18rem; max-width: 50rem; } table.origins td.name { min-width: 10rem; }
ul.tight { margin: 0; padding-left: 1.1rem; } ul.tight li { margin: .1rem 0; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .85em;
       background: var(--bg2); padding: 0 .25rem; border-radius: .2rem; }
footer { margin-top: 2rem; font-size: .8rem; color: var(--muted); }
"""

SORT_JS = """
(function () {
  function key(row, col) {
    var cell = row.cells[col];
    if (!cell) return "";
    var k = cell.getAttribute("data-sort");
    return k === null ? cell.textContent.trim() : k;
  }
  function numeric(v) { return v !== "" && isFinite(v); }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    var heads = table.tHead ? table.tHead.rows[0].cells : [];
    Array.prototype.forEach.call(heads, function (th, col) {
      th.tabIndex = 0;
      th.title = "sort";
      function sort() {
        var asc = th.getAttribute("aria-sort") !== "ascending";
        Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", asc ? "ascending" : "descending");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = key(a, col), y = key(b, col);
          if (x === "" || y === "") return (x === "" ? 1 : 0) - (y === "" ? 1 : 0);
          var r = numeric(x) && numeric(y) ? Number(x) - Number(y) : x.localeCompare(y);
          return asc ? r : -r;
        });
        rows.forEach(function (row) { body.appendChild(row); });
      }
      th.addEventListener("click", sort);
      th.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sort(); }
      });
    });
  });
})();
"""

# Nothing may be fetched: block the fetch kinds a page could use by accident (scripts and images are local files).
CSP = "connect-src 'none'; font-src 'none'; frame-src 'none'; object-src 'none'; form-action 'none'"


def page(title: str, body: str, *, root: str) -> str:
    made = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<title>{esc(title)}</title>
<style>{CSS}</style>
<script src="{root}{PLOTLY_JS}"></script>
</head>
<body>
{body}
<footer>Generated by qc on {esc(made)}; works offline (charts: {root}{PLOTLY_JS}).</footer>
<script>{SORT_JS}</script>
</body>
</html>
"""


def write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def write_plotly_js(report_dir: Path) -> Path:
    """Plotly's JavaScript from the installed package, written once (left alone when already identical)."""
    from plotly.offline import get_plotlyjs

    path = report_dir / PLOTLY_JS
    data = get_plotlyjs().encode("utf-8")
    if not (path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data):
        write_bytes(path, data)
    return path
