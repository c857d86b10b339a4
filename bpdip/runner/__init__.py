"""The Hydra runner behind ``run.py``: one job = one cell (kernel, noise, loss) over its
images, or the demo. See conf/ for the configuration and bpdip.store for reuse/resume."""

from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import DictConfig

from bpdip.runner.cell import degraded, run_cell, train_image
from bpdip.runner.plan import CellPlan, UserError, cell_name, plan_cell


__all__ = ["CellPlan", "UserError", "cell_name", "degraded", "main", "plan_cell", "run_cell", "train_image"]


def _hydra_job() -> tuple[Path, int, bool]:
    """(output dir, job number, whether a sweep config was started without -m)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hc = HydraConfig.get()
    sweep_in_run = hc.mode == RunMode.RUN and bool(hc.sweeper.get("params"))
    num = hc.job.get("num", 0) if hc.mode == RunMode.MULTIRUN else 0
    return Path(hc.runtime.output_dir), int(num or 0), sweep_in_run


def main(cfg: DictConfig):
    """The task function of run.py. Config and data problems end the process with one
    line on stderr (exit code 2) before any training starts."""
    try:
        out_dir, job_num, sweep_in_run = _hydra_job()
        if sweep_in_run:
            raise UserError("this config is a sweep (hydra.sweeper.params): add -m, "
                            "e.g. python run.py -m experiment=table1")
        if cfg.get("demo") is not None:
            from bpdip.runner.demo import run_demo

            return run_demo(cfg, out_dir)
        return run_cell(cfg, out_dir, job_num=job_num)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
