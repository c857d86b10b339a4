"""Statistics over seeds and images: per-seed Table I values, their spread, and which loss
wins each column of Table I with what confidence.

Per column (kernel, noise variance) of the paper's grid, :func:`compare_cells` compares
the two losses with the highest mean PSNR, A (best) and B (second), by a **paired
t-interval over (image, seed) pairs**:

    d(i, s) = PSNR of loss A on image i with seed s at A's seed-s peak iteration
            - PSNR of loss B on image i with seed s at B's seed-s peak iteration.

Only pairs where image i is in the seed-s mean of both A and B enter. With n pairs, mean
d̄ and sample standard deviation s_d, the 95 % interval is d̄ ± t_{0.975, n-1} s_d / √n
(scipy.stats.t); :data:`METHOD` is the report's wording of the test, its verdicts and its
assumption. A pair shares its degraded image and its network initialisation (the runner
derives the noise, network and input seeds from the run seed and the image name, not from
the loss), so the pairing removes that variation. Correlated pairs (one image under
several seeds) make the interval too narrow: read a significant verdict from few images
with care. Nor does the interval account for the peak iterations being chosen with
ground truth on the same data (the paper's protocol).
"""

from __future__ import annotations

import math
from itertools import combinations, product

import numpy as np
import pandas as pd
from scipy import stats as _st

from bpdip.paper import LOSS_LABELS, LOSSES, TABLE1
from bpdip.report.cells import CellResult, has_value
from bpdip.report.sources import seed_key

LEVEL = 0.95
METHOD = ("paired t-interval over (image, seed) pairs, 95 %: d(i, s) = PSNR of the best loss A on image i, "
          "seed s, at A's seed-s peak iteration minus the same for the second-best loss B; "
          "interval mean(d) ± t_{0.975, n-1} · sd(d) / √n (scipy.stats.t), over the pairs present for both "
          "losses; when every seed has every image, mean(d) is the mean over the seeds of the per-seed "
          "Table I difference. Significant when the interval excludes 0, else tied; fewer than 2 pairs: not "
          "enough data. Assumes the pair differences are independent and normal; pairs of one image under "
          "different seeds are correlated when the difference depends on the image, which makes the "
          "interval too narrow.")


def paired_values(c: CellResult) -> pd.DataFrame:
    """One row per (seed, image) in that seed's mean: the image's PSNR at the seed's peak
    iteration (the mean over a seed's images is that seed's Table I PSNR)."""
    rows = []
    for r in c.valued_seeds:
        it = r.peak["iteration"]
        for name in r.used:
            curve = r.images[name].curve
            value = curve.loc[curve["iteration"] == it, "psnr"]
            rows.append({"seed": r.seed, "image": name, "iteration": it, "psnr": float(value.iloc[0])})
    return pd.DataFrame(rows, columns=["seed", "image", "iteration", "psnr"])


def paired_t(d, level: float = LEVEL) -> dict:
    """Mean, standard deviation and the two-sided ``level`` t-interval of the differences
    ``d`` (mean ± t_{(1+level)/2, n-1} · sd / √n), with the paired t-test's p-value."""
    d = np.asarray(d, dtype=float)
    n = int(d.size)
    out = {"n_pairs": n, "mean_diff": float(d.mean()) if n else math.nan, "sd_diff": math.nan,
           "t_crit": math.nan, "ci_low": math.nan, "ci_high": math.nan, "p_value": math.nan}
    if n < 2:
        return out
    sd = float(d.std(ddof=1))
    t_crit = float(_st.t.ppf((1 + level) / 2, n - 1))
    half = t_crit * sd / math.sqrt(n)
    if sd > 0:
        p = float(2 * _st.t.sf(abs(out["mean_diff"]) / (sd / math.sqrt(n)), n - 1))
    else:  # every pair differs by the same amount
        p = 1.0 if out["mean_diff"] == 0 else 0.0
    out.update(sd_diff=sd, t_crit=t_crit, ci_low=out["mean_diff"] - half, ci_high=out["mean_diff"] + half,
               p_value=p)
    return out


def verdict(result: dict) -> str:
    """'significant', 'tied' or 'not enough data' for a :func:`paired_t` result."""
    if result["n_pairs"] < 2 or not math.isfinite(result["ci_low"]):
        return "not enough data"
    return "significant" if result["ci_low"] > 0 or result["ci_high"] < 0 else "tied"


def compare_cells(a: CellResult, b: CellResult) -> dict:
    """Paired comparison of settings ``a`` and ``b`` (see the module docstring): the
    interval of mean d = A - B over the (image, seed) pairs they share."""
    pa, pb = paired_values(a), paired_values(b)
    both = pa.merge(pb, on=["seed", "image"], suffixes=("_a", "_b"))
    result = paired_t(both["psnr_a"] - both["psnr_b"])
    seeds = sorted({r.seed for r in a.seeds.values()} | {r.seed for r in b.seeds.values()}
                   | set(a.expected_seeds) | set(b.expected_seeds), key=seed_key)
    images = list(dict.fromkeys([*a.expected, *b.expected]))
    result.update(n_possible=len(seeds) * len(images), n_images=int(both["image"].nunique()),
                  n_seeds=int(both["seed"].nunique()), verdict=verdict(result))
    return result


def paper_winner(kernel: str, noise_var: float) -> tuple[str | None, float]:
    """The paper's best loss of a column and its margin over the paper's second best."""
    values = sorted(((TABLE1[(loss, kernel, noise_var)][0], loss) for loss in LOSSES
                     if (loss, kernel, noise_var) in TABLE1), reverse=True)
    if not values:
        return None, math.nan
    return values[0][1], (values[0][0] - values[1][0]) if len(values) > 1 else math.nan


COMPARISON_COLUMNS = ["kernel", "noise_var", "best", "second", "best_psnr", "second_psnr", "n_pairs",
                      "n_possible", "n_images", "n_seeds", "mean_diff", "sd_diff", "t_crit", "ci_low", "ci_high",
                      "p_value", "verdict", "winner", "paper_winner", "paper_margin", "agrees", "note"]


def column_comparisons(grid: dict, columns: list[tuple[str, float]]) -> pd.DataFrame:
    """One row per column of Table I: the two best losses by mean PSNR, their paired
    comparison, our winner (or a tie) and the paper's. ``grid``: (loss, kernel, var) -> cell."""
    rows = []
    for kernel, var in columns:
        valued = [c for c in (grid.get((loss, kernel, var)) for loss in LOSSES) if has_value(c)]
        ranked = sorted(valued, key=lambda c: (-c.peak["psnr"], LOSSES.index(c.cell.loss)))
        pw, margin = paper_winner(kernel, var)
        row = {"kernel": kernel, "noise_var": var, "paper_winner": pw, "paper_margin": margin}
        if len(ranked) < 2:
            row.update(verdict="not enough data", note=f"{len(ranked)} loss(es) with values in this column",
                       n_pairs=0)
            rows.append(row)
            continue
        a, b = ranked[:2]
        result = compare_cells(a, b)
        row.update(best=a.cell.loss, second=b.cell.loss, best_psnr=a.peak["psnr"], second_psnr=b.peak["psnr"],
                   **result)
        if result["verdict"] == "significant":
            row["winner"] = a.cell.loss if result["mean_diff"] > 0 else b.cell.loss
            row["agrees"] = "yes" if row["winner"] == pw else "no"
        elif result["verdict"] == "tied":
            row["agrees"] = f"tie: paper's winner is {'' if pw in (a.cell.loss, b.cell.loss) else 'not '}one of the two"
        notes = []
        if result["n_pairs"] < result["n_possible"]:
            notes.append(f"{result['n_pairs']} of {result['n_possible']} (image, seed) pairs")
        if a.flags or b.flags:
            notes.append("flagged: " + ", ".join(f"{LOSS_LABELS.get(c.cell.loss, c.cell.loss)} {c.markers}"
                                                for c in (a, b) if c.flags))
        row["note"] = "; ".join(notes)
        rows.append(row)
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


ORDERING_COLUMNS = ["kernel", "noise_var", "a", "b", "paper_diff", "ours_diff", "n_pairs", "ci_low", "ci_high",
                    "p_value", "verdict", "outcome"]


def paper_orderings(grid: dict, columns: list[tuple[str, float]]) -> pd.DataFrame:
    """Every ordering the paper's Table I states: per column, each pair of losses (A, B)
    with the paper's A above B, tested as :func:`compare_cells` tests the two best.
    ``outcome``: "holds" (our A − B interval lies above 0), "reversed" (below 0), "tied"
    (it contains 0) or "not enough data"."""
    rows = []
    for (kernel, var), (first, second) in product(columns, combinations(LOSSES, 2)):
        pa, pb = TABLE1.get((first, kernel, var)), TABLE1.get((second, kernel, var))
        if pa is None or pb is None or pa[0] == pb[0]:
            continue
        a, b = (first, second) if pa[0] > pb[0] else (second, first)
        ca, cb = grid.get((a, kernel, var)), grid.get((b, kernel, var))
        row = {"kernel": kernel, "noise_var": var, "a": a, "b": b, "paper_diff": abs(pa[0] - pb[0]),
               "verdict": "not enough data", "n_pairs": 0}
        if has_value(ca) and has_value(cb):
            result = compare_cells(ca, cb)
            row.update(result, ours_diff=result["mean_diff"])  # ORDERING_COLUMNS drops the rest
        row["outcome"] = row["verdict"] if row["verdict"] != "significant" else \
            ("holds" if row["ours_diff"] > 0 else "reversed")
        rows.append(row)
    return pd.DataFrame(rows, columns=ORDERING_COLUMNS)
