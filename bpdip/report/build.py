"""Assemble a report and write its files: :data:`SECTIONS` (report.md and the .tex files, in
order), :data:`CSV_TABLES` and :data:`FIGURES`. A new part is one function and one line here.
"""

from __future__ import annotations

import datetime as _dt
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable

import pandas as pd

from bpdip.paper import canonical_noise
from bpdip.provenance import short_commit
from bpdip.records import atomic_write_text
from bpdip.report import baselines, render, sr, stopping, stream_stopping, streams, visual
from bpdip.report.cells import CellResult, Issue, build_cells
from bpdip.report.sources import Cell, Job, seed_label
from bpdip.report.stats import column_comparisons, paper_orderings
from bpdip.report.tables import (final_table, image_spread_table, issues_table, peak_table, per_image_table,
                                 seed_table)


@dataclass(frozen=True)
class Section:
    """One part of the report: its Markdown (a function of the report; "" leaves it out)
    and, optionally, its LaTeX and the .tex file that holds it."""

    name: str
    markdown: Callable
    tex: Callable | None = None
    tex_file: str | None = None

    @classmethod
    def of(cls, name: str, part, tex_file: str | None = None) -> Section:
        """The section of a render.Grid, or of a function (report) -> render.Table or None
        (None: no section), whose section() and latex() are the two writers; without
        ``tex_file``, Markdown only."""
        if isinstance(part, render.Grid):
            return cls(name, part.markdown, part.tex, tex_file)

        def markdown(report) -> str:
            table = part(report)
            return "" if table is None else table.section()

        def tex(report) -> str:
            table = part(report)
            return "" if table is None else table.latex()

        return cls(name, markdown, tex if tex_file else None, tex_file)


SECTIONS = [
    Section("intro", render.md_intro),
    Section.of("table1", render.TABLE1_GRID, "table1.tex"),
    Section.of("paper", render.PAPER_GRID, "table1.tex"),
    Section.of("differences", render.DIFFERENCES_GRID, "table1.tex"),
    Section.of("iterations", render.ITERATIONS_GRID, "table1.tex"),
    Section.of("seeds", render.seeds_table, "seeds.tex"),
    Section.of("winners", render.winners_table, "seeds.tex"),
    Section.of("orderings", render.orderings_table),
    Section.of("final", render.FINAL_GRID, "table1_final.tex"),
    # issue 20's other output streams: "" unless the records have them
    Section.of("table1_average", streams.AVERAGE_GRID, "table1_streams.tex"),
    Section.of("table1_clean", streams.CLEAN_GRID, "table1_streams.tex"),
    Section("stopping", stopping.md_stopping, stopping.tex_stopping, "stopping.tex"),
    Section("stopping_streams", stream_stopping.md_stopping_streams, stream_stopping.tex_stopping_streams,
            "stopping_streams.tex"),
    Section.of("baselines", baselines.baselines_table_text),
    Section.of("other", render.other_table),
    Section.of("runs", render.runs_table),
    Section.of("per_image", render.per_image_table, "per_image.tex"),
    Section("visual", visual.md_visual, visual.tex_visual, "visual.tex"),  # Figs. 2-5 (bpdip.report.visual)
    # super-resolution records (issue 14): "" unless the report has some
    Section("sr", sr.md_sr, sr.tex_sr, "sr.tex"),
    Section("issues", render.md_issues),
]

# file name -> the report's DataFrame it holds
CSV_TABLES: dict[str, Callable] = {
    "table1.csv": lambda r: r.peak,
    "table1_final.csv": lambda r: r.final,
    "per_image.csv": lambda r: r.per_image,
    "image_spread.csv": lambda r: r.image_spread,
    "seeds.csv": lambda r: r.seeds,
    "comparisons.csv": lambda r: r.comparisons,
    "orderings.csv": lambda r: r.orderings,
    "stopping.csv": lambda r: r.stopping,
    "baselines.csv": baselines.baselines_csv,  # None (no file) without baselines
    "issues.csv": lambda r: issues_table(r.issues),
    "mean_curves.csv": lambda r: r.mean_curves(),
    # None (no file) unless the records have the other output streams (issue 20)
    "table1_streams.csv": streams.streams_table,
    "stopping_streams.csv": lambda r: r.stopping_streams,
    # super-resolution's (bpdip.report.sr): none without SR records
    "sr.csv": lambda r: sr.sr_table(r) if r.sr_cells else None,
    "sr_per_image.csv": lambda r: sr.sr_per_image(r) if r.sr_cells else None,
}


def _fig1(report, stem):
    from bpdip.report.figure import figure1, save_figure

    return save_figure(figure1(report.cells, "Average PSNR vs iteration (cf. the paper's Fig. 1)"), stem)


def _heatmap(report, stem):
    from bpdip.report.figure import heatmap, save_figure

    return save_figure(heatmap(report.cells, "Table I: ours − paper, PSNR [dB] (blue: ours higher)"), stem)


FIGURES: dict[str, Callable] = {"fig1": _fig1, "table1_diff": _heatmap,  # stem -> writer (PNG and PDF)
                                 "fig1_stopping": stopping.save_stopping_figure,
                                 "visual": visual.save_visuals,  # one file per setting and image
                                 "sr_psnr_y": sr.save_sr_figure}  # none without SR records
# the sections, files and figures also in a report of SR records only (all others are about deblurring)
GENERAL = ("sr", "issues", "issues.csv", "sr.csv", "sr_per_image.csv", "sr_psnr_y")
TEX_DOCUMENT = "report.tex"  # a standalone document that inputs every .tex table


@dataclass
class Report:
    cells: list[CellResult]
    issues: list[Issue]
    jobs: list[Job]
    inputs: list[str] = field(default_factory=list)
    title: str = "BP-DIP reproduction: Table I and Fig. 1 from run records"
    created: str = ""
    sr_cells: list[CellResult] = field(default_factory=list)  # super-resolution settings (bpdip.report.sr)
    visual_settings: visual.VisualSettings = field(default_factory=visual.VisualSettings)  # Figs. 2-5: what to draw

    @property
    def every_cell(self) -> list[CellResult]:
        """The deblurring settings, then the super-resolution ones."""
        return [*self.cells, *self.sr_cells]

    @property
    def deblur(self) -> bool:
        """Whether the report has its deblurring part: always, unless every record is SR."""
        return bool(self.cells) or not self.sr_cells

    def has(self, part: str) -> bool:
        """Whether the report writes ``part`` (a section, file or figure name): every part,
        except in a report of SR records only, where only the :data:`GENERAL` ones."""
        return self.deblur or part in GENERAL

    def cell(self, loss: str, kernel: str, noise_var) -> CellResult:
        """The result of one setting, e.g. ``report.cell("bp", "uniform", 0.3)``."""
        key = Cell(kernel, canonical_noise(noise_var), loss)
        for c in self.cells:
            if c.cell == key:
                return c
        raise KeyError(f"no setting {key} in this report")

    # its tables (bpdip.report.tables, .stopping, .stats), each built once
    peak = cached_property(lambda self: peak_table(self.cells))
    final = cached_property(lambda self: final_table(self.cells))
    per_image = cached_property(lambda self: per_image_table(self.cells))
    image_spread = cached_property(lambda self: image_spread_table(self.per_image))
    seeds = cached_property(lambda self: seed_table(self.cells))
    stopping = cached_property(lambda self: stopping.stopping_table(self.cells))  # what each stopping rule chose
    # the same per output stream; None without the streams' choices
    stopping_streams = cached_property(lambda self: stream_stopping.stream_stopping_table(self))
    # the paper's grid: (loss, kernel, noise_var) -> the setting's result
    grid = cached_property(lambda self: render.grid_cells(self.cells)[0])
    comparisons = cached_property(lambda self: column_comparisons(self.grid, render.GRID_COLUMNS))
    # every ordering of two losses in the paper's Table I, tested on these records
    orderings = cached_property(lambda self: paper_orderings(self.grid, render.GRID_COLUMNS))
    # the restored-image figures (bpdip.report.visual) and notes on those not found
    visuals = cached_property(lambda self: visual.build_visuals(self))

    def mean_curves(self) -> pd.DataFrame:
        """Each seed's mean curve, one row per (setting, seed, iteration)."""
        frames = []
        for c in self.cells:
            for r in c.seeds.values():
                if r.mean_curve is not None and len(r.mean_curve):
                    setting = pd.DataFrame({"loss": c.cell.loss, "kernel": c.cell.kernel, "noise_var": c.cell.noise_var,
                                            "n_images": len(r.used)}, index=r.mean_curve.index)
                    frames.append(setting.join(r.mean_curve).assign(seed=seed_label(r.seed)))
        cols = ["loss", "kernel", "noise_var", "n_images", "iteration", "psnr", "ssim", "ssim_dr2", "seed"]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=cols)

    def settings_text(self) -> str:
        """The settings by status, e.g. '2 complete, 34 missing'."""
        return ", ".join(f"{n} {s}" for s, n in sorted(Counter(c.status for c in self.every_cell).items()))

    def header_lines(self) -> list[str]:
        def values(key) -> str:
            return ", ".join(sorted({str(j.run[key]) for j in self.jobs if j.run.get(key) is not None})) or "–"

        seeds = list(dict.fromkeys(s for c in self.every_cell for s in c.expected_seeds))
        return [
            f"- built {self.created} by `bpdip.report` at code commit {short_commit()}",
            f"- inputs: {', '.join(f'`{i}`' for i in self.inputs) or '–'}",
            f"- records: {len(self.jobs)} jobs ({sum(j.error is None for j in self.jobs)} readable)",
            f"- settings: {self.settings_text()}",
            f"- record git commits: {values('git_commit')}; devices: {values('device')}; engines: "
            f"{values('engine')}; torch: {values('torch_version')}",
            f"- iterations per run: {values('iterations')}; logged every: {values('log_every')}",
            f"- seeds: {', '.join(seed_label(s) for s in seeds) or '–'}",
        ]


def build_report(jobs: list[Job], images: list[str] | None = None, inputs: list[str] | None = None) -> Report:
    """Table I's cells from the deblurring records, the SR settings from the SR records
    (``run.cell.task``; bpdip.report.sr): built apart, never averaged together."""
    deblur_jobs, sr_jobs = sr.split_jobs(jobs)
    cells, issues = build_cells(deblur_jobs, images) if deblur_jobs or not sr_jobs else ([], [])
    sr_cells, sr_issues = sr.build_sr_cells(sr_jobs, images)
    created = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    report = Report(cells, issues + sr_issues, jobs, list(inputs or []), created=created, sr_cells=sr_cells)
    if not report.deblur:
        report.title = "BP-DIP reproduction: super-resolution from run records"
    return report


def _csv(frame: pd.DataFrame) -> str:
    # full precision (shortest repr): the CSV numbers equal those in the records
    return frame.to_csv(index=False, lineterminator="\n")


def markdown(report: Report) -> str:
    parts = [f"# {report.title}", "", *report.header_lines(), ""]
    for text in (s.markdown(report) for s in SECTIONS if report.has(s.name)):
        parts += [text, ""] if text else []
    return "\n".join(parts)


def tex_texts(report: Report) -> dict[str, str]:
    """.tex file name -> its text: the file's sections in SECTIONS order."""
    texts: dict[str, list[str]] = {}
    for s in SECTIONS:
        text = s.tex(report) if s.tex is not None and report.has(s.name) else ""
        if text:
            texts.setdefault(s.tex_file, []).append(text)
    return {name: "\n".join(parts) for name, parts in texts.items()}


def tex_document(names: list[str]) -> str:
    """A standalone LaTeX document with every table (``pdflatex report.tex``)."""
    inputs = [f"\\input{{{Path(n).stem}}}" for n in names]
    return "\n".join([
        "% generated by bpdip.report: pdflatex report.tex (needs booktabs, longtable, geometry)",
        "\\documentclass{article}", "\\usepackage[a4paper,landscape,margin=1.5cm]{geometry}",
        "\\usepackage{booktabs}", "\\usepackage{longtable}", "\\usepackage{graphicx}",
        "\\begin{document}", *inputs, "\\clearpage", "\\end{document}", ""])


def write_report(report: Report, out_dir, figure: bool = True) -> list[Path]:
    """Write every output file of the report into ``out_dir``; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    texts = {"report.md": markdown(report)}
    frames = {name: table(report) for name, table in CSV_TABLES.items() if report.has(name)}
    texts.update({name: _csv(frame) for name, frame in frames.items() if frame is not None})
    tex = tex_texts(report)
    if tex:
        texts.update(tex)
        texts[TEX_DOCUMENT] = tex_document(list(tex))
    paths = []
    for name, text in texts.items():
        atomic_write_text(out / name, text)
        paths.append(out / name)
    for stem, writer in FIGURES.items() if figure else ():
        if report.has(stem):
            paths += writer(report, out / stem)
    return paths
