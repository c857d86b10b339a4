"""A Hydra callback: a ``-m`` sweep ends with its report in ``<sweep dir>/report``
(``conf/config.yaml``'s ``hydra.callbacks.report``). A failing report never fails the sweep.
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
