"""The paper's numbers from PSNR curves, defined once: the mean at common iterations, the
peak, and the mean ± s.d. over seeds.

PROTOCOL "Optimisation and measurement": average each setting's PSNR curve over the images
at equal iterations; a Table I cell is the PEAK of that average curve (the best common
iteration, chosen with ground truth). A single image's peak (``summary.json``'s
``peak_psnr``, :attr:`bpdip.loop.Result.peak`) is the same rule on its own curve. Seeds:
each seed's peak is that seed's value; the setting's is their mean with the sample standard
deviation (ddof 1; unknown with one seed).

Curves are lists of records (dicts, as the loop logs them) or DataFrames (as the report
reads metrics.csv); :func:`best` is the one peak rule both go through.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Mapping

import numpy as np
import pandas as pd


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def best(records: Iterable[Mapping], key: str = "psnr") -> Mapping | None:
    """The peak rule: the record with the highest finite ``key``, the earliest of equal
    maxima (records in iteration order); None when no record has a finite value."""
    top = None
    for r in records:
        v = r.get(key)
        if _finite(v) and (top is None or v > top[key]):
            top = r
    return top


def peak_of(curve: pd.DataFrame, by: str = "psnr", also=("ssim_dr2", "ssim")) -> dict | None:
    """The peak of a (mean) curve frame by ``by`` (PSNR; SR's Y-PSNR), with the ``also``
    columns there: ``{by, "iteration", *also}``, or None."""
    row = best(curve.to_dict("records"), by)
    if row is None:
        return None
    return {by: float(row[by]), "iteration": int(row["iteration"]), **{k: float(row[k]) for k in also}}


def mean_curve(curves: list[pd.DataFrame], cols=("psnr", "ssim", "ssim_dr2")) -> tuple[pd.DataFrame, bool]:
    """Mean of per-image curves (their ``cols``) at the iterations every curve has. Returns
    (curve, truncated): truncated says that some curve had iterations the others lack. An
    iteration where one curve has no value (NaN) has no mean."""
    cols = list(cols)
    if not curves:
        return pd.DataFrame(columns=["iteration", *cols]), False
    common = set(curves[0]["iteration"])
    union = set(common)
    for c in curves[1:]:
        common &= set(c["iteration"])
        union |= set(c["iteration"])
    iterations = sorted(common)
    stack = np.stack([c.set_index("iteration").loc[iterations, cols].to_numpy(float) for c in curves])
    mean = pd.DataFrame(stack.mean(axis=0), columns=cols)
    mean.insert(0, "iteration", np.asarray(iterations, dtype="int64"))
    return mean, len(common) < len(union)


def mean_records(rows: list[dict], images: list[str], keys) -> list[dict]:
    """:func:`mean_curve` of metrics rows (dicts with ``image``, ``iteration``) over
    ``images``: one record per common iteration with the mean of every key (NaN where an
    image lacks it)."""
    if not images:
        return []
    curves = []
    for name in images:
        mine = [r for r in rows if r["image"] == name]
        frame = pd.DataFrame({"iteration": [int(r["iteration"]) for r in mine],
                              **{k: [float(r[k]) if _finite(r.get(k)) else math.nan for r in mine] for k in keys}})
        curves.append(frame.drop_duplicates("iteration", keep="last"))
    curve, _ = mean_curve(curves, keys)
    return [{"iteration": int(r["iteration"]), **{k: float(r[k]) for k in keys}} for r in curve.to_dict("records")]


def at_end(peak: dict | None, curve: pd.DataFrame) -> bool:
    """The peak is the curve's last iteration (of several): the curve may still be rising."""
    return bool(peak and len(curve) > 1 and peak["iteration"] == int(curve["iteration"].iloc[-1]))


def std(values) -> float | None:
    """Sample standard deviation (ddof 1) over seeds; None with fewer than two."""
    values = list(values)
    return float(np.std(values, ddof=1)) if len(values) > 1 else None


@dataclass
class OverSeeds:
    """A setting's value from its seeds' peaks: ``peak`` holds the means of every key but the
    iteration (each seed has its own: ``peaks``), ``std`` the s.d. of the ``by`` values and
    ``curve`` the mean of the seeds' curves (one seed: its own)."""

    peaks: list = field(default_factory=list)
    curves: list = field(default_factory=list)
    peak: dict | None = None
    std: float | None = None
    curve: pd.DataFrame | None = None

    @property
    def n(self) -> int:
        return len(self.peaks)

    @property
    def iterations(self) -> list[int]:
        return [p["iteration"] for p in self.peaks]

    @property
    def at_end(self) -> list[bool]:
        """Per seed: its peak is its curve's last iteration (:func:`at_end`)."""
        return [at_end(p, c) for p, c in zip(self.peaks, self.curves)]


def over_seeds(peaks: list[dict], curves: list[pd.DataFrame], by: str = "psnr",
               keys=("psnr", "ssim_dr2", "ssim")) -> OverSeeds:
    """The mean ± s.d. of the seeds' peaks (each seed's peak of its mean curve)."""
    out = OverSeeds(list(peaks), list(curves))
    if not peaks:
        return out
    out.peak = {k: float(np.mean([p[k] for p in peaks])) for k in keys}
    out.std = std(p[by] for p in peaks)
    cols = [c for c in curves[0].columns if c != "iteration"]
    out.curve = curves[0] if len(curves) == 1 else mean_curve(curves, cols)[0]
    return out


def over_seed_curves(seeds: Iterable[list[pd.DataFrame]], by: str = "psnr",
                     cols=("psnr", "ssim_dr2", "ssim")) -> OverSeeds:
    """Per seed the :func:`mean_curve` of its images' curves (``cols``) and its peak by ``by``;
    then :func:`over_seeds` of the seeds with a peak."""
    peaks, curves = [], []
    for images in seeds:
        curve = mean_curve(images, cols)[0]
        p = peak_of(curve, by, [c for c in cols if c != by])
        if p is not None:
            peaks.append(p)
            curves.append(curve)
    return over_seeds(peaks, curves, by, cols)


# ----------------------------------------------------------------------------- output streams

STREAMS = ("perturbed", "clean", "average")  # SPEC "output streams" (bpdip.streams computes them)
PREFIX = {"perturbed": "", "clean": "clean_", "average": "average_"}  # metrics.csv column prefix
METRIC_KEYS = ("psnr", "ssim", "ssim_dr2")


def stream_values(record: Mapping, stream: str) -> dict:
    """A stream's quality numbers from a curve record (``psnr`` ... for ``clean_psnr`` ...)."""
    p = PREFIX[stream]
    keys = (*METRIC_KEYS, *(("psnr_y",) if f"{p}psnr_y" in record else ()))
    return {k: record.get(f"{p}{k}") for k in keys}


def stream_peak(curve: list[dict], stream: str) -> dict | None:
    """The logged record with the stream's highest PSNR (:func:`best`)."""
    return best(curve, f"{PREFIX[stream]}psnr")


# ----------------------------------------------------------------------------- stopping rules

def _num_or_nan(value) -> float:
    return float(value) if _finite(value) else math.nan


# Per-cell statistics of the stopping rules, from the images' records (summary.json).
#
# For rule R and the complete images i = 1..n of one cell (and seed), with PSNR_R(i) the PSNR
# of the image R chose and PSNR_oracle(i) the image's own logged peak (``oracle``):
#
#     mean_psnr  = (1/n) sum_i PSNR_R(i)
#     gap_db     = (1/n) sum_i (PSNR_R(i) - PSNR_oracle(i))      (<= 0 up to logging: the
#                  oracle only sees the logged iterations, a rule sees every iteration)
#     within_05  = share of images with PSNR_R(i) >= PSNR_oracle(i) - 0.5 dB
#     iteration  = mean chosen iteration;  stopped = share of images where R stopped;
#     ran        = mean iterations R would run with stop.early (its stop iteration + 1,
#                  or the full run when it never stopped)
#
# The same numbers go to the report's "stopping" table and to W&B.
TOLERANCE_DB = 0.5


def rule_statistics(entries: list[dict], iterations: int | None = None) -> dict[str, dict]:
    """``entries``: summary.json image entries (complete ones are used). Returns rule ->
    {n, mean_psnr, gap_db, within_05, iteration, stopped, ran} (NaN where undefined)."""
    done = [e for e in entries if e.get("status") == "complete" and isinstance(e.get("stopping"), dict)]
    # the rules in the records' order (bpdip.stopping.RULES: records and reports keep it)
    rules = list(dict.fromkeys(r for e in done for r in e["stopping"]))
    out = {}
    for rule in rules:
        chosen = [e["stopping"][rule] for e in done if isinstance(e["stopping"].get(rule), dict)]
        if not chosen:
            continue
        psnr = np.array([_num_or_nan(c.get("psnr")) for c in chosen])
        oracle = np.array([_num_or_nan((e["stopping"].get("oracle") or {}).get("psnr")) for e in done
                           if isinstance(e["stopping"].get(rule), dict)])
        gap = psnr - oracle
        ok = np.isfinite(gap)
        full = [_num_or_nan(e.get("iterations")) for e in done if isinstance(e["stopping"].get(rule), dict)]
        ran = [(_num_or_nan(c.get("stop_iteration")) + 1) if c.get("stopped") else (iterations or f)
               for c, f in zip(chosen, full)]
        out[rule] = {
            "n": len(chosen),
            "mean_psnr": float(np.mean(psnr)) if np.isfinite(psnr).all() else math.nan,
            "gap_db": float(np.mean(gap)) if ok.all() else math.nan,
            "within_05": float(np.mean(gap[ok] >= -TOLERANCE_DB)) if ok.all() else math.nan,
            "iteration": float(np.mean([_num_or_nan(c.get("iteration")) for c in chosen])),
            "stopped": float(np.mean([bool(c.get("stopped")) for c in chosen])),
            "ran": float(np.mean(ran)),
        }
    return out
