"""Per-layer time of a profiled ``snpe-net-run``: ``snpe-diagview`` (CSV v2, else its text) read into a
:class:`qc.speed.LayerProfile` whose rows are matched to ``snpe-dlc-info`` layers by name.

A diagview row index is its position in the profile, never a dlc-info layer id (on the HTP the first row is the
``Input OpId_n`` transfer, and ops are fused or split): rows are matched by name only, exactly or after both names
are reduced to identifier form (QNN writes ``/model/fc_1/MatMul`` as ``_model/fc_1/MatMul`` on the CPU and
``model/fc_1/MatMul:OpId_18`` on the HTP), and only when that form names one layer. A row that matches no layer
keeps its printed name and op type ``?``; a name-less row (SNPE 2.x text) is ``diagview row <i>``. Input/output
transfer rows go to :attr:`qc.speed.LayerProfile.io`, never among the layers.
"""

from __future__ import annotations

import logging
import math
import posixpath
import re
import shutil
from pathlib import Path

from qc.device.transport import LocalTransport
from qc.errors import DeviceError, ParseError
from qc.snpe.parsers import DlcInfo, DlcLayer, LayerTimes, parse_diagview_csv, parse_diagview_text
from qc.snpe.tools import Session, failure, last_line, run_tool
from qc.speed import LayerProfile, LayerTimeRow

__all__ = ["layer_profile", "match_layer", "read_layer_times"]

log = logging.getLogger("qc.snpe")


def _key(name: str) -> str:
    return re.sub(r"[^0-9A-Za-z]+", "_", name).strip("_")


def match_layer(name: str | None, layers: list[DlcLayer]) -> DlcLayer | None:
    """The dlc-info layer a diagview row names: exact name, else the one layer with the same identifier form."""
    if not name:
        return None
    exact = next((layer for layer in layers if layer.name == name), None)
    if exact is not None:
        return exact
    key = _key(name)
    found = [layer for layer in layers if _key(layer.name) == key]
    return found[0] if len(found) == 1 else None


def layer_profile(times: LayerTimes, info: DlcInfo) -> LayerProfile:
    rows = []
    for row in times.rows:
        layer = match_layer(row.name, info.layers)
        name = layer.name if layer is not None else (row.name or f"diagview row {row.index}")
        op_type = layer.op_label if layer is not None else "?"
        rows.append(LayerTimeRow(name, op_type, row.time, row.unit, row.share))
    io = [LayerTimeRow(r.name or r.kind, f"{r.kind} transfer", r.time, r.unit, r.share) for r in times.io]
    total_us = times.total_inference_time_us
    run_ms = total_us / 1000.0 if total_us is not None and math.isfinite(total_us) else None
    return LayerProfile(rows, run_ms, io)


def read_layer_times(sess: Session, remote: str, log_rel: str, tmp: Path) -> LayerTimes:
    """``snpe-diagview --csv_format_version 2`` on the log (on this machine when the tool is on its PATH, else on
    the device), falling back to the text form when the CSV cannot be made."""
    host_tool = shutil.which("snpe-diagview")
    if host_tool is not None:
        where = "this machine"
        local_log = tmp / posixpath.basename(log_rel)
        sess.transport.get(posixpath.join(remote, log_rel), local_log, deadline_s=sess.deadline_s)
        local = LocalTransport()
        csv_path = tmp / "layer_stats.csv"
        csv_run = local.run(
            [host_tool, "--input_log", str(local_log), "--csv_format_version", "2", "--output", str(csv_path)],
            deadline_s=sess.deadline_s,
            cwd=str(tmp),
        )
        csv_text = csv_path.read_text(encoding="utf-8", errors="replace") if csv_run.ok and csv_path.is_file() else None
        if csv_text is None:
            text_run = local.run([host_tool, "--input_log", str(local_log)], deadline_s=sess.deadline_s, cwd=str(tmp))
    else:
        where = sess.label
        csv_run = run_tool(
            sess,
            ["snpe-diagview", "--input_log", log_rel, "--csv_format_version", "2", "--output", "layer_stats.csv"],
            cwd=remote,
        )
        csv_text = None
        if csv_run.ok:
            cat = sess.transport.run(["cat", "--", "layer_stats.csv"], deadline_s=120, cwd=remote, idempotent=True)
            csv_text = cat.stdout if cat.ok else None
        if csv_text is None:
            text_run = run_tool(sess, ["snpe-diagview", "--input_log", log_rel], cwd=remote)
    try:
        if csv_text is not None:
            return parse_diagview_csv(csv_text)
        log.info(
            "%s: snpe-diagview --csv_format_version 2 failed on %s (%s); reading its text form",
            sess.who,
            where,
            last_line(csv_run.stderr) or csv_run.rc,
        )
        if text_run.rc != 0:
            raise DeviceError(failure(sess.who, "snpe-diagview", text_run, where))
        return parse_diagview_text(text_run.stdout)
    except ParseError as exc:
        raise ParseError(f"{sess.who}: {exc} [on {where}]") from None
