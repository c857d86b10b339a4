"""Checks of single config values, each answering bad input with one line (issue 29):
a value is named with what it must be, before any training starts. ``plan_cell`` calls
the value checks; ``run_cell`` calls :func:`check_results_root` before it writes a record."""

from __future__ import annotations

import tempfile
from pathlib import Path


def integer(value, key: str, minimum: int | None = None, meaning: str = "") -> int:
    """``value`` as an int; ValueError naming ``key`` for text, fractions, booleans or a
    value below ``minimum`` (``meaning`` says what the setting is, for the message)."""
    ok = not isinstance(value, bool) and (isinstance(value, int) or (isinstance(value, float) and value.is_integer()))
    if ok and (minimum is None or value >= minimum):
        return int(value)
    bound = "an integer" if minimum is None else f"an integer >= {minimum}"
    raise ValueError(f"{key} must be {bound}{f' ({meaning})' if meaning else ''}, got {value!r}")


def check_threads(value):
    """``threads``: null (torch's default), a positive number of threads, or ``auto``."""
    if value is None or value == "auto":
        return value
    return integer(value, "threads", 1, "torch CPU threads per job; null: torch's default, or auto")


def check_results_root(root: Path | None) -> None:
    """The results store must be a folder this job can write: created if missing, and
    tried with a temporary file, so that an unwritable store is one line at the start
    and not a traceback after the job has written its "running" summary."""
    if root is None:
        return
    fix = "set results_root (or BPDIP_RESULTS) to a folder you can write, or results_root=null for no store"
    if root.exists() and not root.is_dir():
        raise ValueError(f"results_root={root} is a file, not a folder; {fix}")
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=root):
            pass
    except OSError as exc:
        raise ValueError(f"results_root={root} cannot be written ({exc.strerror or exc}); {fix}") from None
