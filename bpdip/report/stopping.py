"""The report's "stopping" part: per setting and rule, :func:`bpdip.curves.rule_statistics`
over the images in the setting's means (every seed pooled), issue 10's targets over the
paper's grid, and Fig. 1 with each rule's mean choice.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bpdip.paper import KERNEL_LABELS, KERNELS, LOSS_LABELS, LOSSES, NOISE_VARS
from bpdip.stopping import ONLINE, RULES
from bpdip.curves import TOLERANCE_DB, rule_statistics
from bpdip.report.render import Alt, Table, fmt, md_table
from bpdip.report.streams import setting_label

KEY = ["loss", "kernel", "noise_var"]  # a setting
CSV_COLUMNS = [*KEY, "rule", "n", "mean_psnr", "gap_db", "within_05", "iteration", "stopped", "ran", "full"]


def cell_entries(c) -> list[dict]:
    """The summary.json entries of the images in a setting's means, every seed pooled."""
    return [{**r.images[n].summary, "status": r.images[n].status} for r in c.seeds.values() for n in r.used
            if n in r.images]


def rule_rows(c, entries: list[dict], full: list[dict] | None = None, rules=None, stream: str | None = None,
              rule_suffix: str = "") -> list[dict]:
    """One row per rule of :func:`rule_statistics` over ``entries`` (only ``rules``; each
    named ``<rule><rule_suffix>``), with a ``stream`` column where one is given; ``full``:
    the mean iterations of ``full`` (default ``entries``)."""
    full = entries if full is None else full
    runs = float(np.mean([e.get("iterations") or math.nan for e in full])) if full else math.nan
    setting = {"loss": c.cell.loss, "kernel": c.cell.kernel, "noise_var": c.cell.noise_var}
    if stream is not None:
        setting["stream"] = stream
    return [{**setting, "rule": rule + rule_suffix, **s, "full": runs}
            for rule, s in rule_statistics(entries).items() if rules is None or rule in rules]


def stopping_table(cells) -> pd.DataFrame:
    """One row per (setting, rule) with records of the rules (schema-2 records)."""
    rows = [r for c in cells if c.status not in ("missing", "conflict") for r in rule_rows(c, cell_entries(c))]
    return pd.DataFrame(rows, columns=CSV_COLUMNS)


def _grid(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame``'s rows of the paper's grid, indexed by setting."""
    return frame[frame["loss"].isin(LOSSES) & frame["kernel"].isin(KERNELS)
                 & frame["noise_var"].isin(NOISE_VARS)].set_index(KEY)


def targets(frame: pd.DataFrame) -> dict:
    """Issue 10's targets over the paper's grid (NaN where the records do not tell)."""
    grid = _grid(frame)
    out = {"settings": grid.index.nunique(), "rules": {}}
    fixed = grid[grid.rule == "fixed"]["mean_psnr"]
    for rule in RULES:
        rows = grid[grid.rule == rule]
        if rows.empty:
            continue
        bp = rows.query("loss == 'bp' and noise_var in [2.0, 4.0]")["mean_psnr"]
        cut = 1 - (rows["ran"] * rows["n"]).sum() / (rows["full"] * rows["n"]).sum()
        out["rules"][rule] = {"mean_gap_db": float(rows["gap_db"].mean()),
                              "bp_high_noise_gain_db": float((bp - fixed.reindex(bp.index)).mean()),
                              "iterations_cut": float(cut) if rule in ONLINE else math.nan,
                              "within_05": float((rows["within_05"] * rows["n"]).sum() / rows["n"].sum())}
    return out


def _rule_cell(s) -> str:
    """A rule's cell: mean PSNR (gap to the oracle, share within TOLERANCE_DB) @ iteration."""
    if not math.isfinite(s.mean_psnr):  # no ground truth: only the iteration
        text = f"@{fmt(s.iteration, 0)}"
        if s.stopped:
            text += f" stopped {fmt(100 * s.stopped, 0)}%"
        return text
    gap = f"{s.gap_db:+.2f}" if s.rule != "oracle" else "0"
    return f"{s.mean_psnr:.2f} ({gap}, {100 * s.within_05:.0f}%) @{s.iteration:.0f}"


def stopping_rows(frame: pd.DataFrame, extra_keys: tuple[str, ...] = ()) -> tuple[list[str], list[list]]:
    """(rules, rows): per setting, or per setting and ``extra_keys`` (e.g. the stream), the
    columns before the rules (the setting, the ``extra_keys``, n), then each rule's cell
    (:func:`_rule_cell`)."""
    present = set(frame.rule)
    rules = [r for r in RULES if r in present] + \
        [f"{r}@average" for r in ONLINE if f"{r}@average" in present]  # issue 32: rules that watched the average
    rows = []
    for _, group in frame.groupby([*KEY, *extra_keys], sort=False):
        by_rule = {r.rule: r for r in group.itertuples()}
        first = next(iter(by_rule.values()))
        rows.append([setting_label((first.loss, first.kernel, first.noise_var)),
                     *(str(getattr(first, k)) for k in extra_keys), str(first.n)]
                    + [_rule_cell(by_rule[r]) if r in by_rule else "–" for r in rules])
    return rules, rows


def stopping_table_text(report) -> Table | None:
    """The "stopping" part's table (None without records of the rules)."""
    frame = report.stopping
    if frame.empty:
        return None
    rules, rows = stopping_rows(frame)
    return Table([Alt("setting", "Setting"), Alt("n", "$n$"), *rules], rows, "ll" + "c" * len(rules), (
        "Per setting and rule (every run evaluates every rule, `bpdip/stopping/`): mean PSNR of the image the "
        f"rule chose (gap to each image's oracle peak, share of images within {TOLERANCE_DB} dB of it) "
        "@ mean chosen iteration; n = images × seeds. `oracle` is the best logged iteration (ground "
        "truth), `fixed` the last iterate; a rule that never stopped chose the last iterate (discrepancy) "
        "or its best candidate so far (wmv, emv). Without ground truth only the iterations are known."),
        title="Stopping rules: when a run would have stopped on its own")


def md_stopping(report) -> str:
    table = stopping_table_text(report)
    if table is None:
        return ""
    parts = [table.section(), ""]
    t = targets(report.stopping)
    if t["rules"]:
        header = ["rule", "mean gap to oracle [dB]", f"images within {TOLERANCE_DB} dB",
                  "gain over fixed, BP σ²=2,4 [dB]", "iterations cut by stop.early"]
        rows = [[rule, fmt(v["mean_gap_db"], 2, True), fmt(100 * v["within_05"], 0) + "%",
                 fmt(v["bp_high_noise_gain_db"], 2, True),
                 fmt(100 * v["iterations_cut"], 0) + "%" if math.isfinite(v["iterations_cut"]) else "–"]
                for rule, v in t["rules"].items()]
        parts += [f"Over the paper's grid ({t['settings']} settings with records): issue 10's targets are a mean "
                  "gap within 0.5 dB of the oracle, a gain of at least 2 dB over `fixed` at the BP settings of "
                  "noise variance 2 and 4, and at least 40 % fewer iterations with `stop.early` (each rule's stop "
                  "iteration + 1, or the full run where it never stopped, against the full runs).", "",
                  md_table(header, rows, "lcccc"), ""]
    return "\n".join(parts)


def tex_stopping(report) -> str:
    table = stopping_table_text(report)
    return table.latex() if table is not None else ""


def save_stopping_figure(report, stem) -> list:
    """Fig. 1's curves with each rule's mean choice marked (mean chosen iteration, mean PSNR
    of the chosen images); PNG and PDF."""
    from matplotlib.lines import Line2D

    from bpdip.report.figure import COLORS, panel_grid, save_figure, style_curve_axes

    frame, grid = report.stopping, report.grid
    markers = {"oracle": "*", "fixed": "s", "wmv": "o", "emv": "^", "discrepancy": "D"}
    fig, panels = panel_grid()
    for ax, kernel, var in panels:
        ax.set_title(f"{KERNEL_LABELS[kernel]}, σ = √{var:g}", fontsize=10)
        for loss in LOSSES:
            c = grid.get((loss, kernel, var))
            if c is None or c.mean_curve is None or c.mean_curve.empty:
                continue
            ax.plot(c.mean_curve["iteration"], c.mean_curve["psnr"], color=COLORS[loss], lw=1.1,
                    label=LOSS_LABELS[loss])
            rows = frame[(frame.loss == loss) & (frame.kernel == kernel) & (frame.noise_var == var)]
            for row in rows.itertuples():
                if math.isfinite(row.mean_psnr):
                    ax.plot([row.iteration], [row.mean_psnr], markers.get(row.rule, "x"), color=COLORS[loss],
                            ms=6, mfc="none" if row.rule != "oracle" else COLORS[loss])
        style_curve_axes(ax)
    handles = [Line2D([], [], color="k", ls="none", marker=m, mfc="none" if k != "oracle" else "k", label=k)
               for k, m in markers.items()]
    handles += [Line2D([], [], color=COLORS[loss], label=LOSS_LABELS[loss]) for loss in LOSSES]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8)
    fig.suptitle("Average PSNR vs iteration with each stopping rule's mean choice (iteration, PSNR of the chosen "
                 "images)", fontsize=11)
    fig.tight_layout(rect=(0, 0.04, 1, 0.97))
    return save_figure(fig, stem)

