"""Fig. 1 of the paper (a 3x3 grid of kernel x noise panels, the four losses' average PSNR
curves, the peaks marked; the averaged output dashed) and the heat map of ours − paper.
The curves and peaks are the cells' own, so the figure and Table I cannot disagree.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on a cluster node
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import TwoSlopeNorm  # noqa: E402

from bpdip.paper import KERNEL_LABELS, KERNELS, LOSS_LABELS, LOSSES, NOISE_VARS  # noqa: E402
from bpdip.report.cells import FLAGS, CellResult  # noqa: E402
from bpdip.report.render import GRID_COLUMNS, grid_cells  # noqa: E402
from bpdip.report.streams import stream_value  # noqa: E402

COLORS = {"ls": "tab:blue", "ls_tv": "tab:cyan", "bp": "tab:red", "bp_tv": "tab:orange"}
PANEL_LETTERS = "abcdefghi"


def panel_grid():
    """Fig. 1's layout: a figure of 3 x 3 panels, rows the kernels and columns the noise
    levels; returns (figure, [(axes, kernel, noise variance), ...] in reading order)."""
    fig, axes = plt.subplots(len(KERNELS), len(NOISE_VARS), figsize=(13, 10.5), squeeze=False)
    return fig, [(axes[r][c], k, v) for r, k in enumerate(KERNELS) for c, v in enumerate(NOISE_VARS)]


def style_curve_axes(ax, ylabel: str = "PSNR [dB]", labelsize: float | None = 8) -> None:
    """Axis labels and grid of a curve panel (PSNR or Y-PSNR against the iteration)."""
    ax.set_xlabel("iteration", fontsize=9)
    ax.set_ylabel(ylabel, fontsize=9)
    if labelsize is not None:
        ax.tick_params(labelsize=labelsize)
    ax.grid(alpha=0.3)


def flag_note(fig, cells) -> bool:
    """The footnote that explains the markers of the ``cells`` (cells.FLAGS); False when they have none."""
    used = {f for c in cells for f in c.flags}
    notes = "; ".join(f"{FLAGS[f][0]} {FLAGS[f][1]}" for f in FLAGS if f in used)
    if notes:
        fig.text(0.5, 0.005, notes, ha="center", va="bottom", fontsize=7, wrap=True, color="darkred")
    return bool(notes)


def figure1(cells: list[CellResult], title: str | None = None):
    """The matplotlib Figure of Fig. 1 (9 axes)."""
    grid, _ = grid_cells(cells)
    fig, panels = panel_grid()
    for letter, (ax, kernel, var) in zip(PANEL_LETTERS, panels):
        ax.set_title(f"({letter}) {KERNEL_LABELS[kernel]}, σ = √{var:g}", fontsize=10)
        drawn = dashed = False
        for loss in LOSSES:
            c = grid.get((loss, kernel, var))
            if c is None:
                continue
            curve = c.mean_curve
            if c.peak is None or curve is None or curve.empty:
                # keep the method in the legend so that its absence is visible
                ax.plot([], [], color=COLORS[loss], label=f"{LOSS_LABELS[loss]}: {c.status} {c.markers}")
                continue
            paper = f", paper {c.paper[0]:.2f}" if c.paper else ""
            ax.plot(curve["iteration"], curve["psnr"], color=COLORS[loss], lw=1.3,
                    label=f"{LOSS_LABELS[loss]}{c.markers}: {legend_value(c)} (n={len(c.used)}){paper}")
            for seed in c.valued_seeds:
                ax.plot([seed.peak["iteration"]], [seed.peak["psnr"]], "o", color=COLORS[loss], ms=4)
            average = stream_value(c, "average")
            if average.peak is not None:
                ax.plot(average.curve["iteration"], average.curve["psnr"], color=COLORS[loss], lw=1.0, ls="--")
                dashed = True
            drawn = True
        if not drawn:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="0.4")
            ax.set_xticks([])
            ax.set_yticks([])
        style_curve_axes(ax)
        if dashed:  # one legend line for the dashed curves, not one per loss
            ax.plot([], [], color="0.35", lw=1.0, ls="--", label="dashed: averaged output")
        ax.legend(fontsize=6.5, loc="best")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.03 if flag_note(fig, grid.values()) else 0, 1, 0.97 if title else 1))
    return fig


def legend_value(c: CellResult) -> str:
    if c.n_seeds > 1:
        return f"{c.peak['psnr']:.2f} ± {c.psnr_std:.2f} dB over {c.n_seeds} seeds"
    return f"{c.peak['psnr']:.2f} dB @{c.peak['iteration']}{' (end)' if c.peak_at_end else ''}"


def heatmap(cells: list[CellResult], title: str | None = None):
    """Ours - paper PSNR of Table I as a 4 x 9 heat map (rows loss, columns kernel and
    noise), a diverging colour map centred at 0, each cell annotated with the difference
    (± the s.d. over seeds where there are several) and its markers; no value: grey."""
    grid, _ = grid_cells(cells)
    diff = np.full((len(LOSSES), len(GRID_COLUMNS)), np.nan)
    notes = [["n/a"] * len(GRID_COLUMNS) for _ in LOSSES]
    for i, loss in enumerate(LOSSES):
        for j, (kernel, var) in enumerate(GRID_COLUMNS):
            c = grid.get((loss, kernel, var))
            if c is None:
                continue
            if c.peak is None or c.paper is None or c.status in ("missing", "conflict"):
                notes[i][j] = f"{c.status}\n{c.markers}" if c.markers else c.status
                continue
            diff[i, j] = c.peak["psnr"] - c.paper[0]
            spread = f"\n±{c.psnr_std:.2f}" if c.psnr_std is not None else ""
            notes[i][j] = f"{diff[i, j]:+.2f}{spread}{c.markers}"
    finite = np.abs(diff[np.isfinite(diff)])
    limit = max(float(finite.max()) if finite.size else 0.0, 0.5)
    fig, ax = plt.subplots(figsize=(11, 4.2))
    cmap = plt.get_cmap("RdBu").with_extremes(bad="0.85")
    image = ax.imshow(np.ma.masked_invalid(diff), cmap=cmap, norm=TwoSlopeNorm(0.0, -limit, limit), aspect="auto")
    for (i, j), value in np.ndenumerate(diff):
        dark = np.isfinite(value) and abs(value) > 0.6 * limit
        ax.text(j, i, notes[i][j], ha="center", va="center", fontsize=8, color="white" if dark else "black")
    ax.set_xticks(range(len(GRID_COLUMNS)), [f"{KERNEL_LABELS[k]}\nσ = √{v:g}" for k, v in GRID_COLUMNS], fontsize=8)
    ax.set_yticks(range(len(LOSSES)), [LOSS_LABELS[loss] for loss in LOSSES], fontsize=9)
    for j in (3, 6):
        ax.axvline(j - 0.5, color="white", lw=2)
    fig.colorbar(image, ax=ax, label="ours − paper PSNR [dB]")
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.05 if flag_note(fig, grid.values()) else 0, 1, 1))
    return fig


def save_figure(fig, stem) -> list:
    """Write ``fig`` as ``stem``.png and ``stem``.pdf, close it; returns the paths."""
    stem = Path(stem)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    try:
        fig.savefig(paths[0], dpi=150)
        fig.savefig(paths[1])
    finally:
        plt.close(fig)
    return paths
