"""The report's tables as pandas DataFrames (long format: one row per cell or image).

These frames are what the CSV files hold; the Markdown and LaTeX writers lay them out
as the paper's grid. Differences are ours minus the paper's; the paper's SSIM is the
data_range = 2 variant (bpdip.paper), so the SSIM difference uses our ``ssim_dr2``.
"""

from __future__ import annotations

import math

import pandas as pd

from bpdip.paper import LOSS_LABELS
from bpdip.report.cells import CellResult, Issue

NAN = math.nan


def _cell_columns(c: CellResult) -> dict:
    return {
        "loss": c.cell.loss,
        "method": LOSS_LABELS.get(c.cell.loss, c.cell.loss),
        "kernel": c.cell.kernel,
        "noise_var": c.cell.noise_var,
        "status": c.status,
        "flags": ";".join(c.flags),
        "markers": c.markers,
        "n_images": len(c.used),
        "n_expected": len(c.expected),
        "missing_images": ";".join(n for n in c.expected if n not in c.used),
    }


def _run_columns(c: CellResult) -> dict:
    return {
        "iterations": c.run.get("iterations"),
        "config_hash": c.config_hash if c.conflict is None else ";".join(c.conflict),
        "git_commit": c.run.get("git_commit"),
        "device": c.run.get("device"),
        "engine": c.run.get("engine"),
        "sources": ";".join(c.sources),
        "deviations": "; ".join(c.deviations),
    }


def _diff(ours, paper):
    return ours - paper if ours is not None and paper is not None and math.isfinite(ours) else NAN


def _metric_table(cells: list[CellResult], which: str) -> pd.DataFrame:
    """One row per setting: ``which`` ("peak" or "final") PSNR and SSIMs of the cell,
    the paper's value beside them and the difference."""
    rows = []
    for c in cells:
        values = getattr(c, which) or {}
        paper = c.paper or (None, None)
        row = {**_cell_columns(c), f"{which}_psnr": values.get("psnr", NAN)}
        if which == "peak":
            row["peak_iteration"] = values.get("iteration")
        rows.append({
            **row,
            f"{which}_ssim_dr2": values.get("ssim_dr2", NAN),
            f"{which}_ssim": values.get("ssim", NAN),
            "paper_psnr": paper[0] if paper[0] is not None else NAN,
            "paper_ssim": paper[1] if paper[1] is not None else NAN,
            "diff_psnr": _diff(values.get("psnr"), paper[0]),
            "diff_ssim_dr2": _diff(values.get("ssim_dr2"), paper[1]),
            **_run_columns(c),
        })
    frame = pd.DataFrame(rows)
    for col in ("peak_iteration", "iterations"):
        if col in frame:
            frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("Int64")
    return frame


def peak_table(cells: list[CellResult]) -> pd.DataFrame:
    """Table I: peak of the mean PSNR curve, SSIM and iteration there, paper, difference."""
    return _metric_table(cells, "peak")


def final_table(cells: list[CellResult]) -> pd.DataFrame:
    """Mean over the images of the final (unperturbed, last-iteration) image's metrics."""
    return _metric_table(cells, "final")


PER_IMAGE_COLUMNS = ["loss", "method", "kernel", "noise_var", "image", "status", "in_mean", "peak_psnr",
                     "peak_iteration", "peak_ssim_dr2", "peak_ssim", "final_psnr", "final_ssim_dr2", "final_ssim",
                     "iterations", "last_logged_iteration", "runtime_s", "note", "source"]


def per_image_table(cells: list[CellResult]) -> pd.DataFrame:
    """One row per (setting, image): the per-image peak (own best iteration) and final
    values from summary.json, plus images expected but absent (status ``absent``)."""
    rows = []
    for c in cells:
        if c.conflict is not None or not c.images:
            continue  # a conflict or a missing setting is listed as such instead
        for name in c.expected:
            img = c.images.get(name)
            s = img.summary if img is not None else {}
            rows.append({
                "loss": c.cell.loss, "method": LOSS_LABELS.get(c.cell.loss, c.cell.loss),
                "kernel": c.cell.kernel, "noise_var": c.cell.noise_var, "image": name,
                "status": img.status if img is not None else "absent",
                "in_mean": name in c.used,
                **{k: (s.get(k) if s.get(k) is not None else NAN) for k in
                   ("peak_psnr", "peak_iteration", "peak_ssim_dr2", "peak_ssim", "final_psnr",
                    "final_ssim_dr2", "final_ssim", "iterations")},
                "last_logged_iteration": img.last_iteration if img is not None else None,
                "runtime_s": s.get("runtime_s") if s.get("runtime_s") is not None else NAN,
                "note": (img.reason or "") if img is not None else "no record",
                "source": img.source if img is not None else "",
            })
    frame = pd.DataFrame(rows, columns=PER_IMAGE_COLUMNS)
    for col in ("peak_iteration", "iterations", "last_logged_iteration"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("Int64")
    return frame


def issues_table(issues: list[Issue]) -> pd.DataFrame:
    rows = [{
        "kind": i.kind,
        "loss": i.cell.loss if i.cell else "", "kernel": i.cell.kernel if i.cell else "",
        "noise_var": i.cell.noise_var if i.cell else NAN,
        "image": i.image or "", "detail": i.detail, "source": i.source or "",
    } for i in issues]
    return pd.DataFrame(rows, columns=["kind", "loss", "kernel", "noise_var", "image", "detail", "source"])
