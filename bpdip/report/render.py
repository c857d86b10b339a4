"""Markdown and LaTeX (booktabs) renderings of the report, laid out as the paper's Table I.

Layout (paper, TABLE I): rows LS, LS-TV, BP, BP-TV; columns the three kernels, each with
the noise levels sigma = sqrt(0.3), sqrt(2), sqrt(4). Each cell shows ours
(PSNR / SSIM_dr2), the best common iteration, the paper's value and the difference.
Every flagged cell carries its markers (cells.FLAGS) and the issues are listed at the end.
"""

from __future__ import annotations

import math
from collections import defaultdict

import pandas as pd

from bpdip.paper import KERNEL_LABELS, KERNELS, LOSS_LABELS, LOSSES, NOISE_VARS
from bpdip.report.cells import FLAGS, CellResult, Issue

LATEX_MARKERS = {"∅": r"\emptyset", "‖": r"\|", "*": "*", "†": r"\dagger", "‡": r"\ddagger", "§": r"\S",
                 "¶": r"\P"}


def fmt(x, digits: int, sign: bool = False) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)) or x is pd.NA:
        return "–"
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def noise_label(var: float) -> str:
    return f"√{var:g}"


def grid_cells(cells: list[CellResult]) -> tuple[dict, list[CellResult]]:
    """(loss, kernel, var) -> cell for the paper's grid, and the cells outside it."""
    grid, other = {}, []
    for c in cells:
        key = (c.cell.loss, c.cell.kernel, c.cell.noise_var)
        if c.cell.loss in LOSSES and c.cell.kernel in KERNELS and c.cell.noise_var in NOISE_VARS:
            grid[key] = c
        else:
            other.append(c)
    return grid, other


# ----------------------------------------------------------------------------- Markdown

def md_table(header: list[str], rows: list[list[str]], align: str | None = None) -> str:
    def esc(s):
        return str(s).replace("|", "\\|").replace("\n", " ")
    align = align or "l" + "c" * (len(header) - 1)
    sep = [{"l": ":--", "c": ":-:", "r": "--:"}[a] for a in align]
    lines = ["| " + " | ".join(esc(h) for h in header) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(esc(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def md_markers(markers: str) -> str:
    """Markers as Markdown text ('*' escaped so that it is not emphasis)."""
    return markers.replace("*", "\\*")


def md_cell(c: CellResult | None, which: str) -> str:
    if c is None:
        return "–"
    paper = c.paper
    lines = []
    if c.status in ("missing", "conflict"):
        lines.append(f"{c.status} {md_markers(c.markers)}")
    else:
        values = c.peak if which == "peak" else c.final
        if values is None:
            lines.append(f"no complete image {md_markers(c.markers)}")
        else:
            lines.append(f"{fmt(values['psnr'], 2)} / {fmt(values['ssim_dr2'], 3)}{md_markers(c.markers)}")
            end = " (last logged: still rising?)" if c.peak_at_end else ""
            at = f"@{values['iteration']}{end} · " if which == "peak" else ""
            lines.append(f"{at}SSIM₁ {fmt(values['ssim'], 3)} · n={len(c.used)}/{len(c.expected)}")
            if paper:
                lines.append(f"paper {paper[0]:.2f} / {paper[1]:.2f}")
                lines.append(f"Δ {fmt(values['psnr'] - paper[0], 2, True)} / {fmt(values['ssim_dr2'] - paper[1], 3, True)}")
    if paper and len(lines) == 1:
        lines.append(f"paper {paper[0]:.2f} / {paper[1]:.2f}")
    return "<br>".join(lines)


def md_grid(cells: list[CellResult], which: str) -> str:
    grid, _ = grid_cells(cells)
    header = [""] + [f"{KERNEL_LABELS[k]} σ={noise_label(v)}" for k in KERNELS for v in NOISE_VARS]
    rows = [[LOSS_LABELS[loss]] + [md_cell(grid.get((loss, k, v)), which) for k in KERNELS for v in NOISE_VARS]
            for loss in LOSSES]
    return md_table(header, rows)


def md_other(cells: list[CellResult]) -> str:
    _, other = grid_cells(cells)
    if not other:
        return ""
    rows = [[str(c.cell), md_cell(c, "peak"), md_cell(c, "final")] for c in other]
    return "## Settings outside the paper's grid\n\n" + md_table(["setting", "peak", "final"], rows) + "\n"


def md_per_image(frame: pd.DataFrame) -> str:
    header = ["method", "kernel", "σ²", "image", "status", "in mean", "peak PSNR", "@it", "peak SSIM (dr2)",
              "peak SSIM₁", "final PSNR", "final SSIM (dr2)", "final SSIM₁", "iterations", "note"]
    rows = [[r.method, r.kernel, f"{r.noise_var:g}", r.image, r.status, "yes" if r.in_mean else "NO",
             fmt(r.peak_psnr, 2), "–" if pd.isna(r.peak_iteration) else str(r.peak_iteration),
             fmt(r.peak_ssim_dr2, 3), fmt(r.peak_ssim, 3), fmt(r.final_psnr, 2), fmt(r.final_ssim_dr2, 3),
             fmt(r.final_ssim, 3), "–" if pd.isna(r.iterations) else str(r.iterations), r.note]
            for r in frame.itertuples()]
    return md_table(header, rows, "llllll" + "r" * 8 + "l")


def md_runs(cells: list[CellResult]) -> str:
    """One row per setting with records: where they come from and how they depart from
    the paper's protocol (so that a demo's numbers are read as a demo's)."""
    rows = []
    for c in cells:
        if not c.sources:
            continue
        commit = str(c.run.get("git_commit") or "–")[:10] + ("+dirty" if c.run.get("git_dirty") else "")
        device = str(c.run.get("device") or "–") + (f", {c.run['engine']}" if c.run.get("engine") else "")
        rows.append([str(c.cell), c.config_hash or ("conflict" if c.conflict else "–"), str(len(c.sources)), commit,
                     device, "; ".join(c.deviations) or "none"])
    if not rows:
        return "No records."
    return md_table(["setting", "config hash", "records", "git commit", "device, engine",
                     "departures from the paper's protocol"],
                    rows, "llllll")


def issue_lines(issues: list[Issue], marker=md_markers, code=lambda s: f"`{s}`", other: str = "·") -> list[str]:
    """Issues grouped for reading: missing settings on one line, the rest one per line.
    ``marker`` and ``code`` format a marker and an image name for the output language."""
    lines = []
    missing = [i for i in issues if i.kind == "missing"]
    if missing:
        lines.append(f"{marker(FLAGS['missing'][0])} missing settings ({len(missing)}): "
                     + ", ".join(str(i.cell) for i in missing))
    for i in issues:
        if i.kind == "missing":
            continue
        mark = marker(FLAGS[i.kind][0]) if i.kind in FLAGS else other
        where = str(i.cell) if i.cell else "record"
        image = f" image {code(i.image)}" if i.image else ""
        src = f" ({i.source})" if i.source else ""
        lines.append(f"{mark} {i.kind}: {where}{image}: {i.detail}{src}")
    return lines


def markdown(report) -> str:
    cells = report.cells
    parts = [f"# {report.title}", "", *report.header_lines(), ""]
    parts += ["Cells: **PSNR [dB] / SSIM** (SSIM with data_range 2, as the paper's old scikit-image; SSIM₁: "
              "data_range 1), averaged over the images (n = averaged/expected). Paper: the paper's Table I; "
              "Δ = ours − paper.", ""]
    if any(c.deviations for c in cells):
        parts += ["**These runs depart from the paper's protocol** (see Runs below): their numbers are not "
                  "expected to match the paper's.", ""]
    parts += ["## Table I: peak of the average PSNR curve", "",
              "The peak of the PSNR curve averaged over the images at equal iterations (PROTOCOL: best common "
              "iteration, chosen with ground truth); @ = that iteration; SSIM at the same iteration.", "",
              md_grid(cells, "peak"), ""]
    parts += ["## Final iteration", "",
              "Mean over the images of the final image (unperturbed input, after the last step).", "",
              md_grid(cells, "final"), ""]
    other = md_other(cells)
    if other:
        parts += [other]
    parts += ["## Runs", "", md_runs(cells), ""]
    parts += ["## Per image", "", "Each image's own peak (its best logged iteration) and final values.", "",
              md_per_image(report.per_image) if len(report.per_image) else "No image records.", ""]
    parts += ["## Incomplete data", ""]
    parts += ["Markers: " + "; ".join(f"{md_markers(m)} {text}" for m, text in FLAGS.values()) + ".", ""]
    lines = issue_lines(report.issues)
    parts += [f"- {line}" for line in lines] if lines else ["None: every setting is complete over the same images."]
    parts += [""]
    return "\n".join(parts)


# ----------------------------------------------------------------------------- LaTeX

def tex_escape(s) -> str:
    s = str(s)
    out = []
    for ch in s:
        out.append({"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}.get(ch, ch))
    return "".join(out)


def tex_markers(markers: str) -> str:
    return "".join(f"$^{{{LATEX_MARKERS[m]}}}$" for m in markers)


def tex_num(x, digits, sign=False) -> str:
    text = fmt(x, digits, sign)
    return "--" if text == "–" else f"${text}$"


def tex_grid(report, which: str, caption: str, label: str) -> str:
    grid, _ = grid_cells(report.cells)
    cols = [(k, v) for k in KERNELS for v in NOISE_VARS]
    lines = [
        "% needs \\usepackage{booktabs}; generated by bpdip.report, do not edit by hand",
        "\\begin{table*}[t]", "\\centering", "\\scriptsize", "\\setlength{\\tabcolsep}{3pt}",
        f"\\caption{{{caption}}}", f"\\label{{{label}}}",
        "\\begin{tabular}{ll" + "c" * len(cols) + "}", "\\toprule",
        " & & " + " & ".join(f"\\multicolumn{{3}}{{c}}{{{KERNEL_LABELS[k]} kernel}}" for k in KERNELS) + " \\\\",
        "".join(f"\\cmidrule(lr){{{3 + 3 * i}-{5 + 3 * i}}}" for i in range(len(KERNELS))),
        " & & " + " & ".join(f"$\\sigma=\\sqrt{{{v:g}}}$" for _, v in cols) + " \\\\",
        "\\midrule",
    ]
    for n, loss in enumerate(LOSSES):
        if n:
            lines.append("\\midrule")
        ours, at, paper, diff = [], [], [], []
        for key in cols:
            c = grid.get((loss, *key))
            p = c.paper if c is not None else None
            values = (c.peak if which == "peak" else c.final) if c is not None else None
            if c is None or c.status in ("missing", "conflict") or values is None:
                text = c.status if c is not None and c.status in ("missing", "conflict") else "n/a"
                ours.append(f"{text}{tex_markers(c.markers) if c is not None else ''}")
                at.append("--")
                diff.append("--")
            else:
                ours.append(f"{values['psnr']:.2f} / {values['ssim_dr2']:.3f}{tex_markers(c.markers)}")
                it = f"{values['iteration']}{'$^{e}$' if c.peak_at_end else ''}, " if which == "peak" else ""
                at.append(f"{it}{values['ssim']:.3f}, {len(c.used)}/{len(c.expected)}")
                diff.append(f"{tex_num(values['psnr'] - p[0], 2, True)} / {tex_num(values['ssim_dr2'] - p[1], 3, True)}"
                            if p else "--")
            paper.append(f"{p[0]:.2f} / {p[1]:.2f}" if p else "--")
        sub = "iter., SSIM$_1$, $n$" if which == "peak" else "SSIM$_1$, $n$"
        lines.append(f"{LOSS_LABELS[loss]} & ours & " + " & ".join(ours) + " \\\\")
        lines.append(f" & {sub} & " + " & ".join(at) + " \\\\")
        lines.append(" & paper & " + " & ".join(paper) + " \\\\")
        lines.append(" & $\\Delta$ & " + " & ".join(diff) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    lines += tex_notes(report)
    lines += ["\\end{table*}", ""]
    return "\n".join(lines)


def tex_notes(report) -> list[str]:
    used = sorted({f for c in report.cells for f in c.flags}, key=list(FLAGS).index)
    at_end = any(c.peak_at_end for c in report.cells)
    notes = ["\\par\\smallskip\\parbox{\\linewidth}{\\footnotesize",
             "PSNR [dB] / SSIM (data\\_range 2, as the paper's); SSIM$_1$: data\\_range 1; $n$: images "
             "averaged / expected; $\\Delta$ = ours $-$ paper."]
    for f in used:
        marker, text = FLAGS[f]
        notes.append(f"{tex_markers(marker)} {tex_escape(text)}.")
    if at_end:
        notes.append("$^{e}$ the peak is the last logged iteration: the curve may still be rising.")
    departures = sorted({d for c in report.cells for d in c.deviations})
    if departures:
        notes.append("Departures from the paper's protocol: " + "; ".join(tex_escape(d) for d in departures) + ".")
    lines = issue_lines([i for i in report.issues if i.kind != "missing"], marker=lambda m: "\x00" + m + "\x01",
                        code=str, other="-")
    n_missing = sum(i.kind == "missing" for i in report.issues)
    if n_missing:
        lines.insert(0, f"{n_missing} settings have no record")
    if lines:
        text = "; ".join(tex_escape(line) for line in lines)
        # markers were fenced with \x00..\x01 so that escaping does not touch them
        for m in LATEX_MARKERS:
            text = text.replace("\x00" + m + "\x01", tex_markers(m))
        notes.append("Incomplete data: " + text + ".")
    notes.append("}")
    return notes


def tex_per_image(frame: pd.DataFrame) -> str:
    header = ["Method", "Kernel", "$\\sigma^2$", "Image", "Status", "Peak PSNR", "Iter.", "SSIM", "SSIM$_1$",
              "Final PSNR", "SSIM", "SSIM$_1$"]
    lines = ["% needs \\usepackage{booktabs,longtable}; generated by bpdip.report",
             "\\begin{longtable}{lllll" + "r" * 7 + "}", "\\toprule", " & ".join(header) + " \\\\", "\\midrule",
             "\\endhead", "\\bottomrule", "\\endfoot"]
    for r in frame.itertuples():
        status = r.status if r.in_mean else f"{r.status}$^{{*}}$"
        it = "--" if pd.isna(r.peak_iteration) else str(r.peak_iteration)
        lines.append(" & ".join([tex_escape(r.method), tex_escape(r.kernel), f"{r.noise_var:g}", tex_escape(r.image),
                                 status, tex_num(r.peak_psnr, 2), it, tex_num(r.peak_ssim_dr2, 3),
                                 tex_num(r.peak_ssim, 3), tex_num(r.final_psnr, 2), tex_num(r.final_ssim_dr2, 3),
                                 tex_num(r.final_ssim, 3)]) + " \\\\")
    lines += ["\\end{longtable}", "% $^{*}$: not in the cell's mean (failed, running, corrupt or absent); SSIM: "
              "data_range 2 (the paper's), SSIM$_1$: data_range 1", ""]
    return "\n".join(lines)


def group_counts(cells: list[CellResult]) -> dict[str, int]:
    counts = defaultdict(int)
    for c in cells:
        counts[c.status] += 1
    return dict(counts)
