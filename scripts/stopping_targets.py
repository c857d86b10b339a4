"""Issue 32's grid targets, read from job records (summary.json ``choices``): for every cell
(kernel, noise var, loss) the best stream's oracle (the stream whose oracle PSNR, averaged
over the cell's images and seeds, is highest) against each no-ground-truth choice
(``<stream>.<rule>``: an online rule or ``fixed``, the last iterate), averaged the same way.

    python scripts/stopping_targets.py RECORDS_DIR [--out FILE.md]

Prints (and writes) one row per choice: the mean gap over the cells, the worst cell's gap
and how many cells are within the targets (0.2 dB on the mean, 1.0 dB in every cell).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

MEAN_TARGET_DB, CELL_TARGET_DB = 0.2, 1.0


def cell_values(root: Path) -> dict:
    """{cell: {"<stream>.<rule>": [psnr per image and seed]}} of every complete image."""
    cells = defaultdict(lambda: defaultdict(list))
    for path in sorted(root.rglob("summary.json")):
        summary = json.loads(path.read_text())
        c = summary["run"]["cell"]
        cell = (c["kernel"], float(c["noise_var"]), c["loss"])
        for entry in summary["images"].values():
            if entry.get("status") != "complete" or "choices" not in entry:
                continue
            for stream, rules in entry["choices"].items():
                for rule, choice in rules.items():
                    if choice.get("psnr") is not None:
                        cells[cell][f"{stream}.{rule}"].append(choice["psnr"])
    return cells


def gaps(cells: dict) -> dict[str, list[float]]:
    """Per choice, its mean PSNR minus the best stream's oracle, one value per cell."""
    out = defaultdict(list)
    for values in cells.values():
        oracle = max(np.mean(v) for k, v in values.items() if k.endswith(".oracle"))
        for key, v in values.items():
            if not key.endswith(".oracle"):
                out[key].append(float(np.mean(v)) - oracle)
    return out


def table(cells: dict) -> str:
    rows = sorted(gaps(cells).items(), key=lambda kv: -np.mean(kv[1]))
    lines = [f"{len(cells)} cells; gap to the best stream's oracle [dB] (targets: mean >= -{MEAN_TARGET_DB}, "
             f"every cell >= -{CELL_TARGET_DB})", "",
             "| choice | mean gap | worst cell | cells within 1.0 dB | both targets |", "|---|---|---|---|---|"]
    for key, g in rows:
        ok = np.mean(g) >= -MEAN_TARGET_DB and min(g) >= -CELL_TARGET_DB and len(g) == len(cells)
        lines.append(f"| {key} | {np.mean(g):+.2f} | {min(g):+.2f} | "
                     f"{sum(x >= -CELL_TARGET_DB for x in g)}/{len(g)} | {'met' if ok else 'missed'} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("records", type=Path)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    text = table(cell_values(args.records))
    print(text, end="")
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
