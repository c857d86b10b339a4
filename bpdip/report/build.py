"""Assemble a report from jobs and write all its files into one directory."""

from __future__ import annotations

import datetime as _dt
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bpdip.paper import canonical_noise
from bpdip.records import atomic_write_text
from bpdip.report import render
from bpdip.report.cells import CellResult, Issue, build_cells
from bpdip.report.sources import Cell, Job
from bpdip.report.tables import final_table, issues_table, peak_table, per_image_table

OUTPUT_FILES = ("report.md", "table1.csv", "table1_final.csv", "per_image.csv", "issues.csv", "mean_curves.csv",
                "table1.tex", "table1_final.tex", "per_image.tex", "fig1.png", "fig1.pdf")


@dataclass
class Report:
    cells: list[CellResult]
    issues: list[Issue]
    jobs: list[Job]
    inputs: list[str] = field(default_factory=list)
    title: str = "BP-DIP reproduction: Table I and Fig. 1 from run records"
    created: str = ""

    def cell(self, loss: str, kernel: str, noise_var) -> CellResult:
        """The result of one setting, e.g. ``report.cell("bp", "uniform", 0.3)``."""
        key = Cell(kernel, canonical_noise(noise_var), loss)
        for c in self.cells:
            if c.cell == key:
                return c
        raise KeyError(f"no setting {key} in this report")

    @property
    def peak(self) -> pd.DataFrame:
        return peak_table(self.cells)

    @property
    def final(self) -> pd.DataFrame:
        return final_table(self.cells)

    @property
    def per_image(self) -> pd.DataFrame:
        return per_image_table(self.cells)

    def mean_curves(self) -> pd.DataFrame:
        frames = []
        for c in self.cells:
            if c.mean_curve is not None and len(c.mean_curve):
                f = c.mean_curve.copy()
                f.insert(0, "n_images", len(c.used))
                for i, (k, v) in enumerate([("loss", c.cell.loss), ("kernel", c.cell.kernel),
                                            ("noise_var", c.cell.noise_var)]):
                    f.insert(i, k, v)
                frames.append(f)
        cols = ["loss", "kernel", "noise_var", "n_images", "iteration", "psnr", "ssim", "ssim_dr2"]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=cols)

    def header_lines(self) -> list[str]:
        def values(key):
            return sorted({str(j.run.get(key)) for j in self.jobs if j.run.get(key) is not None})

        readable = [j for j in self.jobs if j.error is None]
        counts = render.group_counts([c for c in self.cells])
        return [
            f"- built {self.created} by `bpdip.report` at code commit {code_commit()}",
            f"- inputs: {', '.join(f'`{i}`' for i in self.inputs) or '–'}",
            f"- records: {len(self.jobs)} jobs ({len(readable)} readable)",
            "- settings: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())),
            f"- record git commits: {', '.join(values('git_commit')) or '–'}; devices: "
            f"{', '.join(values('device')) or '–'}; engines: {', '.join(values('engine')) or '–'}; "
            f"torch: {', '.join(values('torch_version')) or '–'}",
            f"- iterations per run: {', '.join(values('iterations')) or '–'}; logged every: "
            f"{', '.join(values('log_every')) or '–'}",
        ]


def code_commit() -> str:
    """The git commit of this checkout (with a '+dirty' mark), or 'unknown' outside git."""
    root = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def build_report(jobs: list[Job], images: list[str] | None = None, inputs: list[str] | None = None) -> Report:
    cells, issues = build_cells(jobs, images)
    created = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    return Report(cells, issues, jobs, list(inputs or []), created=created)


def _csv(frame: pd.DataFrame) -> str:
    # full precision (shortest repr): the CSV numbers equal those in the records
    return frame.to_csv(index=False, lineterminator="\n")


def write_report(report: Report, out_dir, figure: bool = True) -> list[Path]:
    """Write every output file of the report into ``out_dir``; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    texts = {
        "report.md": render.markdown(report),
        "table1.csv": _csv(report.peak),
        "table1_final.csv": _csv(report.final),
        "per_image.csv": _csv(report.per_image),
        "issues.csv": _csv(issues_table(report.issues)),
        "mean_curves.csv": _csv(report.mean_curves()),
        "table1.tex": render.tex_grid(report, "peak", "Deblurring results (PSNR [dB] / SSIM averaged over the "
                                      "images) at the peak of the average PSNR curve, beside the paper's Table I.",
                                      "tab:table1"),
        "table1_final.tex": render.tex_grid(report, "final", "Final-iteration results (PSNR [dB] / SSIM "
                                            "averaged over the images), beside the paper's Table I.",
                                            "tab:table1-final"),
        "per_image.tex": render.tex_per_image(report.per_image),
    }
    paths = []
    for name, text in texts.items():
        atomic_write_text(out / name, text)
        paths.append(out / name)
    if figure:
        from bpdip.report.figure import save_figure1

        paths += save_figure1(report.cells, out / "fig1", title="Average PSNR vs iteration (cf. the paper's Fig. 1)")
    return paths
