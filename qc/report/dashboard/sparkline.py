"""A static per-layer cosine sparkline (Pillow only), ``models/<model>/layers.png``, for pytest-html."""

from __future__ import annotations

import io
import math
from pathlib import Path

from qc.errors import DataError
from qc.report.dashboard.assets import write_bytes
from qc.report.dashboard.data import COSINE_THRESHOLD, num, read_csv, safe_name, thresholds
from qc.report.paths import model_dir


def dashboard_png(report_dir: Path, model: str, *, size: tuple[int, int] = (360, 80)) -> Path:
    """A static per-layer cosine sparkline, ``<report_dir>/models/<model>/layers.png`` (Pillow only), for pytest-html.

    The dashed red steps are the cosine threshold layers.csv gives each layer (none when it has no such column);
    a red dot is a layer under its own threshold, a red tick an undefined metric."""
    from PIL import Image, ImageDraw, ImageFont

    if not safe_name(model):
        raise DataError(f"dashboard_png: {model!r} is not a model folder name.")
    report_dir = Path(report_dir)
    layers = read_csv(model_dir(report_dir, model) / "layers.csv")
    values = [num(r.get("cosine_mean")) for r in layers.rows]
    limits = thresholds(layers, COSINE_THRESHOLD) or [None] * len(values)
    drawn = [t for t in limits if t is not None]
    width, height = size
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=11)
    red, blue, grey = (207, 34, 46), (9, 105, 218), (140, 149, 159)
    defined = [v for v in values if v is not None and math.isfinite(v)]
    if not defined:
        reason = "no layer comparison" if layers.problem or not layers.rows else "no defined cosine"
        draw.text((6, height // 2 - 7), f"{model}: {reason}", fill=grey, font=font)
    else:
        left, right, top, bottom = 4, width - 5, 18, height - 5
        lo = min(*defined, *drawn)
        hi = max(*defined, *drawn)
        if hi - lo < 1e-9:
            lo, hi = lo - 1e-3, hi + 1e-3

        def px(i: int) -> float:
            return left + (right - left) * i / max(len(values) - 1, 1)

        def py(v: float) -> float:
            return bottom - (bottom - top) * (v - lo) / (hi - lo)

        step = (right - left) / max(len(values) - 1, 1)
        for i, limit in enumerate(limits):
            if limit is None:
                continue
            y, start, end = py(limit), max(px(i) - step / 2, left), min(px(i) + step / 2, right)
            x0 = start
            while x0 < end:  # a dashed step over this layer's slot
                draw.line([(x0, y), (min(x0 + 4, end), y)], fill=red, width=1)
                x0 += 8
        segment: list[tuple[float, float]] = []
        for i, v in enumerate([*values, None]):
            if v is not None and math.isfinite(v):
                segment.append((px(i), py(v)))
                continue
            if len(segment) > 1:
                draw.line(segment, fill=blue, width=2)
            elif segment:
                draw.point(segment, fill=blue)
            segment = []
        for i, (v, limit) in enumerate(zip(values, limits, strict=True)):
            if v is not None and math.isnan(v):
                draw.line([(px(i), bottom - 6), (px(i), bottom)], fill=red, width=2)
            elif v is not None and limit is not None and v < limit:
                x, y = px(i), py(v)
                draw.ellipse([x - 2.5, y - 2.5, x + 2.5, y + 2.5], fill=red)
        undefined = sum(1 for v in values if v is not None and math.isnan(v))
        label = f"{model}: {len(values)} layers, min cosine {min(defined):.4f}"
        if undefined:
            label += f", {undefined} undefined"
        draw.text((4, 2), label, fill=(31, 35, 40), font=font)
    out = model_dir(report_dir, model) / "layers.png"
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    write_bytes(out, buf.getvalue())
    return out
