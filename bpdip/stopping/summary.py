"""Per-cell statistics of the stopping rules, from the images' records (summary.json).

For rule R and the complete images i = 1..n of one cell (and seed), with PSNR_R(i) the PSNR
of the image R chose and PSNR_oracle(i) the image's own logged peak (``oracle``):

    mean_psnr  = (1/n) sum_i PSNR_R(i)
    gap_db     = (1/n) sum_i (PSNR_R(i) - PSNR_oracle(i))      (<= 0 up to logging: the
                 oracle only sees the logged iterations, a rule sees every iteration)
    within_05  = share of images with PSNR_R(i) >= PSNR_oracle(i) - 0.5 dB
    iteration  = mean chosen iteration;  stopped = share of images where R stopped;
    ran        = mean iterations R would run with stop.early (its stop iteration + 1,
                 or the full run when it never stopped)

The same numbers go to the report's "stopping" table and to W&B.
"""

from __future__ import annotations

import math

import numpy as np

from bpdip.stopping import RULES

TOLERANCE_DB = 0.5


def _num(value) -> float:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else math.nan


def rule_statistics(entries: list[dict], iterations: int | None = None) -> dict[str, dict]:
    """``entries``: summary.json image entries (complete ones are used). Returns rule ->
    {n, mean_psnr, gap_db, within_05, iteration, stopped, ran} (NaN where undefined)."""
    done = [e for e in entries if e.get("status") == "complete" and isinstance(e.get("stopping"), dict)]
    out = {}
    for rule in RULES:
        chosen = [e["stopping"][rule] for e in done if isinstance(e["stopping"].get(rule), dict)]
        if not chosen:
            continue
        psnr = np.array([_num(c.get("psnr")) for c in chosen])
        oracle = np.array([_num((e["stopping"].get("oracle") or {}).get("psnr")) for e in done
                           if isinstance(e["stopping"].get(rule), dict)])
        gap = psnr - oracle
        ok = np.isfinite(gap)
        full = [_num(e.get("iterations")) for e in done if isinstance(e["stopping"].get(rule), dict)]
        ran = [(_num(c.get("stop_iteration")) + 1) if c.get("stopped") else (iterations or f)
               for c, f in zip(chosen, full)]
        out[rule] = {
            "n": len(chosen),
            "mean_psnr": float(np.mean(psnr)) if np.isfinite(psnr).all() else math.nan,
            "gap_db": float(np.mean(gap)) if ok.all() else math.nan,
            "within_05": float(np.mean(gap[ok] >= -TOLERANCE_DB)) if ok.all() else math.nan,
            "iteration": float(np.mean([_num(c.get("iteration")) for c in chosen])),
            "stopped": float(np.mean([bool(c.get("stopped")) for c in chosen])),
            "ran": float(np.mean(ran)),
        }
    return out
