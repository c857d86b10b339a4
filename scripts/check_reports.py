#!/usr/bin/env python
"""Rebuild committed reports from their committed records and diff them (issue 28's guard).

    python scripts/check_reports.py                      # results/cpu_grid, demo, sr_cpu
    python scripts/check_reports.py results/demo --figures

Each folder is rebuilt with ``bpdip.report`` from ``FOLDER/records`` into a temporary
directory (as its PROVENANCE.md says: ``python scripts/make_report.py FOLDER/records --out
FOLDER``), then compared with the committed files: every CSV must hold the same table
(same columns, same rows, numbers equal to 1e-9 relative), every Markdown and LaTeX file
the same lines except the header's "built ... at code commit" line. Figures are rebuilt
only with ``--figures`` (slow) and are not compared (PNG/PDF bytes carry dates).
Exit status 1 when anything differs. ``results/photo`` is written by
``scripts/photo_evidence.py``, not by ``bpdip.report``: it is rebuilt by that script from its
committed jobs (``--from-jobs``: the observations re-made, the restored PNGs and the
baselines measured again, nothing trained) and its ``per_image.csv`` and ``summary.md``
compared (its ``baselines.*`` come from ``scripts/baseline_evidence.py photo``: not rebuilt here).
"""

from __future__ import annotations

import argparse
import difflib
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("results/cpu_grid", "results/demo", "results/sr_cpu", "results/photo")
# beside a report, not written by bpdip.report: by hand, by scripts/baseline_evidence.py grid
# and by scripts/stopping_targets.py (each says so in PROVENANCE.md)
NOT_REPORT = ("PROVENANCE.md", "baselines_classical.csv", "baselines_classical.md",
              "baselines_classical_per_image.csv", "stopping_targets.md")
# results/photo's baselines are written by scripts/baseline_evidence.py photo (its PROVENANCE.md),
# not by photo_evidence.py: rerun that script to rebuild them
NOT_REBUILT = {"photo": ("baselines.csv", "baselines.md")}
VOLATILE = ("- built ",)  # header lines that name the build time and commit


def compare_csv(old: Path, new: Path, rtol: float = 1e-9) -> list[str]:
    """Differences between two CSV tables, as lines (none: numerically equal)."""
    a, b = pd.read_csv(old, keep_default_na=False), pd.read_csv(new, keep_default_na=False)
    if list(a.columns) != list(b.columns):
        return [f"columns {list(a.columns)} != {list(b.columns)}"]
    if len(a) != len(b):
        return [f"{len(a)} rows != {len(b)} rows"]
    out = []
    for col in a.columns:
        x, y = a[col], b[col]
        xn, yn = pd.to_numeric(x, errors="coerce"), pd.to_numeric(y, errors="coerce")
        numeric = xn.notna() & yn.notna()
        close = np.isclose(xn[numeric].to_numpy(float), yn[numeric].to_numpy(float), rtol=rtol, atol=1e-12)
        bad = list(np.flatnonzero(~close))
        bad_rows = list(xn[numeric].index[bad]) + [i for i in x.index[~numeric] if str(x[i]) != str(y[i])]
        for i in sorted(bad_rows)[:5]:
            out.append(f"row {i} {col}: {x[i]!r} != {y[i]!r}")
    return out


def compare_text(old: Path, new: Path) -> list[str]:
    def lines(p):
        return [ln for ln in p.read_text().splitlines() if not ln.startswith(VOLATILE)]

    return [ln for ln in difflib.unified_diff(lines(old), lines(new), str(old), str(new), lineterm="", n=0)]


def compare_dirs(committed: Path, rebuilt: Path) -> dict[str, list[str]]:
    """file name -> its differences, over the committed tables and texts (and new ones)."""
    kinds, skip = (".csv", ".md", ".tex"), (*NOT_REPORT, *NOT_REBUILT.get(committed.name, ()))
    names = sorted({p.name for d in (committed, rebuilt) for p in d.iterdir() if p.suffix in kinds and p.name not in skip})
    diffs = {}
    for name in names:
        old, new = committed / name, rebuilt / name
        if not old.exists() or not new.exists():
            diffs[name] = ["only in " + ("the rebuilt report" if new.exists() else "the committed report")]
            continue
        d = compare_csv(old, new) if name.endswith(".csv") else compare_text(old, new)
        if d:
            diffs[name] = d
    return diffs


def rebuild(records: Path, out: Path, figures: bool = False, extra: tuple = ()) -> None:
    from bpdip.report.cli import main

    args = [str(records), "--out", str(out), *extra]
    if not figures:
        args.append("--no-figure")
    if main(args) != 0:
        raise SystemExit(f"rebuilding {records} failed")


def rebuild_photo(folder: Path, out: Path) -> None:
    """results/photo's tables from its committed jobs (scripts/photo_evidence.py --from-jobs)."""
    import json

    sys.path.insert(0, str(ROOT / "scripts"))
    import photo_evidence

    settings = json.loads((folder / "provenance.json").read_text())["settings"]
    photo_evidence.main(["--out", str(out), "--from-jobs", str(folder / "jobs"), "--images", settings["images"],
                         "--kernels", settings["kernels"], "--losses", settings["losses"],
                         "--noise-var", str(settings["noise_var"]), "--crop", str(settings["crop"]),
                         "--model", settings["model"], "--iterations", str(settings["iterations"])])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folders", nargs="*", default=list(FOLDERS))
    p.add_argument("--figures", action="store_true", help="also rebuild the figures (not compared)")
    args = p.parse_args(argv)
    failed = 0
    for folder in map(Path, args.folders):
        with tempfile.TemporaryDirectory() as tmp:
            if (folder / "records").is_dir():
                rebuild(folder / "records", Path(tmp), args.figures)
            else:
                rebuild_photo(folder, Path(tmp))
            diffs = compare_dirs(folder, Path(tmp))
        print(f"{folder}: " + ("identical tables and texts" if not diffs else f"{len(diffs)} files differ"))
        for name, lines in diffs.items():
            print(f"  {name}:")
            for line in lines[:20]:
                print(f"    {line}")
        failed += bool(diffs)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
