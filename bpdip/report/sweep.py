"""A Hydra callback: a ``-m`` sweep ends with its report (Table I, Fig. 1, the tables of
``bpdip.report``) in ``<sweep dir>/report``, so one command regenerates the paper's table.

On by default (``conf/config.yaml``, ``hydra.callbacks.report``); ``~hydra.callbacks.report``
turns it off. With a launcher (SLURM, joblib) it runs on the launching machine once every
job has returned. A failing report never fails the sweep: the jobs' records are there, and
the warning says how to build the report by hand.
"""

from __future__ import annotations

import logging
from pathlib import Path

from hydra.experimental.callback import Callback

log = logging.getLogger("bpdip")


class ReportAtSweepEnd(Callback):
    def __init__(self, subdir: str = "report", images: str | None = None, figure: bool = True):
        self.subdir, self.images, self.figure = subdir, images, figure

    def on_multirun_end(self, config, **kwargs) -> None:
        sweep = Path(str(config.hydra.sweep.dir))
        argv = [str(sweep), "--out", str(sweep / self.subdir)]
        argv += ["--images", str(self.images)] if self.images else []
        argv += [] if self.figure else ["--no-figure"]
        try:
            from bpdip.report.cli import main as report

            if report(argv) != 0:
                raise RuntimeError("the report command exited with an error")
        except Exception as exc:  # the sweep's records stand; only the summary is missing
            log.warning("the sweep's report failed (%s: %s); build it with: python -m bpdip.report %s",
                        type(exc).__name__, exc, " ".join(argv))
