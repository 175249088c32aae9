"""The error-split section of the model page (``htp_split.csv``, written by targets such as ``qnn-htp``): per
tensor, the quantization part (host int8 vs FP32) beside the runtime part (the accelerator vs host int8 on the same
quantized model), so a user sees which layers the runtime's arithmetic changes."""

from __future__ import annotations

from qc.report.dashboard.charts import Charts, layout
from qc.report.dashboard.data import ModelFiles, fmt_num, num
from qc.report.dashboard.markup import note, number, plot_text, table, text, unique_labels, why_missing

SPLIT_FILE = "htp_split.csv"


def split_section(m: ModelFiles, charts: Charts) -> str:
    """The chart and table, or a note saying why there is none."""
    import plotly.graph_objects as go

    missing = why_missing(m.split, "comparison stage", empty="the split has no tensors.")
    if missing:
        return note(missing)
    rows = m.split.rows
    labels = unique_labels(plot_text(r.get("tensor", "")) for r in rows)
    fig = go.Figure()
    for column, name, color in (
        ("sqnr_db_quant", "quantization (CPU int8 vs FP32)", "#8250df"),
        ("sqnr_db_runtime", "runtime (HTP vs CPU int8, same QDQ model)", "#cf222e"),
    ):
        fig.add_trace(
            go.Scatter(
                x=labels,
                y=[num(r.get(column)) for r in rows],
                mode="lines+markers",
                name=name,
                marker={"color": color},
                hovertemplate="%{x}: %{y:.2f} dB<extra>" + name + "</extra>",
            )
        )
    layout(fig, title="Mean SQNR per tensor (dB, higher is closer): quantization vs runtime", height=380)
    body = [
        "<p>Per tensor: the error quantization alone makes (onnxruntime's CPU int8 kernels on the QDQ model vs the "
        "FP32 reference) beside the error the HTP's own arithmetic adds (the HTP vs CPU int8 on the same QDQ "
        "model). A runtime SQNR well below the quantization SQNR marks a layer the HTP computes differently.</p>",
        charts.render(fig),
    ]
    table_rows = []
    for r in rows:
        q, rt = num(r.get("sqnr_db_quant")), num(r.get("sqnr_db_runtime"))
        gap = q - rt if q is not None and rt is not None else None
        table_rows.append(
            [
                text(r.get("index")),
                text(r.get("tensor"), "name"),
                text(r.get("op_type")),
                number(num(r.get("cosine_quant"))),
                number(q, 2),
                number(num(r.get("cosine_runtime"))),
                number(rt, 2),
                text(fmt_num(gap)),
            ]
        )
    heads = ["#", "tensor", "op type", "cosine quant", "SQNR quant (dB)", "cosine runtime", "SQNR runtime (dB)"]
    body.append(table([*heads, "quant − runtime (dB)"], table_rows))
    return "\n".join(body)
