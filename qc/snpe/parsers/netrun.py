"""``snpe-net-run`` console output: the folder ``--debug`` could not write to, and the input files it processed."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from qc.snpe.parsers._common import _guarded, _text_arg, _Where

__all__ = ["ProcessedInputs", "parse_failed_write", "parse_processed_inputs"]


_FAILED_WRITE = re.compile(r"Failed to write data to:?\s*(.*?)\s*$")


@_guarded("snpe-net-run")
def parse_failed_write(stderr: str) -> str | None:
    """The path in ``Failed to write data to: <path>`` (first occurrence), or None when absent."""
    stderr = _text_arg("snpe-net-run", stderr)
    where = _Where("snpe-net-run")
    for lineno, line in enumerate(stderr.splitlines(), 1):
        if "Failed to write data to" not in line:
            continue
        where.at(lineno, line)
        match = _FAILED_WRITE.search(line)
        path = match.group(1) if match is not None else ""
        if len(path) >= 2 and path[0] == path[-1] and path[0] in "'\"":
            path = path[1:-1]
        if not path:
            raise where.error("'Failed to write data to' without a path")
        return path
    return None


_PROCESSING = re.compile(r"^\s*Processing DNN [Ii]nput\(s\)\s*:\s*(.*?)\s*$")
_NOT_A_PATH = re.compile(
    r"^(?:-{3,}|Model String:|SNPE v|Processing graph|Successfully executed|ERROR|WARNING|\[|Using |Loading |Running )"
)


@dataclass(frozen=True)
class ProcessedInputs:
    """What ``snpe-net-run`` printed under each ``Processing DNN input(s):`` header, in order.

    ``executions`` holds, per header, the input files named there (``name:=`` prefixes dropped); ``counts`` how
    often each file was named overall.
    """

    executions: list[list[str]]

    @property
    def counts(self) -> Counter[str]:
        return Counter(path for paths in self.executions for path in paths)


@_guarded("snpe-net-run")
def parse_processed_inputs(stdout: str) -> ProcessedInputs:
    """The input files of each execution, from the ``Processing DNN input(s):`` blocks of ``snpe-net-run``.

    Formats read: the header alone on its line with the path(s) on the next line(s) (SNPE 2.x, QAIRT 2.2x), or the
    path(s) on the header line itself (QAIRT 2.4x: ``Processing DNN input(s): /tmp/in.raw``). Paths end at a blank
    line, the next header or a line of the tool's own (``Successfully executed``, a dashed rule, ...).
    """
    stdout = _text_arg("snpe-net-run", stdout)
    executions: list[list[str]] = []
    current: list[str] | None = None
    for line in stdout.splitlines():
        header = _PROCESSING.match(line)
        if header is not None:
            current = []
            executions.append(current)
            rest = header.group(1)
            if rest:
                current.extend(_paths(rest))
            continue
        stripped = line.strip()
        if current is None:
            continue
        if not stripped or _NOT_A_PATH.match(stripped):
            current = None
            continue
        current.extend(_paths(stripped))
    return ProcessedInputs(executions)


def _paths(text: str) -> list[str]:
    return [token.partition(":=")[2] if ":=" in token else token for token in text.split()]
