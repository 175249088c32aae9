"""The offline HTML dashboard on a synthetic report folder: files, relative links, escaping, missing files, trends."""

from __future__ import annotations

import csv
import html
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from PIL import Image

from qc.errors import DataError
from qc.report.dashboard import PLOTLY_JS, dashboard_png, write_dashboard
from qc.report.paths import model_dir
from qc.report.tables import to_csv
from tests.unit.report.synthetic import (
    ADVICE_MESSAGE,
    BROKEN,
    FULL,
    INJECTION,
    LAYER_OVERRIDE,
    OUTPUT_OVERRIDE,
    OVERRIDDEN_LAYER,
    OVERRIDDEN_OUTPUT,
    PARTIAL,
    PATTERN,
    RANGE_FINDING,
    THRESHOLDS,
    build_report,
    history,
    settings,
)


class Links(HTMLParser):
    """Every ``src`` and ``href`` attribute of a page, and the number of chart divs."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[tuple[str, str]] = []
        self.charts = 0
        self.scripts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href") and value is not None:
                self.urls.append((name, value))
            if name == "class" and value and "chart" in value.split():
                self.charts += 1


def parse(page: Path) -> Links:
    links = Links()
    links.feed(page.read_text(encoding="utf-8"))
    return links


def figures(page: Path) -> dict[str, dict[str, Any]]:
    """Every Plotly figure a page draws, by title, as the JSON handed to ``Plotly.newPlot``."""
    found = {}
    for spec in re.findall(r"fig = (\{.*?\});\n  if \(window\.Plotly\)", page.read_text(encoding="utf-8"), re.S):
        fig = json.loads(spec)
        found[html.unescape(fig["layout"]["title"]["text"])] = fig
    return found


def trace(fig: dict[str, Any], prefix: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [t for t in fig["data"] if html.unescape(t.get("name", "")).startswith(prefix)]
    assert len(found) == 1, [t.get("name") for t in fig["data"]]
    return found[0]


def column(path: Path, name: str) -> list[float | None]:
    with path.open(encoding="utf-8") as f:
        return [float(r[name]) if r[name] else None for r in csv.DictReader(f)]


@pytest.fixture
def report(tmp_path: Path) -> Path:
    return build_report(tmp_path / "reports")


def pages(report: Path) -> list[Path]:
    return sorted(report.rglob("*.html"))


def test_writes_index_model_pages_and_plotly_once(report: Path) -> None:
    written = write_dashboard(report, settings=settings(), history=history(2))
    expected = {
        report / "index.html",
        report / PLOTLY_JS,
        model_dir(report, FULL) / "index.html",
        model_dir(report, PARTIAL) / "index.html",
        model_dir(report, BROKEN) / "index.html",
    }
    assert set(written) == expected
    assert all(p.is_file() for p in written)
    assert [p.name for p in report.rglob("plotly*.js")] == [PLOTLY_JS]
    assert (report / PLOTLY_JS).stat().st_size > 1_000_000
    before = (report / PLOTLY_JS).stat().st_mtime_ns
    write_dashboard(report)
    assert (report / PLOTLY_JS).stat().st_mtime_ns == before  # identical content is not rewritten


def test_links_are_relative_resolve_and_nothing_is_remote(report: Path) -> None:
    write_dashboard(report, settings=settings(), history=history(3))
    seen_targets = set()
    for page in pages(report):
        text = page.read_text(encoding="utf-8")
        assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text, re.IGNORECASE), page
        for attr, url in parse(page).urls:
            parts = urlsplit(url)
            assert (parts.scheme, parts.netloc) == ("", ""), f"{page}: {attr}={url} is not relative"
            if not parts.path:
                assert parts.fragment, f"{page}: empty {attr}"
                assert f'id="{parts.fragment}"' in text, f"{page}: anchor #{parts.fragment} is missing"
                continue
            target = (page.parent / unquote(parts.path)).resolve()
            assert target.is_file(), f"{page}: {attr}={url} does not resolve"
            assert report.resolve() in target.parents, f"{page}: {url} leaves the report folder"
            seen_targets.add(target.relative_to(report.resolve()).as_posix())
    assert {
        "plotly.min.js",
        "index.html",
        "junit.xml",
        "summary.csv",
        f"models/{FULL}/index.html",
        f"models/{PARTIAL}/index.html",
        f"models/{FULL}/pictures/image one.png",
        f"models/{FULL}/pictures/image_2.png",
        f"models/{FULL}/layers.csv",
        f"models/{FULL}/detections_target.json",
    } <= seen_targets
    index = (report / "index.html").read_text(encoding="utf-8")
    assert '<script src="plotly.min.js"></script>' in index
    full = (model_dir(report, FULL) / "index.html").read_text(encoding="utf-8")
    assert '<script src="../../plotly.min.js"></script>' in full


def test_every_name_is_escaped(report: Path) -> None:
    write_dashboard(report, settings=settings())
    for page in pages(report):
        text = page.read_text(encoding="utf-8")
        assert INJECTION not in text, page
        assert "<odd>" not in text, page
        # the only script elements are plotly.min.js, one per chart and the sorter
        assert text.count("<script") == text.count("</script>")
    full = (model_dir(report, FULL) / "index.html").read_text(encoding="utf-8")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in full  # in the layer table
    assert "head/&lt;odd&gt;&amp;name" in full  # unmatched table
    index = (report / "index.html").read_text(encoding="utf-8")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in index  # worst layer column


def test_model_page_sections(report: Path) -> None:
    write_dashboard(report, settings=settings())
    full = (model_dir(report, FULL) / "index.html").read_text(encoding="utf-8")
    links = parse(model_dir(report, FULL) / "index.html")
    assert links.charts == 5  # layers, outputs, top layer times, op-type share, diagnosis
    # the annotation on the first layer under 0.98 (plotly escapes "/" in its JSON)
    assert "first below threshold: backbone\\u002fblock_7\\u002fleakyrelu (0.9500)" in full
    assert "threshold 0.98" in full
    assert "30 layers compared; 3 below their cosine threshold, 0.98 (0.99 on 1 layer); 1 with an undefined" in full
    assert "Thresholds per output and slice: cosine 0.99 (0.9995 on 1 output); SQNR 20 dB (35 dB on 1 output)." in full
    assert "decoded[classes]" in full
    assert "undefined on 4 of 4 image(s)" in full
    assert "2 reference tensors have no counterpart in the target." in full
    assert "channels-multiple-32" in full
    assert "Division by a constant." in full
    assert "5.00%" in full
    assert "agreement_ap" in full
    assert "0.9037" in full
    assert "reference</a>: 3 detections" in full
    assert "target</a>: 2 detections" in full
    assert 'src="pictures/image%20one.png"' in full
    assert "activation_bitwidth" in full
    assert "versions.onnxruntime" in full
    assert "1.32.0" in full
    assert "FPS target / reference" in full


def test_missing_empty_and_unreadable_files_are_explained(report: Path) -> None:
    write_dashboard(report, settings=settings())
    partial = (model_dir(report, PARTIAL) / "index.html").read_text(encoding="utf-8")
    for sentence in (
        "No accuracy stage ran for this model (accuracy.json is missing).",
        "No speed stage ran for this model (speed.json is missing).",
        "No lint stage ran for this model (lint.csv is missing).",
        "No output comparison ran for this model (outputs.csv is missing).",
        "No matching stage ran for this model (unmatched.csv is missing).",
        "No profiled run ran for this model (layer_times.csv is missing).",
        "No detection pictures (pictures/ is missing or holds no PNG).",
    ):
        assert sentence in partial
    assert "first below threshold" not in partial  # every layer of PARTIAL is above 0.98
    broken = (model_dir(report, BROKEN) / "index.html").read_text(encoding="utf-8")
    assert "layers.csv has no rows: the comparison produced no layers." in broken
    assert "outputs.csv has no rows" in broken
    assert "accuracy.json could not be read: unreadable (" in broken
    assert "speed.json is not a JSON object." in broken
    assert "lint.csv has no rows: lint found nothing to report." in broken
    assert "layer_times.csv could not be read" in broken
    assert "diagnosis.json could not be read: unreadable (" in broken
    assert "local.csv has no rows: the diagnosis compared no layers." in broken
    assert "sensitivity.csv has no rows: no layer was measured" in broken
    assert "No diagnosis ran for this model (ranges.csv is missing)." in broken
    assert "No run settings were passed for this model." in broken
    assert parse(model_dir(report, BROKEN) / "index.html").charts == 0


def test_index_table_gates_and_headlines(report: Path) -> None:
    write_dashboard(report, settings=settings())
    index = (report / "index.html").read_text(encoding="utf-8")
    assert index.count('<tr><td class="model" data-sort=') == 3
    assert '<span class="badge failed">failed</span>' in index
    assert '<span class="badge xfailed">xfailed</span>' in index
    assert '<span class="badge failed">xpassed(strict)</span>' in index
    assert '<span class="badge failed">error</span>' in index
    assert 'title="not an outcome: 56.9"' in index  # a number in a gate column is not shown as an outcome
    assert 'data-sort="0.9037"' in index
    assert 'data-sort="56.9"' in index
    assert "table.sortable" in index  # the sorter
    assert parse(report / "index.html").charts == 2  # overlay and patterns; trends need two runs
    assert "Trends need at least two runs in the history; it holds no run." in index


def test_index_without_summary_or_junit_falls_back_to_files(tmp_path: Path) -> None:
    report = build_report(tmp_path / "r", junit=False, summary=False)
    write_dashboard(report, junit_name="results/junit.xml")
    index = (report / "index.html").read_text(encoding="utf-8")
    assert "No summary.csv: gate outcomes are unknown" in index
    assert "no results/junit.xml in this folder" in index
    assert index.count('<tr><td class="model" data-sort=') == 3
    assert 'data-sort="0.2284"' in index  # reference AP from accuracy.json
    assert 'data-sort="56.9"' in index  # FPS from speed.json
    full = (model_dir(report, FULL) / "index.html").read_text(encoding="utf-8")
    assert "No summary.csv row for this model: gate outcomes unknown." in full


def test_empty_folder(tmp_path: Path) -> None:
    written = write_dashboard(tmp_path / "nothing")
    assert {p.name for p in written} == {"index.html", PLOTLY_JS}
    index = (tmp_path / "nothing" / "index.html").read_text(encoding="utf-8")
    assert "This folder holds no model results yet." in index
    assert "No model has a layer comparison" in index
    assert "no junit.xml in this folder" in index


@pytest.mark.parametrize("runs", [0, 1, 2, 4])
def test_trends_need_two_runs(report: Path, runs: int) -> None:
    write_dashboard(report, history=history(runs))
    index = (report / "index.html").read_text(encoding="utf-8")
    charts = parse(report / "index.html").charts
    if runs < 2:
        assert "Trends need at least two runs" in index
        assert charts == 1 + 1  # overlay, patterns
    else:
        assert f"{runs} runs in the history." in index
        # headline metrics only: fps and worst_layer_cosine, not head.cosine
        assert charts == 1 + 1 + 2
        assert '"text":"fps"' in index
        assert '"text":"worst_layer_cosine"' in index
        assert "head.cosine" not in index


def test_dashboard_png(report: Path) -> None:
    out = dashboard_png(report, FULL)
    assert out == model_dir(report, FULL) / "layers.png"
    with Image.open(out) as img:
        assert img.format == "PNG"
        assert img.size == (360, 80)
        colors = {c for _, c in img.getcolors(maxcolors=100_000) or []}
    assert (207, 34, 46) in colors  # the threshold line / layers under it
    for model in (PARTIAL, BROKEN, "no-such-model"):
        assert dashboard_png(report, model).is_file()
    with pytest.raises(DataError, match="not a model folder name"):
        dashboard_png(report, "../escape")


def test_model_page_diagnosis(report: Path) -> None:
    write_dashboard(report, settings=settings())
    full = (model_dir(report, FULL) / "index.html").read_text(encoding="utf-8")
    assert '<a href="#diagnosis">Diagnosis</a>' in full
    assert '<h2 id="diagnosis">Diagnosis</h2>' in full
    section = full[full.index('<h2 id="diagnosis">') :]
    # origins: the injection-named layer, accumulated vs local, the range evidence sentence, slices and followers
    assert "failing gates: output_cosine, layer_cosine." in section
    assert '<span class="badge failed">collapse</span>' in section
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in section
    assert 'data-sort="0.9"' in section
    assert 'data-sort="0.97"' in section
    assert 'data-sort="24.0"' in section
    assert 'data-sort="8.0"' in section
    assert html.escape(f"range: {RANGE_FINDING}") in section
    assert "slice [objectness] fed reference inputs: undefined (the target tensor is all zeros)" in section
    assert "head/&lt;odd&gt;&amp;name" in section
    # the chart: accumulated and local SQNR and cosine, origins marked, the threshold
    assert "Accumulated vs local error along the topological order" in section
    assert "SQNR dB, accumulated (target end to end)" in section
    assert "cosine, local (fed the reference" in section
    assert "origin (where the loss starts)" in section
    assert "30 layers; 1 origin marked" in section
    # ranges: flagged rows and the largest errors in steps, the whole table folded
    assert "29 quantized tensors, 2 flagged" in section
    assert '<td class="wrap bad">values below one step</td>' in section
    assert '<td class="wrap bad">clipping</td>' in section
    assert "<summary>All 29 quantized tensors" in section
    assert '<a href="ranges.csv">ranges.csv</a>' in section
    assert "81 of 85" in section
    # sensitivity and advice
    assert "output_sqnr_db: kept float" in section
    assert "ap: drop" in section
    assert "Quick pass on 2 images" in section
    assert html.escape(ADVICE_MESSAGE) in section
    assert "Keep 1 layer in float:" in section
    assert "output_cosine (goal)" in section
    assert '<span class="badge failed">failed</span>' in section
    assert '<span class="badge passed">passed</span>' in section
    assert '<a href="advised.models.yaml">advised.models.yaml</a>' in section
    assert '<a href="snpe_overrides.json">snpe_overrides.json</a>' in section
    assert "1 trial (layer sets measured)" in section


def test_diagnosis_missing_says_how_to_get_it(report: Path, tmp_path: Path) -> None:
    write_dashboard(report, settings=settings())
    partial = (model_dir(report, PARTIAL) / "index.html").read_text(encoding="utf-8")
    assert '<a href="#diagnosis">Diagnosis</a>' in partial
    section = partial[partial.index('<h2 id="diagnosis">') :]
    assert "No diagnosis ran for this model (diagnosis.json is missing)" in section
    assert "<code>pytest benchmarks --qc-diagnose</code>" in section
    assert f"<code>qc diagnose {PARTIAL}</code>" in section
    assert section.count('class="note"') == 1  # one sentence, not one per file
    # no diagnosis anywhere: no patterns section on the index either
    bare = build_report(tmp_path / "bare", diagnosis=False)
    write_dashboard(bare)
    index = (bare / "index.html").read_text(encoding="utf-8")
    assert "Patterns across models" not in index
    assert parse(bare / "index.html").charts == 1


def test_index_patterns_across_models(report: Path) -> None:
    write_dashboard(report, settings=settings())
    index = (report / "index.html").read_text(encoding="utf-8")
    assert '<h2 id="patterns">Patterns across models</h2>' in index
    assert '<a href="patterns.csv">patterns.csv</a>' in index
    section = index[index.index('<h2 id="patterns">') :]
    assert "3 op type / pattern groups" in section
    assert PATTERN in section
    # the worst layer links to its model's diagnosis, the name escaped
    assert f'<a href="models/{PARTIAL}/index.html#diagnosis">{PARTIAL}</a>: head/cat' in section
    assert "Local SQNR by op type and pattern" in section
    assert "Concat \\u00b7 Concat of mixed ranges" in section  # the bar label (plotly writes JSON with \\u escapes)
    assert INJECTION not in index


@pytest.mark.parametrize("content", ["", "garbage\n\xff", "op_type,pattern\n"])
def test_index_patterns_unreadable_or_empty(report: Path, content: str) -> None:
    (report / "patterns.csv").write_bytes(content.encode("latin-1"))
    write_dashboard(report, settings=settings())
    index = (report / "index.html").read_text(encoding="utf-8")
    assert '<h2 id="patterns">Patterns across models</h2>' in index
    section = index[index.index('<h2 id="patterns">') :]
    assert "patterns.csv" in section
    assert "has no rows" in section or "could not be read" in section


def test_diagnosis_files_alone_make_a_model_page(tmp_path: Path) -> None:
    report = tmp_path / "r"
    model_dir(report, "solo").mkdir(parents=True)
    (model_dir(report, "solo") / "diagnosis.json").write_text('{"model": "solo", "origins": [], "advice": null}')
    write_dashboard(report)
    solo = (model_dir(report, "solo") / "index.html").read_text(encoding="utf-8")
    assert "The diagnosis names no origin" in solo
    assert "No diagnosis ran for this model (local.csv is missing)." in solo
    assert "The diagnosis gave no advice" in solo


LAYER_CHART = "Per-layer cosine and SQNR along the topological order"
OUTPUT_CHART = "Outputs and slices: cosine and SQNR against their thresholds"


def test_layer_threshold_line_is_the_csv_column_with_its_override(report: Path) -> None:
    write_dashboard(report, settings={FULL: {"thresholds": {"layer_cosine": 0.5}}})  # settings are not read
    fig = figures(model_dir(report, FULL) / "index.html")[LAYER_CHART]
    step = trace(fig, "threshold ")
    expected = column(model_dir(report, FULL) / "layers.csv", "cosine_threshold")
    assert step["y"] == expected
    assert step["y"][OVERRIDDEN_LAYER] == LAYER_OVERRIDE
    assert {v for i, v in enumerate(step["y"]) if i != OVERRIDDEN_LAYER} == {THRESHOLDS["layer_cosine"]}
    assert step["line"]["shape"] == "hvh"  # one step per layer, following the column
    assert step["yaxis"] == "y"  # the cosine panel; layers.csv gives no SQNR threshold, so none is drawn
    assert [t["name"] for t in fig["data"] if "threshold" in t["name"]] == [step["name"]]
    assert fig["layout"].get("shapes", []) == []  # no guessed horizontal line
    # the overridden layer passes 0.98 but fails its own 0.99: red, and counted
    cosine = trace(fig, "cosine (mean")
    assert THRESHOLDS["layer_cosine"] < cosine["y"][OVERRIDDEN_LAYER] < LAYER_OVERRIDE
    assert cosine["marker"]["color"][OVERRIDDEN_LAYER] == "#cf222e"
    assert cosine["marker"]["color"][OVERRIDDEN_LAYER - 1] == "#0969da"
    full = (model_dir(report, FULL) / "index.html").read_text(encoding="utf-8")
    assert "3 below their cosine threshold" in full


def test_outputs_chart_draws_cosine_and_sqnr_thresholds_per_output(report: Path) -> None:
    write_dashboard(report)
    fig = figures(model_dir(report, FULL) / "index.html")[OUTPUT_CHART]
    outputs = model_dir(report, FULL) / "outputs.csv"
    with outputs.open(encoding="utf-8") as f:
        names = [r["output"] for r in csv.DictReader(f)]
    cos, sqnr = trace(fig, "cosine threshold"), trace(fig, "SQNR threshold")
    assert cos["x"] == sqnr["x"] == names
    assert cos["y"] == column(outputs, "cosine_threshold")
    assert sqnr["y"] == column(outputs, "sqnr_db_threshold")
    at = names.index(OVERRIDDEN_OUTPUT)
    assert (cos["y"][at], sqnr["y"][at]) == OUTPUT_OVERRIDE
    assert sqnr["y"][0] == THRESHOLDS["output_sqnr_db"]
    assert (cos["yaxis"], sqnr["yaxis"]) == ("y", "y2")  # each in its own panel
    sqnr_mean = trace(fig, "SQNR dB (mean")
    assert sqnr_mean["y"][at] == 31.0  # under its 35 dB override: red, the others above 20 dB are not
    assert [c == "#cf222e" for c in sqnr_mean["marker"]["color"]] == [False, False, True, False, True]
    full = (model_dir(report, FULL) / "index.html").read_text(encoding="utf-8")
    table = full[full.index('<h2 id="outputs">') : full.index('<h2 id="unmatched">')]
    assert '<td class="bad" data-sort="31.0">31</td>' in table  # SQNR under its own threshold is flagged


def test_csv_without_threshold_columns_draws_no_line_and_says_so(report: Path) -> None:
    outputs = model_dir(report, FULL) / "outputs.csv"
    with outputs.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    keep = [c for c in rows[0] if not c.endswith("_threshold")]
    with outputs.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, keep, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    write_dashboard(report, settings=settings())  # PARTIAL's settings name a layer_cosine_threshold: not used
    partial = model_dir(report, PARTIAL) / "index.html"
    assert "layers.csv has no cosine_threshold column (written by an older qc)" in partial.read_text(encoding="utf-8")
    assert not [t for t in figures(partial)[LAYER_CHART]["data"] if "threshold" in t["name"]]
    assert figures(partial)[LAYER_CHART]["layout"].get("shapes", []) == []
    full = model_dir(report, FULL) / "index.html"
    text = full.read_text(encoding="utf-8")
    assert "outputs.csv has no cosine_threshold column" in text
    assert "outputs.csv has no sqnr_db_threshold column" in text
    assert not [t for t in figures(full)[OUTPUT_CHART]["data"] if "threshold" in t["name"]]
    index = report / "index.html"
    assert f"No threshold line for {PARTIAL}: its layers.csv has no cosine_threshold" in index.read_text("utf-8")


def test_index_overlay_and_diagnosis_chart_draw_the_csv_thresholds(report: Path) -> None:
    write_dashboard(report, settings=settings())
    expected = column(model_dir(report, FULL) / "layers.csv", "cosine_threshold")
    overlay = figures(report / "index.html")["Per-layer cosine (mean over images) along the topological order"]
    steps = [t for t in overlay["data"] if "threshold" in t["name"]]
    assert [t["name"] for t in steps] == [f"{FULL}: threshold 0.98 (0.99 on 1 layer)"]  # PARTIAL has no column
    assert steps[0]["y"] == expected
    (model,) = [t for t in overlay["data"] if t["name"] == FULL]
    assert steps[0]["line"]["color"] == model["line"]["color"]  # the model's own colour
    page = model_dir(report, FULL) / "index.html"
    diagnosis = figures(page)["Accumulated vs local error along the topological order"]
    step = trace(diagnosis, "cosine threshold")
    assert step["yaxis"] == "y2"  # the cosine panel
    assert step["y"] == expected  # matched by tensor name: local.csv lists the same layers


def test_dashboard_png_draws_the_csv_threshold_only(report: Path) -> None:
    red = (207, 34, 46)

    def colors(model: str) -> set[object]:
        with Image.open(dashboard_png(report, model)) as img:
            return {c for _, c in img.convert("RGB").getcolors(maxcolors=100_000) or []}

    assert red in colors(FULL)
    assert red not in colors(PARTIAL)  # no threshold column and every layer defined: nothing red


def test_input_independent_layers_are_listed_but_never_marked_failing(report: Path) -> None:
    path = model_dir(report, FULL) / "layers.csv"
    with path.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row["input_independent"] = "true" if row["index"] == str(OVERRIDDEN_LAYER) else "false"
    path.write_text(to_csv(tuple(rows[0]), rows), encoding="utf-8")
    write_dashboard(report)
    page = (model_dir(report, FULL) / "index.html").read_text(encoding="utf-8")
    cosine = trace(figures(model_dir(report, FULL) / "index.html")[LAYER_CHART], "cosine (mean")
    assert cosine["marker"]["color"][OVERRIDDEN_LAYER] == "#0969da"  # below its override, but not gated
    assert "2 below their cosine threshold" in page  # was 3 with the layer gated
    assert "1 input-independent (not gated)" in page
    assert "not gated: input-independent" in page
