"""W&B runs as report Jobs. A run with its ``bpdip-records`` artifact is read as a local job
directory (the same records, so a W&B report equals the local one); an older run is
rebuilt from its config, its history rows (``curve/<image>/<metric>``) and its summary
(``image/<image>/<field>``) by :func:`job_from_wandb`, a pure function tested with fakes. A
run that ended before its summary has ``running`` or ``failed`` images, never averaged.
"""

from __future__ import annotations

import datetime as _dt
import math

from pathlib import Path

from bpdip.records import SCHEMA, WANDB_ARTIFACT_TYPE, CorruptRecord
from bpdip.report.sources import SUMMARY_FIELDS, Cell, ImageRun, Job, _curve_frame, job_from_records, load_job_dir

CURVE_PREFIX = "curve/"
IMAGE_PREFIX = "image/"
CURVE_METRICS = ("psnr", "ssim", "ssim_dr2", "loss", "seconds")


def _get(config: dict, dotted: str, *default):
    """``config["a"]["b"]`` for "a.b", or a flat ``config["a.b"]`` (both forms occur);
    ``default`` where it is absent, else KeyError."""
    if dotted in config:
        return config[dotted]
    node = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            if default:
                return default[0]
            raise KeyError(dotted)
        node = node[part]
    return node


def _number(value) -> float:
    """A history value as a float; W&B writes NaN/inf as strings or leaves them out."""
    if isinstance(value, bool) or value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def curves_from_history(rows) -> dict[str, list[dict]]:
    """Per-image curve records (metrics.csv rows) from W&B history rows."""
    by_image: dict[str, dict[int, dict]] = {}
    for row in rows:
        if row.get("iteration") is None:
            continue
        try:
            it = int(row["iteration"])
        except (TypeError, ValueError):
            continue
        for key, value in row.items():
            if not key.startswith(CURVE_PREFIX) or "/" not in key[len(CURVE_PREFIX):]:
                continue
            image, metric = key[len(CURVE_PREFIX):].rsplit("/", 1)
            if metric not in CURVE_METRICS:
                continue
            rec = by_image.setdefault(image, {}).setdefault(
                it, {"image": image, "iteration": it, **{m: math.nan for m in CURVE_METRICS}})
            rec[metric] = _number(value)
    return {name: [recs[i] for i in sorted(recs)] for name, recs in by_image.items()}


def image_entries(summary: dict) -> dict[str, dict]:
    """The summary.json image entries from ``image/<name>/<field>`` summary keys."""
    entries: dict[str, dict] = {}
    for key, value in summary.items():
        if key.startswith(IMAGE_PREFIX) and "/" in key[len(IMAGE_PREFIX):]:
            image, fieldname = key[len(IMAGE_PREFIX):].rsplit("/", 1)
            entries.setdefault(image, {})[fieldname] = value
    for entry in entries.values():
        for fieldname in SUMMARY_FIELDS:
            entry.setdefault(fieldname, None)  # the logger leaves out None values
    return entries


def _created(run) -> float:
    text = getattr(run, "created_at", None)
    try:
        return _dt.datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def job_from_wandb(run, rows) -> Job:
    """One W&B run (anything with ``config``, ``summary``, ``state``, ``path``) and its
    history rows as a :class:`Job`: an ended run (its summary written) as the summary.json
    and metrics.csv rows it stands for, through :func:`~bpdip.report.sources.job_from_records`."""
    path = getattr(run, "path", None)
    source = "wandb:" + ("/".join(map(str, path)) if isinstance(path, (list, tuple)) else str(path or run.id))
    config, summary = dict(run.config or {}), dict(run.summary or {})
    state = str(getattr(run, "state", "unknown")).lower()
    mtime = _created(run)
    try:
        cell = Cell.from_dict({"kernel": _get(config, "kernel.name"), "noise_var": _get(config, "noise.var"),
                               "loss": _get(config, "loss.name")})
    except (KeyError, CorruptRecord) as exc:
        return Job(source, None, None, {}, error=f"W&B config lacks the cell ({exc}); not a bpdip run?", mtime=mtime)
    entries = image_entries(summary)
    ended = "config_hash" in summary and bool(entries)
    meta = {
        "cell": {"kernel": cell.kernel, "noise_var": cell.noise_var, "loss": cell.loss},
        "config_hash": summary.get("config_hash") if ended else None,
        "git_commit": None, "device": None, "torch_version": None,
        "iterations": _get(config, "loss.iterations", None), "log_every": _get(config, "log_every", None),
        "status": summary.get("status") if ended else state, "wandb_state": state,
        "seed": config.get("seed"),
    }
    if ended and summary.get("protocol_hash") is not None:  # runners that log it (see cells.py)
        meta["protocol_hash"] = summary["protocol_hash"]
    curves = curves_from_history(rows)
    if ended:
        job = job_from_records(source, {"schema": SCHEMA, "run": meta, "images": entries},
                               [r for curve in curves.values() for r in curve], mtime=mtime,
                               orphan="W&B history has a curve for this image but the summary has no entry")
        job.images = dict(sorted(job.images.items()))
    else:
        job = Job(source, cell, None, meta, mtime=mtime)
        status = "running" if state == "running" else "failed"
        reason = None if status == "running" else f"W&B run {state} before its job summary was written"
        for name, curve in curves.items():
            job.images[name] = ImageRun(name, status, _curve_frame(curve), {"status": status}, source, reason)
    job.config = config
    return job


def records_of(run, root: Path) -> Path | None:
    """Download the run's records artifact (what the job directory holds,
    bpdip.loggers.records_artifact) into ``root/<entity>/<project>/<run id>``; None when the
    run has none (runs of older loggers)."""
    for art in getattr(run, "logged_artifacts", list)():
        if art.type == WANDB_ARTIFACT_TYPE:
            path = Path(root).joinpath(*map(str, run.path))
            art.download(root=str(path))
            return path if (path / "summary.json").is_file() else None
    return None


def load_wandb(project: str, filters: dict | None = None, api=None, root=None) -> list[Job]:
    """Every run of ``ENTITY/PROJECT`` as a Job (network and a W&B login): its records
    artifact downloaded into ``root`` and read as a local job, or (older runs) rebuilt from
    ``scan_history()`` (every row: ``run.history()`` samples 500, which would move the peak)."""
    if project.count("/") != 1:
        raise ValueError(f"--wandb expects ENTITY/PROJECT, got {project!r}")
    if api is None:
        import wandb

        api = wandb.Api()
    jobs = []
    for run in api.runs(project, filters=filters):
        path = records_of(run, root) if root is not None else None
        jobs.append(load_job_dir(path / "summary.json") if path is not None else job_from_wandb(run, run.scan_history()))
    return jobs
