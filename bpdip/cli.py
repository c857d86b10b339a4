"""Checks on ``run.py``'s command line that run before Hydra composes anything.

Hydra answers an unknown option of a config group (``kernel=foo``, ``boundary=foo``) with a
multi-line message and the config search path. bpdip's bar is one line for bad input
(issue 19), so :func:`bad_choice` reads each ``group=value`` override (sweeps too,
``loss=bp,nosuch``) against the files in ``conf/<group>/`` and names the options. Anything
it cannot read plainly (Hydra's sweep functions, interpolations, ``hydra/...`` groups,
whose options also live in installed plugins, any ``hydra.searchpath``) is left to Hydra.
A user's ``--config-dir DIR`` (``-cd``) adds DIR's options. No torch import here: a
launcher that only submits jobs stays light.
"""

from __future__ import annotations

import re
from pathlib import Path

_OVERRIDE = re.compile(r"^[+~]{0,2}(?P<group>[A-Za-z_][\w/]*)(@[\w.]+)?=(?P<value>.*)$")


def group_options(confs: list[Path], group: str) -> list[str] | None:
    """The options of config group ``group`` (its ``*.yaml`` stems) over the config
    folders ``confs``; None if it is a group in none of them."""
    folders = [c / group for c in confs if (c / group).is_dir()]
    if not folders:
        return None
    return sorted({p.stem for f in folders for p in f.glob("*.yaml")})


def _config_dirs(argv: list[str]) -> list[Path] | None:
    """The ``--config-dir``/``-cd`` folders in ``argv``; None where a search path is set."""
    dirs = []
    for i, arg in enumerate(argv):
        if arg.startswith("hydra.searchpath"):
            return None
        for flag in ("--config-dir", "-cd"):
            if arg == flag and i + 1 < len(argv):
                dirs.append(Path(argv[i + 1]))
            elif arg.startswith(flag + "="):
                dirs.append(Path(arg.split("=", 1)[1]))
    return dirs


def bad_choice(argv: list[str], conf: Path) -> str | None:
    """One line naming the first unknown group option in ``argv``, or None."""
    extra = _config_dirs(argv)
    if extra is None:
        return None
    confs = [conf, *extra]
    for arg in argv:
        m = _OVERRIDE.match(arg)
        if not m or m["group"].startswith("hydra"):
            continue
        value = m["value"]
        if arg.startswith("~") or not value or any(c in value for c in "()[]{}$'\""):
            continue  # a deletion, an empty value or Hydra's grammar: Hydra's to judge
        options = group_options(confs, m["group"])
        if options is None:
            continue
        for choice in value.split(","):
            if choice not in options:
                return (f"{m['group']}={choice} is not an option of config group '{m['group']}'; "
                        f"use one of: {', '.join(options)} (conf/{m['group']}/)")
    return None
