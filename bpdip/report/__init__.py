"""Reports: the paper's Table I and Fig. 1 rebuilt from run records (docs/reports.md)."""

from bpdip.report.build import SECTIONS, Report, Section, build_report, write_report
from bpdip.curves import mean_curve, peak_of
from bpdip.report.cells import FLAGS, CellResult, Issue, SeedResult, build_cells
from bpdip.report.sources import Cell, ImageRun, Job, load_local

__all__ = ["FLAGS", "SECTIONS", "Cell", "CellResult", "ImageRun", "Issue", "Job", "Report", "Section", "SeedResult",
           "build_cells", "build_report", "load_local", "mean_curve", "peak_of", "write_report"]
