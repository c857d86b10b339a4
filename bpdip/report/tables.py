"""The report's tables as pandas DataFrames (long format: one row per cell, seed or image):
what the CSV files hold. Differences are ours minus the paper's (SSIM: our ``ssim_dr2``).
With several seeds the value columns are means over the seeds (docs/reports.md "Files").
"""

from __future__ import annotations

import math

import pandas as pd

from bpdip.paper import LOSS_LABELS
from bpdip.report.cells import CellResult, Issue
from bpdip.report.sources import seed_label

NAN = math.nan


def setting_columns(c: CellResult) -> dict:
    """The columns that name a setting: loss, its label, kernel, noise variance."""
    return {"loss": c.cell.loss, "method": LOSS_LABELS.get(c.cell.loss, c.cell.loss), "kernel": c.cell.kernel,
            "noise_var": c.cell.noise_var}


def _cell_columns(c: CellResult) -> dict:
    return {**setting_columns(c), "status": c.status, "flags": ";".join(c.flags), "markers": c.markers,
            "n_images": len(c.used), "n_expected": len(c.expected),
            "missing_images": ";".join(n for n in c.expected if n not in c.used), "n_seeds": c.n_seeds,
            "n_expected_seeds": len(c.expected_seeds), "seeds": ";".join(seed_label(s.seed) for s in c.valued_seeds)}


def _joined(values) -> str:
    return ";".join(repr(float(v)) if isinstance(v, float) else str(v) for v in values)


def _num(x):
    """A number for a CSV cell: None as NaN."""
    return NAN if x is None else x


def _ints(frame: pd.DataFrame, *columns: str) -> pd.DataFrame:
    """Integer columns that may have gaps, as pandas' Int64 (written without '.0')."""
    for col in columns:
        if col in frame:
            frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("Int64")
    return frame


def _run_columns(c: CellResult) -> dict:
    """How the cell was run; config_hash: the conflicting hashes, else the seeds' (one: the cell's)."""
    return {"iterations": c.run.get("iterations"),
            "config_hash": ";".join(c.conflict or dict.fromkeys(str(r.config_hash) for r in c.seeds.values())),
            "protocol_hash": c.protocol_hash, **{k: c.run.get(k) for k in ("git_commit", "device", "engine")},
            "sources": ";".join(c.sources), "deviations": "; ".join(c.deviations)}


def _diff(ours, paper):
    return ours - paper if ours is not None and paper is not None and math.isfinite(ours) else NAN


def _metric_table(cells: list[CellResult], which: str) -> pd.DataFrame:
    """One row per setting: ``which`` ("peak" or "final") PSNR and SSIMs of the cell
    (means over its seeds), the paper's value beside them and the difference."""
    peak, rows = which == "peak", []
    for c in cells:
        values, (paper_psnr, paper_ssim) = getattr(c, which) or {}, c.paper or (None, None)
        per_seed = [getattr(s, which) for s in c.valued_seeds]
        rows.append({
            **_cell_columns(c), f"{which}_psnr": values.get("psnr", NAN),
            **({"peak_iteration": values.get("iteration")} if peak else {}),
            f"{which}_ssim_dr2": values.get("ssim_dr2", NAN), f"{which}_ssim": values.get("ssim", NAN),
            "paper_psnr": _num(paper_psnr), "paper_ssim": _num(paper_ssim),
            "diff_psnr": _diff(values.get("psnr"), paper_psnr),
            "diff_ssim_dr2": _diff(values.get("ssim_dr2"), paper_ssim),
            **_run_columns(c),
            f"{which}_psnr_std": _num(c.psnr_std if peak else c.final_psnr_std),
            f"{which}_psnr_seeds": _joined(v["psnr"] for v in per_seed),
            **({"peak_iterations": _joined(v["iteration"] for v in per_seed)} if peak else {}),
        })
    return _ints(pd.DataFrame(rows), "peak_iteration", "iterations")


def peak_table(cells: list[CellResult]) -> pd.DataFrame:
    """Table I: peak of the mean PSNR curve, SSIM and iteration there, paper, difference."""
    return _metric_table(cells, "peak")


def final_table(cells: list[CellResult]) -> pd.DataFrame:
    """Mean over the images of the final (unperturbed, last-iteration) image's metrics."""
    return _metric_table(cells, "final")


PER_IMAGE_COLUMNS = ["loss", "method", "kernel", "noise_var", "image", "status", "in_mean", "peak_psnr",
                     "peak_iteration", "peak_ssim_dr2", "peak_ssim", "final_psnr", "final_ssim_dr2", "final_ssim",
                     "iterations", "last_logged_iteration", "runtime_s", "note", "source", "seed"]
PER_IMAGE_SUMMARY = ["peak_psnr", "peak_iteration", "peak_ssim_dr2", "peak_ssim", "final_psnr", "final_ssim_dr2",
                     "final_ssim", "iterations", "runtime_s"]  # the columns read from summary.json


def per_image_table(cells: list[CellResult]) -> pd.DataFrame:
    """One row per (setting, seed, image): the per-image peak (own best iteration) and
    final values from summary.json, plus images expected but absent (status ``absent``)."""
    rows = []
    for c in cells:
        if c.conflict is not None or not c.seeds:
            continue  # a conflict or a missing setting is listed as such instead
        for r in c.seeds.values():
            for name in c.expected:
                img = r.images.get(name)  # the summary's values; an absent image has none (NaN)
                record = {"status": "absent", "note": "no record", "source": ""} if img is None else {
                    "status": img.status, "last_logged_iteration": img.last_iteration, "note": img.reason or "",
                    "source": img.source, **{k: _num(img.summary.get(k)) for k in PER_IMAGE_SUMMARY}}
                rows.append({**setting_columns(c), "image": name, "in_mean": name in r.used, **record,
                             "seed": seed_label(r.seed)})
    return _ints(pd.DataFrame(rows, columns=PER_IMAGE_COLUMNS), "peak_iteration", "iterations",
                 "last_logged_iteration")


IMAGE_SPREAD_COLUMNS = ["loss", "method", "kernel", "noise_var", "image", "n_seeds", "n_seeds_in_mean", "statuses",
                        "peak_psnr_mean", "peak_psnr_std", "peak_psnr_min", "peak_psnr_max", "peak_iterations",
                        "peak_ssim_dr2_mean", "peak_ssim_mean", "final_psnr_mean", "final_psnr_std",
                        "final_ssim_dr2_mean", "final_ssim_mean", "iterations", "notes"]
SPREAD_VALUES = ["peak_psnr", "peak_ssim_dr2", "peak_ssim", "final_psnr", "final_ssim_dr2", "final_ssim"]


def image_spread_table(per_image: pd.DataFrame) -> pd.DataFrame:
    """One row per (setting, image) from :func:`per_image_table`: the mean over the seeds
    in which the image is complete of its own peak and final values, and the seed-to-seed
    spread (sample standard deviation, ddof = 1; empty with fewer than 2 such seeds)."""
    rows = []
    keys = ["loss", "method", "kernel", "noise_var", "image"]
    for key, g in per_image.groupby(keys, sort=False, dropna=False):
        done = g[g["in_mean"].astype(bool)]
        statuses = g["status"].value_counts()
        values = done[SPREAD_VALUES].apply(pd.to_numeric, errors="coerce")  # NaN: no value, skipped
        mean, sd = values.mean(), values.std()  # sd: ddof 1, NaN with < 2 values
        its = pd.to_numeric(g["iterations"], errors="coerce").dropna().unique()
        rows.append({
            **dict(zip(keys, key)), "n_seeds": len(g), "n_seeds_in_mean": len(done),
            "statuses": ";".join(f"{s}" if n == len(g) else f"{s}:{n}" for s, n in statuses.items()),
            **{f"{col}_mean": mean[col] for col in SPREAD_VALUES}, "peak_psnr_std": sd["peak_psnr"],
            "final_psnr_std": sd["final_psnr"], "peak_psnr_min": values["peak_psnr"].min(),
            "peak_psnr_max": values["peak_psnr"].max(),
            "peak_iterations": ";".join(str(v) for v in done["peak_iteration"] if not pd.isna(v)),
            "iterations": ";".join(str(int(v)) for v in sorted(its)),
            "notes": "; ".join(dict.fromkeys(
                (f"seed {r.seed}: " if len(g) > 1 else "") + r.note for r in g.itertuples() if r.note)),
        })
    return pd.DataFrame(rows, columns=IMAGE_SPREAD_COLUMNS)


SEED_COLUMNS = ["loss", "method", "kernel", "noise_var", "seed", "n_images", "n_expected", "missing_images",
                "peak_psnr", "peak_iteration", "peak_at_end", "peak_ssim_dr2", "peak_ssim", "final_psnr",
                "final_ssim_dr2", "final_ssim", "flags", "config_hash", "sources"]


def seed_table(cells: list[CellResult]) -> pd.DataFrame:
    """One row per (setting, seed): that seed's Table I value (the peak of its mean curve)."""
    rows = []
    for c in cells:
        if c.conflict is not None:
            continue
        for r in c.seeds.values():
            peak, final = r.peak or {}, r.final or {}
            rows.append({
                **setting_columns(c), "seed": seed_label(r.seed), "n_images": len(r.used),
                "n_expected": len(c.expected), "missing_images": ";".join(n for n in c.expected if n not in r.used),
                "peak_iteration": peak.get("iteration"), "peak_at_end": r.peak_at_end,
                **{f"peak_{k}": peak.get(k, NAN) for k in ("psnr", "ssim_dr2", "ssim")},
                **{f"final_{k}": final.get(k, NAN) for k in ("psnr", "ssim_dr2", "ssim")},
                "flags": ";".join(f for f in c.flags if f in r.flags), "config_hash": r.config_hash,
                "sources": ";".join(r.sources),
            })
    return _ints(pd.DataFrame(rows, columns=SEED_COLUMNS), "peak_iteration")


def issues_table(issues: list[Issue]) -> pd.DataFrame:
    rows = [{
        "kind": i.kind,
        "loss": i.cell.loss if i.cell else "", "kernel": i.cell.kernel if i.cell else "",
        "noise_var": i.cell.noise_var if i.cell else NAN,
        "image": i.image or "", "detail": i.detail, "source": i.source or "",
        "seed": seed_label(i.seed) if i.seed is not None else "",
    } for i in issues]
    return pd.DataFrame(rows, columns=["kind", "loss", "kernel", "noise_var", "image", "detail", "source", "seed"])
