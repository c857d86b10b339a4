"""W&B runs as report Jobs: a run's ``bpdip-records`` artifact (its job directory's records,
bpdip.loggers.records_artifact) is downloaded and read as a local job directory, so a report
built from W&B equals the local one (issue 28). A run without it is listed as unreadable.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from bpdip.records import WANDB_ARTIFACT_TYPE
from bpdip.report.sources import Job, load_job_dir

NO_RECORDS = (f"the W&B run has no {WANDB_ARTIFACT_TYPE} artifact (logged by a bpdip before issue 28, or its job "
              "never finished); build the report from the job's directory, or rerun the job")


def load_run(run, root: Path) -> Job:
    """One run (``wandb.apis.public.Run``) as a Job: its records artifact downloaded into
    ``root/<entity>/<project>/<run id>`` and read as a job directory."""
    path = Path(root).joinpath(*map(str, run.path))
    for art in run.logged_artifacts():
        if art.type == WANDB_ARTIFACT_TYPE:
            art.download(root=str(path))
            if (path / "summary.json").is_file():
                return load_job_dir(path / "summary.json")
    return Job("wandb:" + "/".join(map(str, run.path)), None, None, {}, error=NO_RECORDS)


def load_wandb(project: str, filters: dict | None = None, api=None, root=None) -> list[Job]:
    """Every run of ``ENTITY/PROJECT`` as a Job (network and a W&B login), its records
    downloaded into ``root`` (a new temporary directory where None)."""
    if project.count("/") != 1:
        raise ValueError(f"--wandb expects ENTITY/PROJECT, got {project!r}")
    if api is None:
        import wandb

        api = wandb.Api()
    root = tempfile.mkdtemp(prefix="bpdip-wandb-") if root is None else root
    return [load_run(run, root) for run in api.runs(project, filters=filters)]
