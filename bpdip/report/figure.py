"""Fig. 1 of the paper: a 3x3 grid (rows kernel, columns noise level), each panel the four
average PSNR-vs-iteration curves (LS, LS-TV, BP, BP-TV), legends with the peak values.

The curve drawn is each cell's mean curve (cells.mean_curve: averaged over the complete
images at the iterations they all logged) and the marked point is the Table I peak, so
the figure and the table cannot disagree. Flagged cells carry their markers in the legend.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only; no display on a cluster node
import matplotlib.pyplot as plt  # noqa: E402

from bpdip.paper import KERNEL_LABELS, KERNELS, LOSS_LABELS, LOSSES, NOISE_VARS  # noqa: E402
from bpdip.report.cells import FLAGS, CellResult  # noqa: E402
from bpdip.report.render import grid_cells  # noqa: E402

COLORS = {"ls": "tab:blue", "ls_tv": "tab:cyan", "bp": "tab:red", "bp_tv": "tab:orange"}
PANEL_LETTERS = "abcdefghi"


def figure1(cells: list[CellResult], title: str | None = None):
    """The matplotlib Figure of Fig. 1 (9 axes)."""
    grid, _ = grid_cells(cells)
    fig, axes = plt.subplots(len(KERNELS), len(NOISE_VARS), figsize=(13, 10.5), squeeze=False)
    used_flags = set()
    for r, kernel in enumerate(KERNELS):
        for col, var in enumerate(NOISE_VARS):
            ax = axes[r][col]
            letter = PANEL_LETTERS[r * len(NOISE_VARS) + col]
            ax.set_title(f"({letter}) {KERNEL_LABELS[kernel]}, σ = √{var:g}", fontsize=10)
            drawn = 0
            for loss in LOSSES:
                c = grid.get((loss, kernel, var))
                if c is None:
                    continue
                used_flags.update(c.flags)
                label = f"{LOSS_LABELS[loss]}{c.markers}"
                curve = c.mean_curve
                if c.peak is None or curve is None or curve.empty:
                    # keep the method in the legend so that its absence is visible
                    ax.plot([], [], color=COLORS[loss], label=f"{LOSS_LABELS[loss]}: {c.status} {c.markers}")
                    continue
                paper = f", paper {c.paper[0]:.2f}" if c.paper else ""
                ax.plot(curve["iteration"], curve["psnr"], color=COLORS[loss], lw=1.3,
                        label=f"{label}: {c.peak['psnr']:.2f} dB @{c.peak['iteration']}{' (end)' if c.peak_at_end else ''}"
                              f" (n={len(c.used)}){paper}")
                ax.plot([c.peak["iteration"]], [c.peak["psnr"]], "o", color=COLORS[loss], ms=4)
                drawn += 1
            if not drawn:
                ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="0.4")
                ax.set_xticks([])
                ax.set_yticks([])
            ax.set_xlabel("iteration", fontsize=9)
            ax.set_ylabel("PSNR [dB]", fontsize=9)
            ax.tick_params(labelsize=8)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=6.5, loc="best")
    notes = "; ".join(f"{FLAGS[f][0]} {FLAGS[f][1]}" for f in FLAGS if f in used_flags)
    if title:
        fig.suptitle(title, fontsize=11)
    if notes:
        fig.text(0.5, 0.005, notes, ha="center", va="bottom", fontsize=7, wrap=True, color="darkred")
    fig.tight_layout(rect=(0, 0.03 if notes else 0, 1, 0.97 if title else 1))
    return fig


def save_figure1(cells: list[CellResult], stem, title: str | None = None) -> list:
    """Write ``stem``.png and ``stem``.pdf; returns the paths."""
    from pathlib import Path

    stem = Path(stem)
    fig = figure1(cells, title)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    try:
        fig.savefig(paths[0], dpi=150)
        fig.savefig(paths[1])
    finally:
        plt.close(fig)
    return paths
