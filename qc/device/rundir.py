"""The per-run working folder on a device: ``<remote root>/qc-<run id>/``, and deletes confined to it."""

from __future__ import annotations

import logging
import posixpath
import re
from types import TracebackType

from qc.device.transport import Transport, quote_remote_path
from qc.errors import DeviceError

__all__ = ["RunDir"]

log = logging.getLogger("qc.device")

_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_END = "__qc_resolved__"


def refuse_control_characters(path: str, what: str) -> None:
    """Raise DeviceError if ``path`` holds a control character (C0, DEL or C1), naming it and where."""
    found = _CONTROL.search(path)
    if found is not None:
        raise DeviceError(
            f"{what} {path!r} contains the control character {found.group()!r} at offset {found.start()}; "
            "remote paths must not hold control characters."
        )


class RunDir:
    """``<root>/qc-<run_id>/`` on the device: created by :meth:`create`, removed by :meth:`cleanup`.

    Used as a context manager, the folder is removed on exit, except after an exception when
    ``keep_on_failure`` is set (its path is logged so that it can be inspected).

    :meth:`remove` deletes only below the run folder: a path is normalised lexically (``..``, ``//``, ``.``),
    must lie strictly inside the run folder, and its parent folder is then resolved physically on the device
    (``cd -P``), so a symlink inside the run folder cannot redirect the delete elsewhere. The resolved target
    must lie strictly inside the physical run folder, and the delete itself runs in the physically resolved
    parent after checking that it still resolves there.

    Remote paths holding control characters (a newline could split ``pwd -P``'s answer) are refused, in the
    root given here and in every path the device resolves.
    """

    def __init__(
        self,
        transport: Transport,
        root: str,
        run_id: str,
        *,
        keep_on_failure: bool = False,
        deadline_s: float = 60.0,
    ) -> None:
        if not _RUN_ID.match(run_id):
            raise DeviceError(f"Run id {run_id!r} must be 1-128 characters of letters, digits, '.', '_' or '-'.")
        refuse_control_characters(root, "Remote root")
        if not root.startswith("/"):
            raise DeviceError(f"Remote root {root!r} must be an absolute path.")
        self.transport = transport
        self.root = posixpath.normpath(root)
        self.run_id = run_id
        self.path = posixpath.join(self.root, f"qc-{run_id}")
        self.keep_on_failure = keep_on_failure
        self.deadline_s = deadline_s
        self._physical: str | None = None

    def __repr__(self) -> str:
        return f"RunDir({self.path!r})"

    def __enter__(self) -> RunDir:
        self.create()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.cleanup(failed=exc_type is not None)

    def create(self) -> str:
        """Create the run folder (it must not exist yet) and return its path."""
        qroot, qpath = quote_remote_path(self.root), quote_remote_path(self.path)
        self.transport.run(f"mkdir -p -- {qroot} && mkdir -- {qpath}", deadline_s=self.deadline_s, check=True)
        self._physical = self._resolve(self.path)
        if self._physical is None:
            raise DeviceError(f"Run folder {self.path} vanished right after it was created.")
        return self.path

    def join(self, *parts: str) -> str:
        """A path inside the run folder (refuses anything that would leave it)."""
        path = posixpath.normpath(posixpath.join(self.path, *parts))
        if path != self.path and not path.startswith(self.path + "/"):
            raise DeviceError(f"Path {posixpath.join(*parts)!r} leaves the run folder {self.path}.")
        return path

    def contains(self, path: str) -> bool:
        """Whether ``path`` (absolute, or relative to the run folder) lies strictly inside it, lexically."""
        if "\x00" in path or not path:
            return False
        norm = posixpath.normpath(posixpath.join(self.path, path))
        return norm.startswith(self.path + "/")

    def remove(self, path: str) -> None:
        """Delete ``path`` (file or folder, recursively) if it lies inside the run folder; refuse otherwise.

        Raises DeviceError for the run folder itself, anything outside it (after normalisation), and paths
        whose parent resolves outside it through symlinks. A path that does not exist is not an error.
        """
        if not self.contains(path):
            raise DeviceError(f"Refusing to delete {path!r}: it is not inside the run folder {self.path}.")
        norm = posixpath.normpath(posixpath.join(self.path, path))
        parent, name = posixpath.split(norm)
        physical_run = self._physical or self._resolve(self.path)
        if physical_run is None:
            raise DeviceError(f"Refusing to delete {path!r}: the run folder {self.path} does not exist.")
        physical_parent = self._resolve(parent)
        if physical_parent is None:
            return  # the parent does not exist, so neither does the path
        if physical_parent != physical_run and not physical_parent.startswith(physical_run + "/"):
            raise DeviceError(
                f"Refusing to delete {path!r}: its folder resolves to {physical_parent} on the device, "
                f"outside the run folder {self.path} (physically {physical_run}; symlink?)."
            )
        target = posixpath.join(physical_parent, name)
        if not target.startswith(physical_run + "/"):
            raise DeviceError(
                f"Refusing to delete {path!r}: on the device it resolves to {target}, which is not inside the run "
                f"folder {self.path} (physically {physical_run})."
            )
        qparent = quote_remote_path(physical_parent)
        script = (
            f"cd -P -- {qparent} 2>/dev/null || exit 0; "
            f'[ "$(pwd -P)" = {qparent} ] || {{ printf "%s now resolves elsewhere\\n" {qparent} >&2; exit 3; }}; '
            f"rm -rf -- {quote_remote_path(name)}"
        )
        self.transport.run(script, deadline_s=self.deadline_s, idempotent=True, check=True)

    def cleanup(self, *, failed: bool = False) -> None:
        """Remove the run folder, or keep it (and log where) after a failure when ``keep_on_failure``."""
        if failed and self.keep_on_failure:
            log.warning("Keeping the run folder %s for inspection after a failure.", self.path)
            return
        self.transport.run(["rm", "-rf", "--", self.path], deadline_s=self.deadline_s, idempotent=True, check=True)
        self._physical = None

    def _resolve(self, folder: str) -> str | None:
        """The physical path of a folder on the device (symlinks resolved), or None if it does not exist.

        The answer is framed by an end marker and must be exactly one absolute path without control
        characters: a folder name holding a newline cannot pass off one of its lines as the answer.
        """
        result = self.transport.run(
            f"cd -P -- {quote_remote_path(folder)} 2>/dev/null && pwd -P && echo {_END}",
            deadline_s=self.deadline_s,
            idempotent=True,
        )
        if result.rc != 0:
            return None
        tail = f"\n{_END}\n"
        if not result.stdout.endswith(tail):
            raise DeviceError(f"Cannot resolve {folder} on the device: 'pwd -P' printed {result.stdout!r}.")
        resolved = result.stdout[: -len(tail)]
        refuse_control_characters(resolved, f"{folder} resolves on the device to a path that")
        if not resolved.startswith("/"):
            raise DeviceError(f"Cannot resolve {folder} on the device: 'pwd -P' printed {resolved!r}.")
        return resolved
