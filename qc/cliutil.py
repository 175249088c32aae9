"""Small argparse helpers shared by the ``qc`` command line and the pytest plugin's options."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """An argparse ``type=`` for counts that must be at least 1 (``--images``, ``--qc-images``).

    ``0`` or a negative number is refused with a clear message instead of silently meaning "all" or "all but N".
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, found {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, found {value}")
    return value
