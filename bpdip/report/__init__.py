"""Reports: the paper's Table I and Fig. 1 rebuilt from run records, beside the paper's numbers.

Modules: ``sources`` (read records into Jobs), ``wandb_source`` (W&B runs into the same
Jobs), ``cells`` (merge, average, peak, flags), ``tables`` (DataFrames), ``render``
(Markdown, LaTeX), ``figure`` (Fig. 1), ``build`` (assemble and write), ``cli``.
"""

from bpdip.report.build import Report, build_report, write_report
from bpdip.report.cells import FLAGS, CellResult, Issue, build_cells, mean_curve, peak_of
from bpdip.report.sources import Cell, ImageRun, Job, load_local

__all__ = ["FLAGS", "Cell", "CellResult", "ImageRun", "Issue", "Job", "Report", "build_cells", "build_report",
           "load_local", "mean_curve", "peak_of", "write_report"]
