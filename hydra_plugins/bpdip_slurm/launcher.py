"""hydra-submitit-launcher's SLURM launcher, with a sweep that survives a failed job.

The plugin's own launcher waits for the jobs in order and raises at the first one that
failed: the launching process ends with a long traceback while later jobs still run, and
the sweep's report (bpdip/report/sweep.py, a multirun-end callback) is never
written. This launcher submits the same job array (same sbatch file, same job-side code:
submitit checkpoints and requeues a job on USR2, and the job resumes from the results
store), but waits for every job. When some failed, it logs one line per failed job (its
one-line error: bpdip's ``error: ...`` line, the exception, or SLURM's reason, plus the
job's state and log file), runs the multirun-end callbacks so that the report of what did
finish is written, and then fails the sweep with a short message that lists the failed
jobs (exit status 1, no traceback).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Sequence

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra.errors import CompactHydraException
from omegaconf import OmegaConf

try:  # hydra-submitit-launcher is an extra (pip install -e ".[cluster]")
    from hydra_plugins.hydra_submitit_launcher import submitit_launcher as _plugin
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
except ImportError:  # pragma: no cover - then hydra/launcher=slurm is not available
    _plugin = None

log = logging.getLogger(__name__)


class SweepJobsFailed(CompactHydraException):
    """Some jobs of a sweep failed (Hydra prints the message alone, exit status 1)."""


_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b")


def one_line_error(stderr: str | None) -> str | None:
    """The line of a job's stderr that says why it failed: bpdip's ``error: ...`` line,
    else the last line of a Python traceback, else SLURM's ``*** ... ***`` line."""
    lines = [line.strip() for line in (stderr or "").splitlines() if line.strip()]
    for test in (lambda s: s.startswith("error: "), _EXCEPTION_LINE.match, lambda s: "***" in s):
        for line in reversed(lines):
            if test(line):
                return line
    return None


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


if _plugin is not None:

    class SlurmLauncher(_plugin.SlurmLauncher):
        """``hydra/launcher=slurm``: the plugin's SLURM launcher (same parameters, same
        sbatch file, same job side) that waits for every job and reports failed ones."""

        def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
            import submitit

            assert self.config is not None and self.hydra_context is not None
            params = dict(self.params)
            folder = params.pop("submitit_folder")
            # the plugin's mapping: max_num_timeout goes to the executor, the keys of
            # BaseQueueConf are submitit's generic names, the others get the slurm_ prefix
            executor = submitit.AutoExecutor(folder=folder, cluster="slurm",
                                             slurm_max_num_timeout=params.pop("max_num_timeout"))
            generic = set(OmegaConf.structured(BaseQueueConf).keys())
            executor.update_parameters(**{k if k in generic else f"slurm_{k}": v for k, v in params.items()})

            sweep_dir = Path(str(self.config.hydra.sweep.dir))
            log.info(f"Submitit 'slurm' sweep output dir : {sweep_dir}")
            sweep_dir.mkdir(parents=True, exist_ok=True)
            if "mode" in self.config.hydra.sweep:
                os.chmod(sweep_dir, mode=int(str(self.config.hydra.sweep.mode), 8))
            numbers = list(range(initial_job_idx, initial_job_idx + len(job_overrides)))
            for num, overrides in zip(numbers, job_overrides):
                log.info(f"\t#{num} : {' '.join(filter_overrides(overrides))}")
            state = Singleton.get_state()
            jobs = executor.map_array(self, [list(o) for o in job_overrides], ["hydra.sweep.dir"] * len(numbers),
                                      numbers, [f"job_id_for_{n}" for n in numbers], [state] * len(numbers))

            returns, failed = [], []
            for num, overrides, job in zip(numbers, job_overrides, jobs):
                try:
                    ret = job.results()[0]  # waits; a requeued job is waited for until it ends
                    reason = _describe(ret._return_value) if ret.status == JobStatus.FAILED else None
                except Exception as exc:  # ended without a result: exited (a config error) or killed
                    ret = JobReturn(overrides=list(overrides), status=JobStatus.FAILED, _return_value=exc)
                    reason = one_line_error(job.stderr()) or _describe(exc)
                if reason is not None:
                    where = f"state {job.state}, log {job.paths.stderr}"
                    line = f"#{num} {' '.join(filter_overrides(overrides))}: {reason} ({where})"
                    log.error(f"job {line}")
                    failed.append((ret, line))
                returns.append(ret)
            if failed:
                # the sweeper raises at the first failed job and Hydra then skips the
                # multirun-end callbacks: run them now, so the report of the rest is written
                self.hydra_context.callbacks.on_multirun_end(config=self.config,
                                                             config_name=self.config.hydra.job.config_name)
                error = SweepJobsFailed(f"{len(failed)} of {len(jobs)} jobs of the sweep failed (the others' "
                                        f"records and the report are in {sweep_dir}):\n"
                                        + "\n".join(f"  {line}" for _, line in failed))
                for ret, _ in failed:
                    ret._return_value = error
            return returns
