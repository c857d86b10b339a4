"""The report's sections: one table model, :class:`Table` (header, rows, ONE caption) or
:class:`Grid` (laid out as the paper's Table I), built once and printed by one Markdown and
one LaTeX writer. Cells are plain text or :class:`Value` (parts in bold, signed numbers, the
markers of incomplete data, cells.FLAGS), with :class:`Alt` where the languages differ.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable, NamedTuple

import pandas as pd

from bpdip.paper import KERNEL_LABELS, KERNELS, LOSS_LABELS, LOSSES, NOISE_VARS, TABLE1
from bpdip.report.cells import FLAGS, CellResult, Issue, has_value
from bpdip.report.sources import seed_label
from bpdip.report.stats import METHOD

LATEX_MARKERS = {"∅": r"\emptyset", "‖": r"\|", "*": "*", "°": r"\circ", "†": r"\dagger", "‡": r"\ddagger",
                 "§": r"\S", "¶": r"\P"}
GRID_COLUMNS = [(k, v) for k in KERNELS for v in NOISE_VARS]  # the paper's column order


def fmt(x, digits: int, sign: bool = False) -> str:
    if x is None or x is pd.NA or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def column_label(kernel: str, var: float) -> str:
    return f"{KERNEL_LABELS[kernel]} σ=√{var:g}"


def grid_cells(cells: list[CellResult]) -> tuple[dict, list[CellResult]]:
    """(loss, kernel, var) -> cell for the paper's grid, and the cells outside it."""
    grid, other = {}, []
    for c in cells:
        key = (c.cell.loss, c.cell.kernel, c.cell.noise_var)
        if c.cell.task == "deblur" and c.cell.loss in LOSSES and c.cell.kernel in KERNELS \
                and c.cell.noise_var in NOISE_VARS:
            grid[key] = c
        else:
            other.append(c)
    return grid, other


def column_best(psnr: dict) -> dict:
    """(kernel, var) -> the highest PSNR of the column; ``psnr``: (loss, kernel, var) -> PSNR."""
    best: dict = {}
    for (_, kernel, var), x in psnr.items():
        best[(kernel, var)] = max(best.get((kernel, var), x), x)
    return best


def value_text(c: CellResult, which: str = "peak") -> str:
    """``PSNR / SSIM`` or ``PSNR ± s.d. / SSIM`` (plain text, no markers)."""
    values = getattr(c, which)
    std = c.psnr_std if which == "peak" else c.final_psnr_std
    spread = f" ± {std:.2f}" if std is not None else ""
    return f"{values['psnr']:.2f}{spread} / {values['ssim_dr2']:.3f}"


def empty_text(c: CellResult | None) -> str:
    """What a cell without a value says: missing, conflict or no complete image."""
    if c is None:
        return "–"
    if c.no_truth:
        return "no ground truth (see Stopping rules)"
    return c.status if c.status in ("missing", "conflict") else "no complete image"


def iteration_text(c: CellResult) -> str:
    """The peak iteration of each seed with a value; '(last logged)' where that is the
    last common iteration (the curve may still be rising)."""
    return ", ".join(f"{r.peak['iteration']}{' (last logged)' if r.peak_at_end else ''}" for r in c.valued_seeds)


def images_text(c: CellResult) -> str:
    """Images averaged / expected: one number, or one per seed where they differ."""
    counts = [len(r.used) for r in c.valued_seeds]
    return f"{counts[0] if len(set(counts)) == 1 else ','.join(map(str, counts))}/{len(c.expected)}"


# ----------------------------------------------------------------------------- Markdown

def md_table(header: list[str], rows: list[list[str]], align: str | None = None) -> str:
    def line(cells) -> str:
        return "| " + " | ".join(str(s).replace("|", "\\|").replace("\n", " ") for s in cells) + " |"
    sep = [{"l": ":--", "c": ":-:", "r": "--:"}[a] for a in align or "l" + "c" * (len(header) - 1)]
    return "\n".join([line(header), line(sep), *map(line, rows)])


def md_markers(markers: str) -> str:
    """Markers as Markdown text ('*' escaped so that it is not emphasis)."""
    return markers.replace("*", "\\*")


def md_intro(report) -> str:
    parts = ["Values: **PSNR [dB] / SSIM** averaged over the images (SSIM with data_range 2, as the paper's old "
             "scikit-image; SSIM₁: data_range 1). With several seeds: the mean over the seeds ± the standard "
             "deviation of the PSNR over the seeds (each seed's value is the peak of its own average curve). "
             "Markers after a value flag incomplete data (listed at the end); the value stays visible."]
    if any(c.deviations for c in report.cells):
        parts += ["", "**These runs depart from the paper's protocol** (see Runs below): their numbers are not "
                  "expected to match the paper's."]
    return "\n".join(parts)


def seed_values_text(c: CellResult) -> str:
    out = []
    for r in c.seeds.values():
        if r.peak is None:
            out.append(f"{seed_label(r.seed)}: {'no ground truth' if c.no_truth else 'no complete image'}")
        else:
            short = f" ({len(r.used)}/{len(c.expected)} images)" if len(r.used) < len(c.expected) else ""
            out.append(f"{seed_label(r.seed)}: {r.peak['psnr']:.2f}{short}")
    return "; ".join(out)


def seeds_table(report) -> Table:
    rows = []
    for c in report.cells:
        if not c.sources:
            continue
        flags = Alt(md_markers(c.markers), None)
        if c.conflict is not None:
            rows.append([str(c.cell), Alt("conflict", f"conflict{tex_markers(c.markers)}"), "–", "–", "–", flags])
            continue
        mean, n = c.peak["psnr"] if c.peak else None, c.n_seeds
        spread = fmt(c.psnr_std, 2) if c.psnr_std is not None else f"unknown ({n} seed{'s' * (n != 1)})"
        n_text = str(n) + (f" of {len(c.expected_seeds)}" if n < len(c.expected_seeds) else "")
        rows.append([str(c.cell), Alt(seed_values_text(c), tex_escape(seed_values_text(c)) + tex_markers(c.markers)),
                     Alt(fmt(mean, 2), tex_num(mean, 2)), spread, n_text, flags])
    seeds = sorted({seed_label(s) for c in report.cells for s in c.expected_seeds})
    return Table([Alt("setting", "Setting"), Alt("Table I PSNR per seed [dB]", "Per seed"), Alt("mean", "Mean"),
                  Alt("s.d.", "S.d."), Alt("seeds", "Seeds"), Alt("flags", None)], rows, "lllrll",
                 "Each seed's Table I PSNR (the peak of that seed's average curve), their mean and sample standard "
                 "deviation (ddof 1; unknown with one seed) and the number of seeds with a value. Seeds in this "
                 f"report: {', '.join(seeds) or '–'}.", "tab:seeds", spec="lllrl", title="Seeds", empty="No records.")


def label(loss) -> str:
    return LOSS_LABELS.get(loss, str(loss)) if isinstance(loss, str) else "–"


def winners_table(report) -> Table:
    rows = []
    for r in report.comparisons.itertuples():
        pair = paper = "–"  # a column without a best loss, or without the paper's winner
        if isinstance(r.best, str):
            pair = f"{label(r.best)} {r.best_psnr:.2f}, {label(r.second)} {r.second_psnr:.2f}"
        if isinstance(r.paper_winner, str):
            paper = f"{label(r.paper_winner)} (+{r.paper_margin:.2f} over the next)"
        if pd.isna(r.ci_low):
            diff = fmt(r.mean_diff, 2, True)
        else:
            diff = f"{r.mean_diff:+.2f} [{r.ci_low:+.2f}, {r.ci_high:+.2f}]"
        if r.verdict == "significant":
            verdict = f"{label(r.winner)}, significant"
        elif r.verdict == "tied":
            verdict = f"tied ({label(r.best)} ≈ {label(r.second)})"
        else:
            verdict = "not enough data"
        rows.append([column_label(r.kernel, r.noise_var), pair, diff,
                     str(r.n_pairs) if not pd.isna(r.n_pairs) else "0", fmt(r.p_value, 3), verdict, paper,
                     r.agrees if isinstance(r.agrees, str) else "–", r.note if isinstance(r.note, str) else ""])
    return Table(["column", "A, B (mean PSNR)", "A − B [95 % CI]", "pairs", "p", "ours", "paper's winner", "agrees",
                  "note"], rows, "lllrrllll",
                 "Per column, the two losses with the highest mean PSNR (A, then B) and their difference A − B [dB] "
                 f"with its 95 % interval. Method: {METHOD}", "tab:winners", title="Column winners")


ORDERING_MARK = {"holds": "✓", "reversed": "✗", "tied": "≈", "not enough data": "?"}


def orderings_table(report) -> Table | None:
    frame = report.orderings
    if frame.empty or (frame["outcome"] == "not enough data").all():
        return None
    cells = {(r.a, r.b, r.kernel, r.noise_var): r for r in frame.itertuples()}
    rows = []
    # each pair of losses once, first the loss earlier in the paper's row order; the pairs
    # sorted by their second loss, then their first
    pairs = {tuple(sorted(p, key=LOSSES.index)) for p in zip(frame["a"], frame["b"])}

    def pair_order(pair):
        first, second = pair
        return LOSSES.index(second), LOSSES.index(first)

    for first, second in sorted(pairs, key=pair_order):
        row = [f"{label(first)} vs {label(second)}"]
        for kernel, var in GRID_COLUMNS:
            r = cells.get((first, second, kernel, var)) or cells.get((second, first, kernel, var))
            row.append("–" if r is None else
                       f"{label(r.a)} +{r.paper_diff:.2f} / {fmt(r.ours_diff, 2, True)} {ORDERING_MARK[r.outcome]}")
        rows.append(row)
    counts = frame["outcome"].value_counts()
    summary = ", ".join(f"{counts.get(k, 0)} {k}" for k in ("holds", "tied", "reversed", "not enough data")
                        if counts.get(k, 0))
    header = ["pair", *[column_label(k, v) for k, v in GRID_COLUMNS]]
    return Table(header, rows, title="The paper's orderings", caption=(
        "Every ordering of two losses in the paper's Table I, tested on our records as the column winners are (same "
        "paired t-interval): each cell names the loss the paper puts above, the paper's margin, our mean difference "
        "in the same direction, and ✓ holds (our interval above 0), ≈ tied (it contains 0), ✗ reversed (below 0), ? "
        f"not enough data. Over the grid: {summary}."))


def other_value(c: CellResult, which: str) -> Value:
    """One setting outside the grid, on one line."""
    if not has_value(c, which):
        return empty_value(c)
    extra = f" @{iteration_text(c)}" if which == "peak" else ""
    return Value((f"{value_text(c, which)}{extra} · SSIM₁ {fmt(getattr(c, which)['ssim'], 3)} · n={images_text(c)}",),
             c.markers)


def other_table(report) -> Table | None:
    _, other = grid_cells(report.cells)
    if not other:
        return None
    rows = [[str(c.cell), other_value(c, "peak"), other_value(c, "final")] for c in other]
    return Table(["setting", "peak", "final"], rows, title="Settings outside the paper's grid")


def commit_text(run: dict) -> str:
    """A record's git commit as the runs tables write it: 10 digits, '+dirty' where its
    tracked files differed, '–' where the record does not say."""
    return str(run.get("git_commit") or "–")[:10] + ("+dirty" if run.get("git_dirty") else "")


def runs_table(report) -> Table:
    """One row per setting with records: where they come from and how they depart from
    the paper's protocol (so that a demo's numbers are read as a demo's)."""
    rows = []
    for c in report.cells:
        if not c.sources:
            continue
        commit = commit_text(c.run)
        device = str(c.run.get("device") or "–")
        if c.run.get("engine"):
            device += f", {c.run['engine']}"
        if c.config_hash:
            chash = c.config_hash
        elif c.conflict:
            chash = "conflict"
        else:  # one hash per seed
            chash = ", ".join(f"{seed_label(r.seed)}: {r.config_hash}" for r in c.seeds.values()) or "–"
        rows.append([str(c.cell), chash, str(len(c.sources)), commit, device, "; ".join(c.deviations) or "none"])
    return Table(["setting", "config hash", "records", "git commit", "device, engine",
                  "departures from the paper's protocol"], rows, "llllll", title="Runs", empty="No records.")


def per_image_table(report) -> Table:
    rows = []
    for r in report.image_spread.itertuples():
        if r.n_seeds == 1:
            in_mean = "yes" if r.n_seeds_in_mean else "NO"
        else:
            in_mean = f"{r.n_seeds_in_mean}/{r.n_seeds} seeds" + ("" if r.n_seeds_in_mean == r.n_seeds else " (NO)")
        spread = fmt(r.peak_psnr_std, 2) if not pd.isna(r.peak_psnr_std) else "unknown"
        rows.append([r.method, r.kernel, f"{r.noise_var:g}", r.image, r.statuses.replace(";", ", "), in_mean,
                     fmt(r.peak_psnr_mean, 2), spread, r.peak_iterations.replace(";", ", ") or "–",
                     fmt(r.peak_ssim_dr2_mean, 3), fmt(r.peak_ssim_mean, 3), fmt(r.final_psnr_mean, 2),
                     fmt(r.final_ssim_dr2_mean, 3), fmt(r.final_ssim_mean, 3), r.iterations.replace(";", ", ") or "–",
                     r.notes])
    return Table(["method", "kernel", "σ²", "image", "status", "in mean", "peak PSNR", "seed spread", "@it",
                  "peak SSIM (dr2)", "peak SSIM₁", "final PSNR", "final SSIM (dr2)", "final SSIM₁", "iterations",
                  "note"], rows, "llllll" + "r" * 9 + "l",
                 "Each image's own peak (its best logged iteration) and final values; with several seeds the mean "
                 "over the seeds in which the image is complete, and the seed spread: the standard deviation of the "
                 "image's peak PSNR over those seeds (unknown with one). Per-seed rows: `per_image.csv`.",
                 "tab:per-image", title="Per image", empty="No image records.")


def issue_lines(issues: list[Issue], marker=md_markers, code=lambda s: f"`{s}`", other: str = "·",
                text=str) -> list[str]:
    """Issues grouped for reading: missing settings on one line, the rest one per line.
    ``marker``, ``code`` and ``text`` format a marker, an image name and the words for the
    output language."""
    lines = []
    missing = [i for i in issues if i.kind == "missing"]
    if missing:
        lines.append(f"{marker(FLAGS['missing'][0])} "
                     + text(f"missing settings ({len(missing)}): " + ", ".join(str(i.cell) for i in missing)))
    for i in issues:
        if i.kind == "missing":
            continue
        mark = marker(FLAGS[i.kind][0]) if i.kind in FLAGS else other
        where = (str(i.cell) if i.cell else "record") + (f" seed {seed_label(i.seed)}" if i.seed is not None else "")
        image = text(" image ") + code(i.image) if i.image else ""
        src = f" ({i.source})" if i.source else ""
        lines.append(f"{mark} {text(f'{i.kind}: {where}')}{image}{text(f': {i.detail}{src}')}")
    return lines


def md_issues(report) -> str:
    parts = ["## Incomplete data", "",
             "Markers: " + "; ".join(f"{md_markers(m)} {text}" for m, text in FLAGS.values()) + ".", ""]
    lines = issue_lines(report.issues)
    parts += [f"- {line}" for line in lines] if lines else ["None: every setting is complete over the same images."]
    return "\n".join(parts)


# ----------------------------------------------------------------------------- LaTeX

TEX_CHARS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
             "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$", "−": "$-$",
             "≈": r"$\approx$", "σ": r"$\sigma$", "√": r"$\surd$", "°": r"$^{\circ}$", "·": r"$\cdot$", "–": "--",
             "₁": r"$_1$", "²": r"$^2$", "∅": r"$\emptyset$", "‖": r"$\|$", "†": r"$\dagger$", "‡": r"$\ddagger$",
             "§": r"\S{}", "¶": r"\P{}", "×": r"$\times$", "←": r"$\leftarrow$"}


def tex_escape(s) -> str:
    text = "".join(TEX_CHARS.get(ch, ch) for ch in str(s))
    return text.replace("x\u0304", r"$\bar{x}$")  # x̄ (a combining macron)


def tex_markers(markers: str) -> str:
    return "".join(f"$^{{{LATEX_MARKERS[m]}}}$" for m in markers)


def tex_num(x, digits, sign=False) -> str:
    text = fmt(x, digits, sign)
    return "--" if text == "–" else f"${text}$"


def tex_notes(report) -> list[str]:
    """The LaTeX footnotes of Table I and the final table: the flags, departures and issues."""
    used = {f for c in report.cells for f in c.flags}
    notes = ["PSNR [dB] / SSIM (data\\_range 2, as the paper's); $\\pm$: standard deviation over the seeds."]
    notes += [f"{tex_markers(marker)} {tex_escape(text)}." for f, (marker, text) in FLAGS.items() if f in used]
    departures = sorted({d for c in report.cells for d in c.deviations})
    if departures:
        notes.append("Departures from the paper's protocol: " + "; ".join(tex_escape(d) for d in departures) + ".")
    lines = issue_lines([i for i in report.issues if i.kind != "missing"], marker=tex_markers, code=tex_escape,
                        other="-", text=tex_escape)
    n_missing = sum(i.kind == "missing" for i in report.issues)
    if n_missing:
        lines.insert(0, f"{n_missing} settings have no record")
    if lines:
        notes.append("Incomplete data: " + "; ".join(lines) + ".")
    return notes


# ----------------------------------------------------------------------------- the grid tables

class Num(NamedTuple):
    """A number in a cell: Markdown writes it as text, LaTeX a signed one in math mode."""

    x: float | None
    digits: int
    sign: bool = False


class Bold(str):
    """Bold text in a cell."""


class Alt(NamedTuple):
    """Text written differently in the two languages (a header that is None in one: a
    column only the other shows)."""

    md: str | None
    tex: str | None


BREAK = "\x02"  # LaTeX: the rest of the cell on a second line (a \shortstack); Markdown: a space


@dataclass(frozen=True)
class Value:
    """One cell of a grid table in both languages: plain-text parts (str, :class:`Bold`,
    :class:`Num`, :data:`BREAK`) and the setting's markers of incomplete data."""

    parts: tuple
    markers: str = ""

    def markdown(self) -> str:
        text = "".join(md_text(p) for p in self.parts)
        return f"{text} {md_markers(self.markers)}" if self.markers else text

    def latex(self) -> str:
        text = "".join(tex_text(p) for p in self.parts)
        return (f"\\shortstack{{{text}}}" if BREAK in self.parts else text) + tex_markers(self.markers)


def md_text(x) -> str:
    """A table cell (plain text, :class:`Alt` or :class:`Value`) or a part of a :class:`Value` as Markdown."""
    if isinstance(x, Value):
        return x.markdown()
    if isinstance(x, Alt):
        return x.md
    if isinstance(x, Bold):
        return f"**{x}**"
    if isinstance(x, Num):
        return fmt(x.x, x.digits, x.sign)
    if x == BREAK:
        return " "
    return x


def tex_text(x) -> str:
    """:func:`md_text` in LaTeX."""
    if isinstance(x, Value):
        return x.latex()
    if isinstance(x, Alt):
        return x.tex
    if isinstance(x, Bold):
        return f"\\textbf{{{tex_escape(x)}}}"
    if isinstance(x, Num):
        return tex_num(x.x, x.digits, x.sign) if x.sign else fmt(x.x, x.digits)
    if x == BREAK:
        return "\\\\"
    return tex_escape(x)


def empty_value(c: CellResult | None) -> Value:
    """A setting without a value: why (missing, conflict, no complete image), with its markers."""
    return Value((empty_text(c),), c.markers if c is not None else "")


def bold_if(text: str, bold: bool) -> str:
    """``text`` as :class:`Bold` (bold) where ``bold``: a column's best."""
    return Bold(text) if bold else text


@dataclass(frozen=True)
class Grid:
    """A section laid out as the paper's Table I (rows the losses, columns kernel x noise):
    its title, ONE caption for both languages (Markdown: ``**bold**`` and ``code``), and
    ``cells(report)``, a function (loss, kernel, var) -> :class:`Value`; :meth:`table` makes it
    a :class:`Table`. ``notes``: LaTeX's footnotes of the flags and issues (Table I and the
    final table)."""

    title: str
    caption: str | Callable  # or (report) -> the caption
    cells: Callable
    label: str
    notes: bool = False
    comment: str = "% needs \\usepackage{booktabs}; generated by bpdip.report, do not edit by hand"
    after: Callable | None = None  # (report) -> a Markdown paragraph under the table, or ""
    when: Callable = lambda report: True

    def table(self, report) -> Table:
        """The grid as a :class:`Table`: a row per loss, a column per (kernel, noise)."""
        text = self.cells(report)
        return Table(["", *(column_label(k, v) for k, v in GRID_COLUMNS)],
                     [[LOSS_LABELS[loss], *(text(loss, k, v) for k, v in GRID_COLUMNS)] for loss in LOSSES],
                     caption=self.caption(report) if callable(self.caption) else self.caption, title=self.title)

    def markdown(self, report) -> str:
        if not self.when(report):
            return ""
        return "\n".join([self.table(report).section(), *(["", self.after(report)] if self.after else [])])

    def tex(self, report) -> str:
        """A table* with the paper's two-line header: the kernels over their three noise levels."""
        if not self.when(report):
            return ""
        table = self.table(report)
        if self.after:
            notes = [tex_caption(self.after(report))]
        elif self.notes:
            notes = tex_notes(report)
        else:
            notes = []
        return "\n".join([
            self.comment, "\\begin{table*}[t]", "\\centering", "\\scriptsize", "\\setlength{\\tabcolsep}{3pt}",
            f"\\caption{{{tex_caption(f'{self.title}: {table.caption}')}}}", f"\\label{{{self.label}}}",
            "\\begin{tabular}{l" + "c" * len(GRID_COLUMNS) + "}", "\\toprule",
            " & " + " & ".join(f"\\multicolumn{{3}}{{c}}{{{KERNEL_LABELS[k]} kernel}}" for k in KERNELS) + " \\\\",
            "".join(f"\\cmidrule(lr){{{2 + 3 * i}-{4 + 3 * i}}}" for i in range(len(KERNELS))),
            " & " + " & ".join(f"$\\sigma=\\sqrt{{{v:g}}}$" for _, v in GRID_COLUMNS) + " \\\\", "\\midrule",
            *table.tex_rows(), "\\bottomrule", "\\end{tabular}",
            *(["\\par\\smallskip\\parbox{\\linewidth}{\\footnotesize", *notes, "}"] if notes else []),
            "\\end{table*}", ""])


@dataclass(frozen=True)
class Table:
    """A table in both languages, built once: header (plain text; :class:`Alt` where the
    languages differ), rows of cells (plain text or :class:`Value`), Markdown's alignment,
    ONE caption (Markdown: the paragraph above the table), and LaTeX's longtable column
    spec and label. ``markdown()`` and ``latex()`` are its two writers."""

    header: list
    rows: list
    align: str | None = None  # default: the first column left, the others centred
    caption: str = ""
    label: str = ""
    spec: str | None = None  # LaTeX's columns (default: ``align``)
    title: str = ""  # the Markdown section's heading
    empty: str = ""  # the Markdown section's text without rows

    def _columns(self, lang: str) -> list[int]:
        """The columns this language shows (an :class:`Alt` header that is None in it: none)."""
        return [i for i, h in enumerate(self.header) if not (isinstance(h, Alt) and getattr(h, lang) is None)]

    def markdown(self) -> str:
        keep = self._columns("md")
        return md_table([md_text(self.header[i]) for i in keep],
                        [[md_text(row[i]) for i in keep] for row in self.rows], self.align)

    def section(self) -> str:
        """The Markdown section: heading, caption, the table (or ``empty`` without rows)."""
        body = self.markdown() if self.rows or not self.empty else self.empty
        return "\n".join([f"## {self.title}", "", *([self.caption, ""] if self.caption else []), body])

    def tex_rows(self, rows=None) -> list[str]:
        """LaTeX's lines of ``rows`` (default: the table's rows)."""
        keep = self._columns("tex")
        return [" & ".join(tex_text(row[i]) for i in keep) + " \\\\" for row in (self.rows if rows is None else rows)]

    def latex(self) -> str:
        label = f"\\label{{{self.label}}}" if self.label else ""
        return "\n".join(["% needs \\usepackage{booktabs,longtable}; generated by bpdip.report",
                          f"\\begin{{longtable}}{{{self.spec or self.align}}}",
                          f"\\caption{{{tex_caption(self.caption)}}}{label}\\\\", "\\toprule",
                          *self.tex_rows([self.header]), "\\midrule", "\\endhead", "\\bottomrule", "\\endfoot",
                          *self.tex_rows(), "\\end{longtable}", ""])


def tex_caption(text: str) -> str:
    """A Markdown caption as LaTeX: escaped, ``**bold**`` and ``code`` kept."""
    parts = re.split(r"(\*\*[^*]+\*\*|`[^`]+`)", text)
    return "".join(f"\\textbf{{{tex_escape(p[2:-2])}}}" if p.startswith("**") else
                   f"\\texttt{{{tex_escape(p[1:-1])}}}" if p.startswith("`") else tex_escape(p) for p in parts)


def cell_values(value, which: str = "peak"):
    """``cells(report)`` over the report's grid: ``value(c, bold)`` for a setting with a
    value (bold: the column's best PSNR), else why not."""
    def cells(report):
        grid = report.grid
        best = column_best({key: getattr(c, which)["psnr"] for key, c in grid.items() if has_value(c, which)})

        def text(loss, kernel, var):
            c = grid.get((loss, kernel, var))
            if not has_value(c, which):
                return empty_value(c)
            return Value(value(c, getattr(c, which)["psnr"] == best.get((kernel, var))), c.markers)
        return text
    return cells


def _paper_cells(report):
    best = column_best({key: psnr for key, (psnr, _) in TABLE1.items()})

    def text(loss, kernel, var):
        psnr, ssim = TABLE1[(loss, kernel, var)]
        return Value((bold_if(f"{psnr:.2f} / {ssim:.2f}", psnr == best[(kernel, var)]),))
    return text


TABLE1_GRID = Grid(
    "Table I: peak of the average PSNR curve",
    "Ours, as the paper prints it: the peak of the PSNR curve averaged over the images at equal iterations "
    "(PROTOCOL: the best common iteration, chosen with ground truth), SSIM at that iteration; **bold**: the "
    "highest PSNR of the column. Iterations, SSIM₁ and the number of images are in their own table below.",
    cell_values(lambda c, bold: (bold_if(value_text(c), bold),)), "tab:table1", notes=True)
PAPER_GRID = Grid(
    "The paper's Table I",
    "Zukerman, Tirer, Giryes (2020), Table I: PSNR [dB] / SSIM over Set14; **bold**: the best of the column.",
    _paper_cells, "tab:table1-paper", comment="% the paper's Table I")
DIFFERENCES_GRID = Grid(
    "Differences: ours − paper",
    "PSNR [dB] / SSIM (data_range 2) of Table I above minus the paper's; the PSNR difference is also drawn in "
    "`table1_diff.png`.",
    cell_values(lambda c, _: (Num(c.peak["psnr"] - c.paper[0], 2, True), " / ",
                              Num(c.peak["ssim_dr2"] - c.paper[1], 3, True))),
    "tab:table1-diff", comment="% differences: ours - paper")
ITERATIONS_GRID = Grid(
    "Iterations, SSIM₁ and images",
    "@ = the iteration of the peak (one per seed); SSIM₁ (data_range 1) there; n = images averaged / expected (one "
    "per seed where they differ). '(last logged)': the peak is the last common iteration, so the curve may still "
    "be rising.",
    cell_values(lambda c, _: (Alt(f"@{iteration_text(c)} · {fmt(c.peak['ssim'], 3)} · n={images_text(c)}",
                                ", ".join(f"{r.peak['iteration']}{'$^{e}$' if r.peak_at_end else ''}"
                                          for r in c.valued_seeds) + f"; {c.peak['ssim']:.3f}; {images_text(c)}"),)),
    "tab:table1-iterations", comment="% iterations, SSIM_1 and images")
FINAL_GRID = Grid(
    "Final iteration",
    "Mean over the images of the final image (unperturbed input, after the last step): PSNR [dB] / SSIM (± over "
    "seeds), in brackets the PSNR difference from the paper's Table I; **bold**: the highest final PSNR of the "
    "column.",
    cell_values(lambda c, bold: (bold_if(value_text(c, "final"), bold),
                                 *((" (", Num(c.final["psnr"] - c.paper[0], 2, True), ")") if c.paper else ())),
                "final"), "tab:table1-final", notes=True)
