#!/usr/bin/env python
"""Does ``stop.early`` pick what the full runs picked, and what does it save?

    python scripts/compare_stop_early.py FULL_RECORDS EARLY_RECORDS --rule emv [--csv out.csv]

Both are run directories (or stores) as ``scripts/make_report.py`` reads them; images are
matched by (kernel, noise, loss, seed, image). See :func:`early_comparison`.
"""

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's bpdip, not an installed one

from bpdip.report import load_local  # noqa: E402
from bpdip.stopping import ONLINE  # noqa: E402

EARLY_COLUMNS = ["kernel", "noise_var", "loss", "seed", "image", "full_choice", "early_choice", "same_choice",
                 "full_psnr", "early_psnr", "restored_psnr", "restored_from", "full_iterations", "early_iterations"]


def _complete_images(jobs) -> dict:
    out = {}
    for job in jobs:
        if job.cell is None:
            continue
        for name, img in job.images.items():
            if img.status == "complete":
                out[(job.cell.kernel, job.cell.noise_var, job.cell.loss, job.seed, name)] = img.summary
    return out


def early_comparison(full_jobs, early_jobs, rule: str) -> pd.DataFrame:
    """One row per image found complete in both sets of records: the iteration ``rule`` chose
    in the full run and in the ``stop.early`` run, the PSNR of those images (from each run's
    ``stopping`` record), the early run's restored image (``restored_psnr``: ``final_psnr``,
    the choice of the rule it followed, ``restored_from``), and the iterations each trained.
    ``stop.early`` must not change the choice (tests/test_stopping.py); this checks it on
    real grids and measures what it saves."""
    full, early = _complete_images(full_jobs), _complete_images(early_jobs)
    rows = []
    for key in sorted(set(full) & set(early), key=str):
        f, e = full[key], early[key]
        fc = ((f.get("stopping") or {}).get(rule) or {})
        ec = ((e.get("stopping") or {}).get(rule) or {})
        rows.append(dict(zip(EARLY_COLUMNS[:5], key), full_choice=fc.get("iteration"), early_choice=ec.get("iteration"),
                         same_choice=fc.get("iteration") is not None and fc.get("iteration") == ec.get("iteration"),
                         full_psnr=fc.get("psnr"), early_psnr=ec.get("psnr"), restored_psnr=e.get("final_psnr"),
                         restored_from=(e.get("restored_from") or {}).get("rule"),
                         full_iterations=f.get("iterations"), early_iterations=e.get("iterations")))
    return pd.DataFrame(rows, columns=EARLY_COLUMNS)


def md_early_comparison(frame: pd.DataFrame, rule: str) -> str:
    """A short Markdown summary of :func:`early_comparison`."""
    if frame.empty:
        return f"no image is complete in both sets of records (rule {rule})"
    full, early = int(frame.full_iterations.sum()), int(frame.early_iterations.sum())
    diff = (frame.early_psnr - frame.full_psnr).abs()
    return "\n".join([
        f"- images in both: {len(frame)}; `{rule}` chose the same iteration in {int(frame.same_choice.sum())}",
        f"- iterations trained: full {full:,}, `stop.early` {early:,} ({100 * (1 - early / full):.1f} % fewer)",
        f"- largest |PSNR difference| of the chosen images: {diff.max():.4f} dB" if diff.notna().all() else
        "- PSNR: not on record for every image (no ground truth?)"])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("full")
    p.add_argument("early")
    p.add_argument("--rule", default="emv", choices=sorted(ONLINE))
    p.add_argument("--csv")
    args = p.parse_args(argv)
    try:
        frame = early_comparison(load_local([args.full]), load_local([args.early]), args.rule)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(md_early_comparison(frame, args.rule))
    if args.csv:
        frame.to_csv(args.csv, index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
