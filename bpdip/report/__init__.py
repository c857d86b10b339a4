"""Reports: the paper's Table I and Fig. 1 rebuilt from run records, beside the paper's numbers.

Modules: ``sources`` (read records into Jobs), ``wandb_source`` (W&B runs into the same
Jobs), ``cells`` (merge, seeds, average, peak, flags), ``stats`` (mean ± s.d. over seeds,
paired t-intervals per column), ``tables`` (DataFrames), ``render`` (Markdown, LaTeX, one
function per section), ``figure`` (Fig. 1, heat map), ``visual`` (the restored-image
figures, Figs. 2-5), ``build`` (the list of sections, tables and figures; assemble and
write), ``cli``.
"""

from bpdip.report.build import SECTIONS, Report, Section, build_report, write_report
from bpdip.curves import mean_curve, peak_of
from bpdip.report.cells import FLAGS, CellResult, Issue, SeedResult, build_cells
from bpdip.report.sources import Cell, ImageRun, Job, load_local

__all__ = ["FLAGS", "SECTIONS", "Cell", "CellResult", "ImageRun", "Issue", "Job", "Report", "Section", "SeedResult",
           "build_cells", "build_report", "load_local", "mean_curve", "peak_of", "write_report"]
