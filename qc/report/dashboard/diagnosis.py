"""Model page, diagnosis section: origins with their evidence, accumulated vs local error, ranges, sensitivity, advice.

Reads ``diagnosis.json``, ``local.csv``, ``ranges.csv`` and ``sensitivity.csv`` (``qc.diagnose.report``'s layout).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from qc.report.dashboard.charts import Charts, layout, no_threshold_column, threshold_steps
from qc.report.dashboard.data import (
    COSINE_THRESHOLD,
    DIAGNOSIS_FILES,
    ModelFiles,
    describe_thresholds,
    finite,
    fmt_num,
    num,
    thresholds,
)
from qc.report.dashboard.markup import (
    Cell,
    as_dict,
    as_list,
    bullets,
    esc,
    href,
    note,
    number,
    plot_text,
    table,
    text,
    verdict,
    why_missing,
)

TOP_RANGES = 12


ORIGIN_BADGE = {"collapse": "failed", "local error": "failed", "worse than inputs": "xfailed", "sensitive": "xfailed"}
DIAGNOSE_HOW = "run <code>pytest benchmarks --qc-diagnose</code> or <code>qc diagnose {model}</code>"


def _diagnosis_missing(m: ModelFiles) -> str:
    how = DIAGNOSE_HOW.format(model=esc(m.name))
    return (
        f'<p class="note">No diagnosis ran for this model (diagnosis.json is missing): {how} to find where the loss '
        "starts, why, and which layers to keep in higher precision.</p>"
    )


def _origins_part(m: ModelFiles, data: Mapping[str, Any]) -> str:
    origins = [o for o in as_list(data.get("origins")) if isinstance(o, dict)]
    if not origins:
        return note("The diagnosis names no origin: no layer's own (local) error stands out.")
    rows = []
    for o in origins:
        reasons = [str(r) for r in as_list(o.get("reasons"))]
        ranges = as_dict(o.get("ranges"))
        evidence = [esc(r) for r in reasons]
        evidence += [esc(f"range: {f}") for f in map(str, as_list(ranges.get("findings"))) if f not in reasons]
        for name, s in as_dict(o.get("slices_local")).items():
            s = as_dict(s)
            if s.get("undefined"):
                value = f"undefined ({s['undefined']})"
            else:
                value = f"cosine {fmt_num(num(s.get('cosine')))}, SQNR {fmt_num(num(s.get('sqnr_db')), 3)} dB"
            evidence.append(esc(f"slice [{name}] fed reference inputs: {value}"))
        followers = [str(f) for f in as_list(o.get("followers"))]
        if followers:
            evidence.append(esc(f"same cause downstream (not separate origins): {', '.join(followers)}"))
        severity = str(o.get("severity") or "")
        rows.append(
            [
                number(num(o.get("index")), 0),
                text(o.get("tensor"), "name"),
                text(o.get("op_type")),
                Cell(
                    f'<span class="badge {ORIGIN_BADGE.get(severity, "skipped")}">{esc(severity)}</span>', sort=severity
                ),
                text(o.get("pattern"), "wrap"),
                number(num(o.get("cosine")), 5),
                number(num(o.get("cosine_local")), 5),
                number(num(o.get("sqnr_db"))),
                number(num(o.get("sqnr_db_local"))),
                number(num(o.get("worst_sqnr_db_local"))),
                number(num(o.get("inputs_sqnr_db_local"))),
                Cell(bullets(evidence), cls="evidence"),
            ]
        )
    heads = [
        "#",
        "tensor",
        "op type",
        "severity",
        "pattern",
        "cosine (accumulated)",
        "cosine (local)",
        "SQNR dB (accumulated)",
        "SQNR dB (local)",
        "worst local SQNR dB",
        "inputs' local SQNR dB",
        "evidence",
    ]
    lead = (
        f"{len(rows)} origin{'s' if len(rows) != 1 else ''}: layers whose own error is large when fed the reference's "
        "inputs (local), as opposed to error inherited from upstream (accumulated: the target run end to end)."
    )
    return f"<p>{esc(lead)}</p>\n{table(heads, rows, cls='origins')}"


def _origin_points(data: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {str(o.get("tensor")): o for o in as_list(data.get("origins")) if isinstance(o, dict)}


def _local_chart(m: ModelFiles, data: Mapping[str, Any], charts: Charts) -> str:
    missing = why_missing(m.local, "diagnosis", empty="the diagnosis compared no layers.")
    if missing:
        return note(missing)
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    origins = _origin_points(data)
    xs: list[float] = []
    info: list[list[str]] = []
    series: dict[str, list[float | None]] = {k: [] for k in ("sqnr_db", "sqnr_db_local", "cosine", "cosine_local")}
    marked: list[int] = []
    for pos, row in enumerate(m.local.rows):
        x = num(row.get("index"))
        xs.append(x if x is not None and finite(x) else float(pos))
        origin = origins.get(row.get("tensor", ""))
        info.append(
            [plot_text(row.get(k, "")) for k in ("tensor", "op_type")]
            + [plot_text(str(origin.get("severity") or "")) if origin else ""]
        )
        for key, values in series.items():
            v = num(row.get(key))
            values.append(v if finite(v) else None)
        if origin is not None:
            marked.append(pos)
    hover = "%{customdata[0]}<br>%{customdata[1]}<br>layer %{x}: %{y:.4f}<extra>%{fullData.name}</extra>"
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08, row_heights=[0.55, 0.45])
    for row_no, metric, unit in ((1, "sqnr_db", "SQNR dB"), (2, "cosine", "cosine")):
        for key, label, color, dash in (
            (metric, "accumulated (target end to end)", "#0969da", "solid"),
            (f"{metric}_local", "local (fed the reference's inputs)", "#bf8700", "dot"),
        ):
            fig.add_trace(
                go.Scatter(
                    x=xs,
                    y=series[key],
                    customdata=info,
                    name=f"{unit}, {label}",
                    mode="lines+markers",
                    marker={"size": 4, "color": color},
                    line={"color": color, "dash": dash},
                    legendgroup=label,
                    hovertemplate=hover,
                ),
                row=row_no,
                col=1,
            )
        if marked:
            local = series[f"{metric}_local"]
            floor = min((v for v in local if v is not None), default=0.0)
            fig.add_trace(
                go.Scatter(
                    x=[xs[i] for i in marked],
                    y=[local[i] if local[i] is not None else floor for i in marked],
                    customdata=[info[i] for i in marked],
                    name="origin (where the loss starts)",
                    mode="markers",
                    marker={"symbol": "x", "color": "#cf222e", "size": 11},
                    legendgroup="origin",
                    showlegend=row_no == 1,
                    hovertemplate="origin: %{customdata[0]}<br>%{customdata[1]}, %{customdata[2]}<br>layer %{x}: "
                    "local %{y:.4f}<extra></extra>",
                ),
                row=row_no,
                col=1,
            )
    read = thresholds(m.layers, COSINE_THRESHOLD)
    if read is not None:  # the cosine threshold layers.csv gives each layer, matched by tensor name
        applied = dict(zip((r.get("tensor", "") for r in m.layers.rows), read, strict=True))
        steps = [applied.get(r.get("tensor", "")) for r in m.local.rows]
        name = f"cosine threshold {describe_thresholds(steps, 'layer')}"
        fig.add_trace(threshold_steps(xs, steps, name=name), row=2, col=1)
    layout(fig, title="Accumulated vs local error along the topological order", height=620)
    fig.update_yaxes(title_text="SQNR dB", row=1, col=1)
    fig.update_yaxes(title_text="cosine", row=2, col=1)
    fig.update_xaxes(title_text="layer (topological order)", row=2, col=1)
    lead = (
        f"{len(m.local.rows)} layers; {len(marked)} origin{'s' if len(marked) != 1 else ''} marked ×. Where the "
        "accumulated curve drops but the local one does not, the error is inherited from upstream; an infinite SQNR "
        "(identical tensors) leaves a gap."
    )
    if read is None:
        lead += " " + (
            no_threshold_column("layers.csv", COSINE_THRESHOLD)
            if not m.layers.problem
            else "No cosine threshold line: layers.csv is missing or unreadable."
        )
    return f"{charts.render(fig)}\n<p>{esc(lead)}</p>"


def _range_cells(row: Mapping[str, str]) -> list[Cell]:
    flags = row.get("flags", "")
    below, channels = num(row.get("channels_below_step")), num(row.get("channels"))
    share = num(row.get("clipped_share"))
    return [
        text(row.get("tensor"), "name"),
        text(row.get("op_type")),
        text(f"{row.get('bits', '')} ({row.get('dtype', '')})" if row.get("dtype") else row.get("bits")),
        text(row.get("scale")),
        text(row.get("zero_point")),
        text(f"{fmt_num(num(row.get('representable_min')))} … {fmt_num(num(row.get('representable_max')))}"),
        text(f"{fmt_num(num(row.get('observed_min')))} … {fmt_num(num(row.get('observed_max')))}"),
        Cell(
            esc(f"{100 * share:.3g}%" if share is not None and finite(share) else fmt_num(share)),
            sort=repr(share) if finite(share) else "",
        ),
        number(num(row.get("rmse_steps")), 3),
        number(num(row.get("levels_used")), 4),
        number(num(row.get("level_share")), 3),
        number(num(row.get("zeroed_share")), 3),
        Cell(
            esc(f"{fmt_num(below)} of {fmt_num(channels)}") if channels else '<span class="muted">—</span>',
            sort=repr(below) if finite(below) else "",
        ),
        text(row.get("pattern"), "wrap"),
        text(flags, "wrap bad" if flags else "wrap"),
    ]


RANGE_HEADS = [
    "tensor",
    "op type",
    "bits",
    "scale",
    "zero point",
    "representable",
    "observed",
    "clipped",
    "error in steps",
    "levels used",
    "level share",
    "zeroed share",
    "channels below one step",
    "pattern",
    "flags",
]


def _ranges_part(m: ModelFiles) -> str:
    missing = why_missing(m.ranges, "diagnosis", empty="the target has no quantized activation to inspect.")
    if missing:
        return note(missing)
    rows = m.ranges.rows
    flagged = [r for r in rows if r.get("flags")]

    def steps(row: Mapping[str, str]) -> float:
        v = num(row.get("rmse_steps"))
        return v if v is not None and finite(v) else -math.inf

    ordered = sorted(rows, key=steps, reverse=True)
    shown = [r for i, r in enumerate(ordered) if i < TOP_RANGES or r.get("flags")]
    lead = (
        f"{len(rows)} quantized tensors, {len(flagged)} flagged (clipping, a range too wide, values below one step). "
        f"Shown: the flagged ones and the {min(TOP_RANGES, len(rows))} largest errors in steps, RMSE(DQ(Q(x)) − x) "
        "/ scale of the reference's own values: 0.29 is ideal rounding noise, well above it means clipping."
    )
    compact = table(RANGE_HEADS, (_range_cells(r) for r in shown))
    full = table(RANGE_HEADS, (_range_cells(r) for r in rows))
    return (
        f"<p>{esc(lead)}</p>\n{compact}\n<details><summary>All {len(rows)} quantized tensors "
        f'(table; <a href="{href("ranges.csv")}">ranges.csv</a>)</summary>{full}</details>'
    )


def _sensitivity_part(m: ModelFiles, data: Mapping[str, Any]) -> str:
    missing = why_missing(m.sensitivity, "diagnosis", empty="no layer was measured (no gate needed it).")
    if missing:
        return note(missing)
    s = as_dict(data.get("sensitivity"))
    quick = next((r.get("quick_metric") for r in m.sensitivity.rows if r.get("quick_metric")), "") or "quick metric"
    task = next((r.get("task_metric") for r in m.sensitivity.rows if r.get("task_metric")), "") or "task metric"
    rows = [
        [
            number(num(r.get("rank")), 0),
            text(r.get("node"), "name"),
            text(r.get("tensor"), "name"),
            text(r.get("op_type")),
            number(num(r.get("local_sqnr_db"))),
            number(num(r.get("quick_float"))),
            number(num(r.get("quick_only"))),
            number(num(r.get("quick_gain"))),
            number(num(r.get("quick_drop"))),
            number(num(r.get("task_float"))),
            number(num(r.get("task_only"))),
            number(num(r.get("task_gain"))),
            number(num(r.get("task_drop"))),
        ]
        for r in m.sensitivity.rows
    ]
    heads = [
        "rank",
        "node",
        "tensor",
        "op type",
        "local SQNR dB",
        f"{quick}: kept float",
        f"{quick}: quantized alone",
        f"{quick}: gain",
        f"{quick}: drop",
        f"{task}: kept float",
        f"{task}: quantized alone",
        f"{task}: gain",
        f"{task}: drop",
    ]
    lead = (
        "Each candidate measured twice: kept float with everything else quantized (gain: how much it recovers) and "
        "quantized alone with everything else float (drop: how much it costs); ranked by the larger of the two."
    )
    if s:
        lead += (
            f" Quick pass on {s.get('quick_images', '?')} images (quantized model "
            f"{fmt_num(num(s.get('baseline_quick')))}, float {fmt_num(num(s.get('reference_quick')))}); "
            f"{s.get('metric', task)} on {s.get('images', '?')} images (quantized model "
            f"{fmt_num(num(s.get('baseline_task')))}, float {fmt_num(num(s.get('reference_task')))})."
        )
    extra = bullets(esc(str(n)) for n in as_list(s.get("notes")))
    return f"<p>{esc(lead)}</p>\n{table(heads, rows)}{extra}"


def _advice_part(m: ModelFiles, data: Mapping[str, Any]) -> str:
    advice = data.get("advice")
    if not isinstance(advice, dict):
        return note("The diagnosis gave no advice (no gate it could verify was failing).")
    parts = []
    if advice.get("message"):
        parts.append(f"<p><strong>{esc(str(advice['message']))}</strong></p>")
    if not advice.get("needed", True):
        parts.append(note("No advice needed: the goal gates already pass."))
    layers = [str(x) for x in as_list(advice.get("layers"))]
    tensors = [str(x) for x in as_list(advice.get("tensors"))]
    precision = str(advice.get("precision") or "higher precision")
    if layers:
        rows = [
            [number(float(i + 1), 0), text(n, "name"), text(t, "name")]
            for i, (n, t) in enumerate(zip(layers, [*tensors, *[""] * (len(layers) - len(tensors))], strict=False))
        ]
        parts.append(f"<p>Keep {len(layers)} layer{'s' if len(layers) != 1 else ''} in {esc(precision)}:</p>")
        parts.append(table(["#", "node", "output tensor"], rows))
    goal = [str(g) for g in as_list(advice.get("goal"))]
    baseline = {str(v.get("gate")): v for v in as_list(advice.get("baseline")) if isinstance(v, dict)}
    verification = as_dict(advice.get("verification"))
    verified = {str(v.get("gate")): v for v in as_list(verification.get("verdicts")) if isinstance(v, dict)}
    gates = list(dict.fromkeys([*goal, *baseline, *verified]))
    if gates:
        rows = [
            [
                text(f"{g} (goal)" if g in goal else g),
                verdict(baseline.get(g, {}).get("passed")),
                verdict(verified.get(g, {}).get("passed")),
                text(verified.get(g, baseline.get(g, {})).get("message"), "wrap"),
            ]
            for g in gates
        ]
        name = verification.get("name") or "advised variant"
        parts.append(
            f"<h3>Gates: as quantized vs the advised variant, verified ({esc(str(name))})</h3>"
            + table(["gate", "as quantized", "advised (verified)", "message"], rows)
        )
        if not verification:
            parts.append(note("The advice was not verified: no quantized variant was measured."))
    trials = [t for t in as_list(advice.get("trials")) if isinstance(t, dict)]
    if trials:
        rows = [
            [
                number(float(i + 1), 0),
                text(", ".join(str(x) for x in as_list(t.get("layers"))), "name"),
                verdict(t.get("passed")),
                number(num(t.get("score"))),
                text(t.get("summary"), "wrap"),
            ]
            for i, t in enumerate(trials)
        ]
        parts.append(
            f"<details><summary>{len(trials)} trial{'s' if len(trials) != 1 else ''} (layer sets measured)</summary>"
            + table(["#", "layers kept", "passed", "score", "gates"], rows)
            + "</details>"
        )
    links = [
        f'<a href="{href(f)}">{esc(f)}</a> ({esc(what)})'
        for f, what in (
            ("advised.models.yaml", "the entry to paste under models:"),
            ("snpe_overrides.json", "SNPE quantization overrides"),
        )
        if (m.folder / f).is_file()
    ]
    if links:
        parts.append(f"<p>Files: {'; '.join(links)}.</p>")
    else:
        parts.append(note("No advised.models.yaml or snpe_overrides.json: the advice has no entry to write."))
    return "\n".join(parts)


def diagnosis_section(m: ModelFiles, charts: Charts) -> str:
    loaded = (m.diagnosis, m.local, m.ranges, m.sensitivity)
    if all(f.missing for f in loaded) and not any((m.folder / f).is_file() for f in DIAGNOSIS_FILES):
        return _diagnosis_missing(m)
    parts: list[str] = []
    data: dict[str, Any] = {}
    if m.diagnosis.missing:
        parts.append(_diagnosis_missing(m))
    elif m.diagnosis.problem or not isinstance(m.diagnosis.data, dict):
        parts.append(
            note(
                why_missing(m.diagnosis, "diagnosis", empty="the diagnosis wrote nothing.")
                or "diagnosis.json is not a JSON object."
            )
        )
    else:
        data = m.diagnosis.data
        gates = ", ".join(str(g) for g in as_list(data.get("failing_gates"))) or "none"
        head = (
            f"Diagnosis of the {data.get('target_kind') or 'target'} on {data.get('images', '?')} images; "
            f"failing gates: {gates}."
        )
        timings = {k: num(v) for k, v in as_dict(data.get("timings")).items()}
        total = sum(v for v in timings.values() if v is not None and finite(v))
        took = f' <span class="muted">(took {total:.1f} s)</span>' if total else ""
        parts.append(f"<p>{esc(head)}{took}</p>")
    parts.append("<h3>Where the loss starts</h3>")
    if data:
        parts.append(_origins_part(m, data))
        parts.append(bullets(esc(str(n)) for n in as_list(data.get("notes"))))
    else:
        parts.append(note("No origins without a readable diagnosis.json."))
    parts.append("<h3>Accumulated vs local error</h3>")
    parts.append(_local_chart(m, data, charts))
    parts.append(f"<h3>Quantization ranges (top {TOP_RANGES} and flagged)</h3>")
    parts.append(_ranges_part(m))
    parts.append("<h3>Sensitivity ranking</h3>")
    parts.append(_sensitivity_part(m, data))
    parts.append("<h3>Advice</h3>")
    parts.append(_advice_part(m, data) if data else note("No advice without a readable diagnosis.json."))
    return "\n".join(p for p in parts if p)
