"""The report's "Baselines" part (issues 19 and 30): scikit-image's Wiener, unsupervised Wiener
and Richardson-Lucy, BM3D deblurring and, for ``boundary=valid`` records, the border-aware
methods, on the same observations as the networks (``bpdip.baselines``), laid out as
Table I: one row per method with its own boundary model (``BOUNDARY_MODELS``), one column
per setting (kernel, noise variance; and the run's boundary model where a report holds
``boundary=valid`` records).

A value is the mean over the setting's images of each image's baseline PSNR / SSIM
(data_range 2, as Table I) on y's frame, from the records' ``baselines`` entries. y does
not depend on the loss, so each (seed, image) is counted once per setting, whichever
loss's record holds it (as the SR table's bicubic row, ``bpdip.report.sr``). Records
without ``baselines`` (older ones, ``baselines=false``) are left out; without ground truth
(``data=observed``) there are no numbers, only the images beside the restored one.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bpdip.baselines import BOUNDARY_MODELS, LABELS
from bpdip.paper import KERNEL_LABELS, KERNELS, NOISE_VARS
from bpdip.report.render import Table

CSV_COLUMNS = ["kernel", "noise_var", "boundary", "method", "boundary_model", "n", "psnr", "ssim_dr2", "ssim", "params"]


def _boundary(c) -> str:
    return str((c.run.get("cell") or {}).get("boundary") or "circular")


def _kernel(c) -> str:
    """The record's own kernel name (the report's Cell folds a valid boundary into it)."""
    return str((c.run.get("cell") or {}).get("kernel") or c.cell.kernel)


def baselines_table(report) -> pd.DataFrame:
    """baselines.csv: per (kernel, noise_var, boundary, method), the mean metrics over the
    unique (seed, image) records with that baseline, and the parameters it used."""
    seen: dict = {}
    for c in report.cells:
        key = (_kernel(c), c.cell.noise_var, _boundary(c))
        for r in c.valued_seeds:
            for name in r.used:
                for b in r.images[name].summary.get("baselines") or []:
                    if isinstance(b, dict) and isinstance(b.get("psnr"), (int, float)):
                        seen.setdefault((*key, b.get("method")), {})[(r.seed, name)] = b
    kern, order = ({x: i for i, x in enumerate(xs)} for xs in (KERNELS, LABELS))
    rows = []
    for key in sorted(seen, key=lambda k: (kern.get(k[0], 9), *k[:3], order.get(k[3], 9), str(k[3]))):
        values = list(seen[key].values())
        params = sorted({";".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                                  for k, v in sorted((b.get("params") or {}).items()) if k != "tuned_with")
                         for b in values})
        rows.append({**dict(zip(CSV_COLUMNS, key)), "boundary_model": BOUNDARY_MODELS.get(key[3]), "n": len(values),
                     **{m: float(np.mean([b[m] for b in values])) if all(isinstance(b.get(m), (int, float))
                                                                         for b in values) else None
                        for m in ("psnr", "ssim_dr2", "ssim")},
                     "params": " | ".join(params)})
    return pd.DataFrame(rows, columns=CSV_COLUMNS)


def baselines_csv(report) -> pd.DataFrame | None:
    """baselines.csv, or None (no file) for records without baselines (older runners)."""
    frame = baselines_table(report)
    return frame if len(frame) else None


def baselines_table_text(report) -> Table | None:
    """The "Baselines" part's table (None without baselines)."""
    frame = baselines_table(report)
    if not len(frame):
        return None
    several = frame["boundary"].nunique() > 1 or (frame["boundary"] != "circular").any()
    cols = list(dict.fromkeys(zip(frame["kernel"], frame["noise_var"], frame["boundary"])))
    value = {(r.kernel, r.noise_var, r.boundary, r.method): f"{r.psnr:.2f} / {r.ssim_dr2:.2f} (n={r.n})"
             for r in frame.itertuples() if r.psnr is not None}
    rows = [[LABELS.get(m, m), BOUNDARY_MODELS.get(m, "?"), *(value.get((*col, m), "–") for col in cols)]
            for m in dict.fromkeys(frame["method"])]
    paper_grid = all(k in KERNELS and v in NOISE_VARS for k, v, _ in cols)
    labels = [f"{KERNEL_LABELS.get(k, k)} σ²={v:g}" + (f" ({b})" if several else "") for k, v, b in cols]
    return Table(["method", "its boundary model", *labels], rows, title="Baselines", caption=(
        "Classical methods on the same y as the networks (`bpdip.baselines`), each channel, clipped, measured on "
        "y's frame: **PSNR [dB] / SSIM** (data_range 2) averaged over the images, n = images. Rows \"tuned with "
        "truth\" / \"best count, truth\" choose their parameter per image with the ground truth (upper bounds); "
        "the others need none (BM3D-DEB and the discrepancy stop are given the run's noise level). Each method's "
        "own boundary model is the second column (docs/references.md \"Boundaries\", \"Classical baselines\"); "
        "the border-aware ones run on `boundary=valid` records only. BM3D needs the optional `bm3d` package "
        "(non-commercial licence)."
        + ("" if paper_grid else " Settings outside the paper's grid included.")))
