"""Where a result came from: the bpdip checkout's git commit and whether it is dirty, and
the library versions. One place for the runner, the report's header and the benchmark;
torch is imported only by :func:`versions`, so the report needs no torch for its header."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """``git rev-parse HEAD`` of the bpdip checkout, "unknown" outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and commit else "unknown"


@functools.lru_cache(maxsize=1)
def git_dirty() -> bool | None:
    """Whether tracked files differ from the commit (None when unknown)."""
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(out.stdout.strip()) if out.returncode == 0 else None


def short_commit() -> str:
    """The commit's first 7 hex digits with a '+dirty' mark where tracked files differ, or
    "unknown": what a report's header prints."""
    commit = git_commit()
    return "unknown" if commit == "unknown" else commit[:7] + ("+dirty" if git_dirty() else "")


def versions() -> dict:
    import torch

    return {"torch_version": torch.__version__}
