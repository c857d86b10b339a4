"""Table I with the other output streams (issue 20; SPEC "output streams"): the averaged
and the clean output, in Table I's layout and with Table I's rule (bpdip.curves) on the
stream's curve columns (``<stream>_psnr`` ...), over Table I's images and seeds. The
**gain** over the paper's protocol is, per seed, the stream's peak PSNR minus Table I's,
averaged over the seeds with both. Records without a stream give no value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bpdip.paper import KERNEL_LABELS, LOSS_LABELS, LOSSES
from bpdip.curves import PREFIX, OverSeeds, mean_curve, over_seeds, peak_of
from bpdip.report.cells import CellResult, SeedResult
from bpdip.report.render import BREAK, Grid, Num, Value, bold_if, column_best, empty_text, has_value
from bpdip.report.sources import seed_label
from bpdip.report.tables import _joined, _num, setting_columns

OTHER_STREAMS = ("average", "clean")  # in the order the report shows them
TITLES = {"perturbed": "perturbed output (the paper's)", "clean": "clean output", "average": "averaged output"}
METRICS = ("psnr", "ssim", "ssim_dr2")
GAIN_TARGET_DB = 0.5  # issue 20: the average beats the perturbed output by >= 0.5 dB on the mean over the cells


def seed_curve(r: SeedResult, stream: str) -> pd.DataFrame:
    """The seed's mean curve of ``stream`` over its images (columns iteration, psnr, ssim,
    ssim_dr2); NaN throughout where an image's record lacks the stream."""
    cols = [PREFIX[stream] + m for m in METRICS]
    curves = [r.images[n].curve.reindex(columns=["iteration", *cols]) for n in r.used]
    curve, _ = mean_curve(curves, cols)
    return curve.set_axis(["iteration", *METRICS], axis=1)


@dataclass
class StreamValue(OverSeeds):
    """One setting's value on one stream: :class:`bpdip.curves.OverSeeds` of the seeds with
    one (``peak`` None without; ``curve`` for Fig. 1), ``seeds`` their labels and ``gains``
    per seed its peak PSNR minus its Table I peak PSNR."""

    seeds: list = field(default_factory=list)
    gains: list = field(default_factory=list)

    @property
    def gain(self) -> float | None:
        return float(np.mean(self.gains)) if self.gains else None


def stream_value(c: CellResult, stream: str) -> StreamValue:
    """Table I's value of setting ``c`` on ``stream`` (module docstring), kept in the cell
    (``c.stream_values``): the stream tables, their summaries and Fig. 1 all read it."""
    if stream not in c.stream_values:
        c.stream_values[stream] = _stream_value(c, stream)
    return c.stream_values[stream]


def _stream_value(c: CellResult, stream: str) -> StreamValue:
    seeds, peaks, curves = [], [], []
    for r in c.valued_seeds if has_value(c) else []:
        curve = seed_curve(r, stream)
        peak = peak_of(curve) if r.used else None
        if peak is not None:
            seeds.append(r)
            peaks.append(peak)
            curves.append(curve)
    return StreamValue(**vars(over_seeds(peaks, curves)), seeds=[r.seed for r in seeds],
                       gains=[p["psnr"] - r.peak["psnr"] for r, p in zip(seeds, peaks)])


def streams_in(cells: list[CellResult]) -> list[str]:
    """The streams other than the perturbed one that some setting has a value of."""
    return [s for s in OTHER_STREAMS if any(stream_value(c, s).peak is not None for c in cells)]


TABLE_COLUMNS = ["loss", "method", "kernel", "noise_var", "stream", "status", "flags", "markers", "n_images",
                 "n_seeds", "seeds", "peak_psnr", "peak_psnr_std", "peak_psnr_seeds", "peak_iterations",
                 "peak_ssim_dr2", "peak_ssim", "perturbed_psnr", "gain_psnr", "gain_psnr_seeds", "paper_psnr"]


def streams_table(report) -> pd.DataFrame | None:
    """table1_streams.csv: one row per (setting, stream), the perturbed stream first (its
    values are Table I's); None (no file) when the records hold no other stream."""
    others = streams_in(report.cells)
    if not others:
        return None
    rows = []
    for c in report.cells:
        for stream in ("perturbed", *others):
            v = stream_value(c, stream)
            rows.append({
                **setting_columns(c), "stream": stream, "status": c.status, "flags": ";".join(c.flags),
                "markers": c.markers, "n_images": len(c.used), "n_seeds": v.n,
                "seeds": ";".join(seed_label(s) for s in v.seeds),
                **{f"peak_{k}": (v.peak or {}).get(k, math.nan) for k in ("psnr", "ssim_dr2", "ssim")},
                "peak_psnr_std": _num(v.std), "peak_psnr_seeds": _joined(p["psnr"] for p in v.peaks),
                "peak_iterations": _joined(v.iterations),
                "perturbed_psnr": c.peak["psnr"] if has_value(c) else math.nan,
                "gain_psnr": _num(v.gain), "gain_psnr_seeds": _joined(v.gains),
                "paper_psnr": c.paper[0] if c.paper else math.nan})
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def grid_values(report, stream: str) -> dict:
    """(loss, kernel, var) -> (cell, StreamValue) over the paper's grid."""
    return {key: (c, stream_value(c, stream)) for key, c in report.grid.items()}


def gain_summary(report, stream: str) -> dict:
    """The gains of ``stream`` over the grid: their mean (issue 20's target (a) for the
    average), how many cells, how many reach GAIN_TARGET_DB, the extremes, by loss (text)."""
    gains = {key: v.gain for key, (_, v) in grid_values(report, stream).items() if v.gain is not None}
    if not gains:
        return {"n": 0, "mean": math.nan}
    worst, best = min(gains, key=gains.get), max(gains, key=gains.get)
    by_loss = ", ".join(f"{LOSS_LABELS[loss]} {np.mean([g for k, g in gains.items() if k[0] == loss]):+.2f}"
                        for loss in LOSSES if any(k[0] == loss for k in gains))
    return {"n": len(gains), "mean": float(np.mean(list(gains.values()))),
            "reached": sum(g >= GAIN_TARGET_DB for g in gains.values()), "min": (worst, gains[worst]),
            "max": (best, gains[best]), "by_loss": by_loss}


# ----------------------------------------------------------------------------- the tables

def stream_cells(stream: str):
    """``cells(report)`` of a stream's grid (render.Grid): the value, on a second line in
    LaTeX the gain over Table I (nine columns still fit the page) and the seeds it has."""
    def cells(report):
        values = grid_values(report, stream)
        best = column_best({key: v.peak["psnr"] for key, (_, v) in values.items() if v.peak is not None})

        def text(loss, kernel, var):
            c, v = values.get((loss, kernel, var), (None, None))
            if c is None:
                return Value(("–",))
            if v.peak is None:  # say why, as Table I does; with a Table I value: the records lack the stream
                return Value((empty_text(c) if not has_value(c) else "no record of the stream",), c.markers)
            spread = f" ± {v.std:.2f}" if v.std is not None else ""
            value = f"{v.peak['psnr']:.2f}{spread} / {v.peak['ssim_dr2']:.3f}"
            seeds = f" [{v.n} of {c.n_seeds} seeds]" if v.n < c.n_seeds else ""
            value = bold_if(value, v.peak["psnr"] == best.get((kernel, var)))
            return Value((value, BREAK, "(", Num(v.gain, 2, True), f"){seeds}"), c.markers)
        return text
    return cells


def setting_label(key) -> str:
    """(loss, kernel, var) as the stopping table writes a setting: 'BP / Uniform / σ²=4'."""
    loss, kernel, var = key
    return f"{LOSS_LABELS.get(loss, loss)} / {KERNEL_LABELS.get(kernel, kernel)} / σ²={var:g}"


def setting_count(n: int) -> str:
    """``n`` in words: '1 setting', '3 settings'."""
    return f"{n} setting{'s' * (n != 1)}"


def _summary_line(stream: str, s: dict) -> str:
    if not s["n"]:
        return ""
    return (f"Gain of the {TITLES[stream]} over Table I, mean over {setting_count(s['n'])}: **{s['mean']:+.2f} dB** "
            f"({s['reached']} of {s['n']} at least {GAIN_TARGET_DB:+.1f} dB; lowest {s['min'][1]:+.2f} at "
            f"{setting_label(s['min'][0])}, highest {s['max'][1]:+.2f} at {setting_label(s['max'][0])}); by loss: "
            f"{s['by_loss']}.")


WHAT = {"average": lambda report: "the exponential average of the perturbed outputs (x̄ ← w·x̄ + (1 − w)·out every "
                                  f"step, w = `output.ema`{ema_text(report)})",
        "clean": lambda report: "the network's output without the input perturbation, f(z), at the logged iterations"}


def ema_text(report) -> str:
    """The records' EMA weights (summary ``run.output.ema``), or ''."""
    values = sorted({str(j.run["output"]["ema"]) for j in report.jobs
                     if isinstance(j.run.get("output"), dict) and j.run["output"].get("ema") is not None})
    return f" = {', '.join(values)}" if values else ""


def stream_grid(stream: str) -> Grid:
    """The section "Table I with the <stream>" (empty without the stream)."""
    return Grid(
        f"Table I with the {TITLES[stream]}",
        lambda report: f"Table I's layout and rule (the peak of the image-averaged PSNR curve, mean ± s.d. over the "
        f"seeds) on {WHAT[stream](report)}; in brackets the gain over Table I (the paper's perturbed output "
        "f(z + 0.03·n)), per seed its peak minus Table I's peak, mean over the seeds. **Bold**: the highest PSNR of "
        "the column; markers as in Table I. Table I itself stays the paper's protocol. All streams: "
        "`table1_streams.csv`.",
        stream_cells(stream), f"tab:table1-{stream}",
        comment=f"% Table I with the {TITLES[stream]}; needs \\usepackage{{booktabs}}; generated by bpdip.report",
        after=lambda report: _summary_line(stream, gain_summary(report, stream)),
        when=lambda report: stream in streams_in(report.cells))


AVERAGE_GRID, CLEAN_GRID = stream_grid("average"), stream_grid("clean")
