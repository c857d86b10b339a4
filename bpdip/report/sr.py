"""The super-resolution part of a report (issue 14; docs/super-resolution.md "The report"):
an SR table like Table I, its CSVs and a Y-PSNR figure, from records whose ``run.cell.task``
is ``sr-x<s>[-pil]``, built apart from the deblurring cells (never averaged together).

A method's value is Table I's rule on the Y-PSNR curve (``bpdip.metrics.psnr_y``):
:func:`bpdip.curves.over_seed_curves`. The bicubic row is the mean over the column's
images of each image's ``baseline``; DIP's Set14 number sits in the LS row
(``bpdip.paper.SR_SET14``; docs/references.md "Deep Image Prior super-resolution").
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from bpdip import paper
from bpdip.curves import OverSeeds, over_seed_curves, peak_of
from bpdip.report.cells import CellResult, Issue, build_cells
from bpdip.report.protocol import _get, departure, network_deviation
from bpdip.report.render import Alt, Table, Value, commit_text, fmt, label, tex_escape
from bpdip.report.sources import Cell, Job, seed_label
from bpdip.report.tables import _ints

TASK_RE = re.compile(r"^sr-x(\d+)(-pil)?$")
Y_COLUMNS = ["psnr_y", "psnr", "ssim", "ssim_dr2"]


@dataclass(frozen=True, order=True)
class Column:
    """One column of the SR table, the CSVs' first columns: a factor, its LR source, kernel and noise."""

    factor: int
    lr_source: str  # operator | pil
    kernel: str
    noise_var: float

    @classmethod
    def of(cls, cell: Cell) -> "Column":
        m = TASK_RE.match(cell.task)
        factor, source = (int(m.group(1)), "pil" if m.group(2) else "operator") if m else (0, cell.task)
        return cls(factor, source, cell.kernel, cell.noise_var)

    def label(self, short: bool = False) -> str:
        if short:
            return f"×{self.factor}"
        lr = "PIL Lanczos LR" if self.lr_source == "pil" else "y = S H x"
        return f"×{self.factor} ({lr}, {self.kernel}, σ²={self.noise_var:g})"


# ------------------------------------------------------------------------ building

def split_jobs(jobs: list[Job]) -> tuple[list[Job], list[Job]]:
    """(deblurring jobs, SR jobs). Unreadable jobs go with deblurring, unless the readable
    records are all SR (then the report is an SR report and they are listed there)."""
    sr = [j for j in jobs if j.cell is not None and j.cell.is_sr]
    deblur = [j for j in jobs if j.cell is not None and not j.cell.is_sr]
    bad = [j for j in jobs if j.cell is None]
    if sr and not deblur:
        return [], sr + bad
    return deblur + bad, sr


def build_sr_cells(jobs: list[Job], images: list[str] | None = None) -> tuple[list[CellResult], list[Issue]]:
    """The SR settings found in ``jobs``, ordered by column then row, and their issues."""
    order = {loss: i for i, loss in enumerate(paper.SR_ROWS)}
    cells, issues = build_cells(jobs, images, grid=False, describe=dip_deviations,
                                key=lambda c: (Column.of(c), order.get(c.loss, len(order)), c.loss))
    for c in cells:
        if c.conflict:  # build_cell describes no conflict; DIP's departures are listed all the same
            c.deviations = dip_deviations(None, c.cell, len(c.expected))
    return cells, issues


def dip_deviations(config: dict | None, cell: Cell, n_images: int) -> list[str]:
    """Where an SR setting departs from DIP's SR protocol (docs/references.md "Deep Image Prior
    super-resolution"), whose Set14 numbers the table sets beside ours. The loss (BP, TV)
    is the row, not a departure."""
    col = Column.of(cell)
    out = [text for departs, text in (
        (col.factor not in paper.DIP_SR_ITERATIONS, f"factor {col.factor} (DIP's table: x4 and x8)"),
        (n_images != paper.N_IMAGES, f"{n_images} image(s) (DIP: the {paper.N_IMAGES} Set14 images)"),
        (col.lr_source != "pil", "LR y = S H x from our operator (DIP: PIL's Lanczos resize)"),
        (cell.kernel != "lanczos2", f"{cell.kernel} kernel in the loss (DIP: lanczos2)"),
        (bool(cell.noise_var), f"noise var {cell.noise_var:g} (DIP: none)")) if departs]
    if not config:
        return out + ["resolved config not found beside the records: protocol not checked"]
    crop = _get(config, "data.crop")
    if crop is not None:
        out.append(f"centre crop {crop} px (DIP: full-size images, cropped to a multiple of 32)")
    out += departure(config, "loss.iterations", paper.DIP_SR_ITERATIONS.get(col.factor),
                     f"{{}} iterations (DIP: {{}} at x{col.factor})")
    out += departure(config, "optim.reg_noise_std", paper.DIP_SR_REG_NOISE.get(col.factor),
                     f"input noise {{:g}} (DIP: {{:g}} at x{col.factor})")
    out += network_deviation(config, "DIP: 5 scales of 128, 4 skip channels")
    return out + departure(config, "sr.shave", paper.DIP_SR_SHAVE, "shave {} (DIP's eval script: {})")


# ------------------------------------------------------------------------ values

def y_value(c: CellResult) -> OverSeeds:
    """Per seed the peak of its mean Y-PSNR curve, then the mean ± s.d. over the seeds."""
    return over_seed_curves(([r.images[n].curve for n in r.used] for r in c.valued_seeds), "psnr_y", Y_COLUMNS)


def final_psnr_y(c: CellResult) -> float | None:
    """The mean over the seeds of each seed's mean final Y-PSNR (None where an image lacks it)."""
    finals = [[r.images[n].summary.get("final_psnr_y") for n in r.used] for r in c.valued_seeds]
    if not finals or not all(isinstance(v, (int, float)) for f in finals for v in f):
        return None
    return float(np.mean([np.mean(f) for f in finals]))


def baseline_value(cells: list[CellResult]) -> dict | None:
    """The bicubic row of a column: each (seed, image) that some method of the column
    averaged counted once (y, hence its upsampling, is the same for every loss), the mean
    of its ``baseline`` metrics and their number ``n``; None without baselines."""
    seen: dict = {}
    for c in cells:
        for r in c.valued_seeds:
            for name in r.used:
                base = r.images[name].summary.get("baseline")
                if isinstance(base, dict) and (r.seed, name) not in seen:
                    seen[(r.seed, name)] = base
    keys = [k for k in Y_COLUMNS if seen and all(isinstance(b.get(k), (int, float)) for b in seen.values())]
    if "psnr_y" not in keys:
        return None
    return {**{k: float(np.mean([b[k] for b in seen.values()])) for k in keys}, "n": len(seen)}


def columns(report) -> dict[Column, list[CellResult]]:
    out: dict[Column, list[CellResult]] = {}
    for c in report.sr_cells:
        out.setdefault(Column.of(c.cell), []).append(c)
    return dict(sorted(out.items()))


def sr_table(report) -> pd.DataFrame:
    """sr.csv: one row per (column, method) and the bicubic row of each column."""
    rows = []
    for col, cells in columns(report).items():
        base = {"task": f"sr-x{col.factor}" + ("-pil" if col.lr_source == "pil" else ""), **asdict(col)}
        for c in cells:
            v = y_value(c)
            rows.append({**base, "method": label(c.cell.loss), "loss": c.cell.loss, "status": c.status,
                         "flags": ";".join(c.flags), "n_images": len(c.used), "n_expected": len(c.expected),
                         "n_seeds": v.n, "seeds": ";".join(seed_label(s.seed) for s in c.valued_seeds),
                         "peak_psnr_y": (v.peak or {}).get("psnr_y"), "peak_psnr_y_std": v.std,
                         "peak_iterations": ";".join(map(str, v.iterations)),
                         "peak_at_last_logged": ";".join(str(bool(e)).lower() for e in v.at_end),
                         **{f"{k}_at_peak": (v.peak or {}).get(k) for k in ("psnr", "ssim", "ssim_dr2")},
                         "final_psnr_y": final_psnr_y(c) if v.peak else None,
                         "dip_paper_psnr_y": paper.sr_paper(c.cell.loss, col.factor),
                         "iterations": c.run.get("iterations"), "config_hash": c.config_hash,
                         "git_commit": c.run.get("git_commit"), "device": c.run.get("device"),
                         "deviations": "; ".join(c.deviations)})
        b = baseline_value(cells) or {}
        rows.append({**base, "method": "bicubic", "loss": "bicubic", "status": "complete" if b else "missing",
                     "n_images": b.get("n", 0), "peak_psnr_y": b.get("psnr_y"),
                     **{f"{k}_at_peak": b.get(k) for k in ("psnr", "ssim", "ssim_dr2")},
                     "dip_paper_psnr_y": paper.sr_paper("bicubic", col.factor)})
    return _ints(pd.DataFrame(rows), "n_expected", "n_seeds", "iterations")  # empty on the bicubic rows


def sr_per_image(report) -> pd.DataFrame:
    """sr_per_image.csv: one row per (setting, seed, image): the image's own best Y-PSNR
    and iteration, final Y-PSNR, its bicubic baseline and the gain over it."""
    rows = []
    for c in report.sr_cells:
        col = Column.of(c.cell)
        for r in c.seeds.values():
            for name, img in r.images.items():
                s, base = img.summary, img.summary.get("baseline") or {}
                peak, b = s.get("peak_psnr_y"), base.get("psnr_y")
                rows.append({**asdict(col), "method": label(c.cell.loss), "seed": seed_label(r.seed),
                             "image": name, "status": img.status, "in_mean": name in r.used,
                             "peak_psnr_y": peak, "peak_psnr_y_iteration": s.get("peak_psnr_y_iteration"),
                             "final_psnr_y": s.get("final_psnr_y"), "peak_psnr": s.get("peak_psnr"),
                             "bicubic_psnr_y": b, "bicubic_psnr": base.get("psnr"),
                             "gain_psnr_y": peak - b if isinstance(peak, float) and isinstance(b, float) else None,
                             "source": img.source})
    return _ints(pd.DataFrame(rows), "peak_psnr_y_iteration")


# ------------------------------------------------------------------------ the tables

def _bold_tex(text: str, bold: bool) -> Alt | str:
    """LaTeX bolds the best of our column (Markdown: as before, no bold)."""
    return Alt(text, f"\\textbf{{{tex_escape(text)}}}") if bold else text


def _cell_text(c: CellResult | None, best) -> Value | str:
    if c is None:
        return "–"
    v = y_value(c)
    if v.peak is None:
        return Value((c.status if c.status in ("missing", "conflict") else "no complete image",), c.markers)
    spread = f" ± {v.std:.2f}" if v.std is not None else ""
    its = ",".join(f"{i}{' (last logged)' if end else ''}" for i, end in zip(v.iterations, v.at_end))
    text = f"{v.peak['psnr_y']:.2f}{spread} @{its} (n={len(c.used)}/{len(c.expected)})"
    return Value((_bold_tex(text, v.peak["psnr_y"] == best),), c.markers)


def sr_text_table(report) -> Table:
    """The SR table: a row per method and bicubic, per column ours and the DIP paper's."""
    cols = columns(report)
    shaves = sorted({str(_get(c.config or {}, "sr.shave", "?")) for c in report.sr_cells})
    short = len({col.factor for col in cols}) == len(cols)
    header = ["method", *(h for col in cols for h in (f"{col.label(short)} ours", f"{col.label(True)} DIP paper"))]
    losses = list(dict.fromkeys(c.cell.loss for cs in cols.values() for c in cs))
    order = {loss: i for i, loss in enumerate(paper.SR_ROWS)}
    bicubic = {col: baseline_value(cells) for col, cells in cols.items()}
    best = {}  # per column the highest Y-PSNR, bicubic's included: bold in LaTeX
    for col, cells in cols.items():
        peaks = [v.peak["psnr_y"] for v in map(y_value, cells) if v.peak]
        if bicubic[col]:
            peaks.append(bicubic[col]["psnr_y"])
        best[col] = max(peaks, default=None)
    rows = []
    for loss in sorted(losses, key=lambda x: (order.get(x, len(order)), x)):
        row = [label(loss)]
        for col, cells in cols.items():
            dip = paper.sr_paper(loss, col.factor)
            row += [_cell_text(next((c for c in cells if c.cell.loss == loss), None), best[col]),
                    f"{dip:.2f} (DIP)" if dip is not None else "–"]
        rows.append(row)
    row = ["bicubic"]
    for col in cols:
        b, dip = bicubic[col], paper.sr_paper("bicubic", col.factor)
        row += [Value((_bold_tex(f"{b['psnr_y']:.2f} (n={b['n']})", b["psnr_y"] == best[col]),)) if b else "–",
                f"{dip:.2f}" if dip is not None else "–"]
    rows.append(row)
    return Table(header, rows, "l" + "c" * (len(header) - 1), (
        "Y-channel PSNR [dB] (MATLAB rgb2ycbcr's Y, data range 255, "
        f"{' or '.join(shaves)} pixels shaved on each side: `sr.shave`, DIP's eval script shaves 4), the peak of "
        "the Y-PSNR curve averaged over the images at equal iterations (as Table I; the oracle, chosen with ground "
        "truth), @ its iteration (one per seed; '(last logged)': the curve may still be rising), n = images averaged / "
        "expected; ± the s.d. over seeds. Bicubic: y upsampled by PIL's bicubic, measured the same way. DIP paper: "
        "Set14 with DIP's protocol (LR by PIL's Lanczos, lanczos2 in the loss, least squares: read it beside LS; "
        "docs/references.md), recomputed from the DIP authors' published outputs."), "tab:sr", title="Super-resolution")


def md_sr(report) -> str:
    cols = columns(report)
    if not cols:
        return ""
    parts = [sr_text_table(report).section()]
    departures = {col: sorted({d for c in cells for d in c.deviations}) for col, cells in cols.items()}
    if any(departures.values()):
        parts += ["", "**Departures from DIP's protocol** (so the DIP columns are context, not a target):", ""]
        parts += [f"- {col.label()}: {'; '.join(d) or 'none'}" for col, d in departures.items()]
    if len({col.factor for col in cols}) != len(cols):
        parts += ["", "Columns: " + "; ".join(col.label() for col in cols) + "."]
    images = [[f"×{r.factor}", r.method, r.seed, r.image, r.status + ("" if r.in_mean else " (not in mean)"),
               fmt(r.peak_psnr_y, 2), fmt(r.peak_psnr_y_iteration, 0), fmt(r.final_psnr_y, 2), fmt(r.bicubic_psnr_y, 2),
               fmt(r.gain_psnr_y, 2, True)] for r in sr_per_image(report).itertuples()]
    runs = [[str(c.cell), c.config_hash or "–", commit_text(c.run), str(c.run.get("device") or "–"),
             str(c.run.get("iterations") or "–")] for c in report.sr_cells if c.sources]
    tables = [Table(["factor", "method", "seed", "image", "status", "best Y-PSNR", "@it", "final Y-PSNR", "bicubic",
                     "gain"], images, "l" * 5 + "r" * 5, "Each image's own best logged Y-PSNR (@ iteration), its final "
                    "image's, its bicubic baseline and the gain of the best over bicubic (`sr_per_image.csv`).",
                    title="Super-resolution per image"),
              Table(["setting", "config hash", "git commit", "device", "iterations"], runs, "lllll",
                    title="Super-resolution runs")]
    for t in tables:
        if t.rows:  # a subsection of the SR section
            parts += ["", f"### {t.title}", "", *([t.caption, ""] if t.caption else []), t.markdown()]
    return "\n".join(parts)


def tex_sr(report) -> str:
    return sr_text_table(report).latex() if report.sr_cells else ""


# ------------------------------------------------------------------------ figure

def sr_figure(report):
    """One panel per column: each method's mean Y-PSNR curve with its peak marked, the
    bicubic baseline (dashed) and the DIP paper's DIP and bicubic values (dotted)."""
    from bpdip.report.figure import COLORS, plt, style_curve_axes

    cols = columns(report)
    fig, axes = plt.subplots(1, len(cols), figsize=(5.2 * len(cols), 4.2), squeeze=False)
    for ax, (col, cells) in zip(axes[0], cols.items()):
        for c in cells:
            v, color, name = y_value(c), COLORS.get(c.cell.loss), label(c.cell.loss)
            if v.peak is None:
                ax.plot([], [], color=color, label=f"{name}: {c.status}")
                continue
            ax.plot(v.curve["iteration"], v.curve["psnr_y"], color=color, lw=1.3, label=f"{name}{c.markers}: "
                    f"{v.peak['psnr_y']:.2f} dB @{','.join(map(str, v.iterations))} (n={len(c.used)})")
            peak = peak_of(v.curve, "psnr_y", ())  # of the seeds' mean curve
            ax.plot([peak["iteration"]], [peak["psnr_y"]], "o", color=color, ms=4)
        b = baseline_value(cells)
        if b:
            ax.axhline(b["psnr_y"], color="0.3", ls="--", lw=1, label=f"bicubic: {b['psnr_y']:.2f} dB")
        for key, color in (("dip", "tab:green"), ("bicubic", "0.6")):
            dip = paper.SR_SET14[key].get(col.factor)
            if dip is not None:
                ax.axhline(dip, color=color, ls=":", lw=1,
                           label=f"DIP paper {paper.SR_LABELS[key]} (Set14): {dip:.2f}")
        ax.set_title(col.label(), fontsize=9)
        style_curve_axes(ax, "Y-PSNR [dB]", labelsize=None)
        ax.legend(fontsize=6.5, loc="lower right")
    fig.suptitle("Super-resolution: average Y-PSNR vs iteration", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return fig


def save_sr_figure(report, stem) -> list:
    """``stem``.png and ``stem``.pdf of :func:`sr_figure`; nothing for a report without SR."""
    from bpdip.report.figure import save_figure

    return save_figure(sr_figure(report), stem) if report.sr_cells else []
