"""Reading run records (:mod:`bpdip.records`) into :class:`Job` objects: read, validate,
label; nothing is averaged here. A record that cannot be trusted is ``corrupt`` with a reason.
"""

from __future__ import annotations

import glob
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bpdip.curves import _finite, best
from bpdip.paper import canonical_noise
from bpdip.records import (CURVE_COLUMNS_V2, IMAGE_STATUSES, SCHEMAS, STREAM_CURVE_COLUMNS, CorruptRecord, read_json,
                           read_metrics_csv)

METRIC_COLUMNS = list(CURVE_COLUMNS_V2[1:])  # iteration, psnr, ssim, ssim_dr2, loss, seconds, statistics


@dataclass(frozen=True, order=True)
class Cell:
    """One setting: kernel, noise variance (0..255 scale), loss and task (``deblur``, or
    ``sr-x4`` / ``sr-x4-pil``). Cells of different tasks are never averaged together; a
    non-circular boundary (issue 19) goes into the kernel's label (``gaussian-valid``), its
    own column, never compared with the paper's circular Table I."""

    kernel: str
    noise_var: float
    loss: str
    task: str = "deblur"

    @classmethod
    def from_dict(cls, d: dict) -> "Cell":
        try:
            task = d.get("task") or "deblur"
            if not isinstance(task, str):
                raise TypeError(f"task {task!r} is not a string")
            kernel, boundary = str(d["kernel"]), d.get("boundary") or "circular"
            if boundary != "circular":
                kernel = f"{kernel}-{boundary}"
            return cls(kernel, canonical_noise(d["noise_var"]), str(d["loss"]), task)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CorruptRecord(f"run.cell must hold kernel, noise_var (number) and loss, got {d!r} ({exc})")

    @property
    def is_sr(self) -> bool:
        return self.task != "deblur"

    def __str__(self) -> str:
        prefix = f"{self.task} / " if self.is_sr else ""
        return f"{prefix}{self.loss} / {self.kernel} / var {self.noise_var:g}"


def empty_curve() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="int64" if c == "iteration" else "float64") for c in METRIC_COLUMNS})


@dataclass
class ImageRun:
    """One image's record inside one job."""

    name: str
    status: str  # complete | failed | running | corrupt
    curve: pd.DataFrame  # METRIC_COLUMNS (+ the file's STREAM_CURVE_COLUMNS), one row per logged iteration, sorted
    summary: dict  # the summary.json entry (bpdip.records.image_summary)
    source: str
    reason: str | None = None  # why it is corrupt, or the run's error message

    @property
    def last_iteration(self) -> int | None:
        return int(self.curve["iteration"].iloc[-1]) if len(self.curve) else None

    def rank(self) -> tuple:
        """Which of two records of the same image to keep: complete first, then the longer."""
        order = {"complete": 3, "running": 2, "failed": 1, "corrupt": 0}[self.status]
        return (order, self.summary.get("iterations") or 0, len(self.curve))


@dataclass
class Job:
    """One summary.json (one Hydra job) or one W&B run."""

    source: str
    cell: Cell | None
    config_hash: str | None
    run: dict
    images: dict[str, ImageRun] = field(default_factory=dict)
    error: str | None = None  # set when the whole job is unreadable
    mtime: float = 0.0
    config: dict | None = None  # the resolved config, where the job kept it (informational)

    @property
    def seed(self):
        """The run seed (``run.seed``): an int where it is one (JSON may hold 1 or 1.0), else
        text, or None where the record does not say."""
        value = self.run.get("seed")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and float(value).is_integer():
            return int(value)
        return None if value is None else str(value)

    @property
    def protocol_hash(self) -> str | None:
        """The hash of the result-relevant config without the seed (``run.protocol_hash``;
        absent from records of older runners)."""
        value = self.run.get("protocol_hash")
        return None if value is None else str(value)


def seed_key(seed) -> tuple:
    """Sort key for seeds: numbers in order, then text, then the unknown seed (None)."""
    if seed is None:
        return (2, 0, "")
    return (0, seed, "") if isinstance(seed, int) else (1, 0, str(seed))


def seed_label(seed) -> str:
    return "?" if seed is None else str(seed)


def _curve_frame(rows: list[dict]) -> pd.DataFrame:
    if not rows:
        return empty_curve()
    # the other streams' columns (bpdip.report.streams) only where the file has values in them
    # (a schema-3 writer writes every column; psnr_y ones stay empty for deblurring)
    streams = [c for c in STREAM_CURVE_COLUMNS if any(_finite(r.get(c)) for r in rows)]
    frame = pd.DataFrame(rows, columns=METRIC_COLUMNS + streams)
    frame["iteration"] = frame["iteration"].astype("int64")
    # A resumed job may log an iteration twice; the later row is the one that counts.
    frame = frame.drop_duplicates("iteration", keep="last").sort_values("iteration", kind="stable")
    return frame.reset_index(drop=True)


def validate_image(name: str, entry, curve: pd.DataFrame, source: str) -> ImageRun:
    """Check one image's summary entry against its curve; anything inconsistent is corrupt."""
    if not isinstance(entry, dict):
        return ImageRun(name, "corrupt", curve, {}, source, f"summary entry is {type(entry).__name__}, not an object")
    summary = dict(entry)
    status = entry.get("status")

    def bad(reason):
        return ImageRun(name, "corrupt", curve, summary, source, reason)

    if status not in IMAGE_STATUSES:
        return bad(f"status {status!r} is not one of {', '.join(sorted(IMAGE_STATUSES))}")
    no_truth = all(summary.get(k) is None for k in ("peak_psnr", "final_psnr")) and \
        not curve["psnr"].map(_finite).any()  # data=observed: no ground truth, no PSNR anywhere
    if status == "complete":
        if curve.empty:
            return bad("summary says complete but metrics.csv has no rows for this image")
        for key in () if no_truth else ("peak_psnr", "final_psnr", "final_ssim", "final_ssim_dr2"):
            if not _finite(summary.get(key)):
                return bad(f"summary says complete but {key} is {summary.get(key)!r}")
    if not curve.empty and _finite(summary.get("peak_psnr")):
        # The summary's peak is the best logged record (bpdip.loop.Result.peak): both
        # files must tell the same story, else one of them is stale.
        top = best(curve.to_dict("records"), "psnr")
        if top is None:
            return bad("metrics.csv has no finite PSNR but summary.json has a peak")
        if not math.isclose(float(top["psnr"]), summary["peak_psnr"], rel_tol=1e-9, abs_tol=1e-9):
            return bad(f"summary peak_psnr {summary['peak_psnr']} != max PSNR {float(top['psnr'])} in metrics.csv")
    return ImageRun(name, status, curve, summary, source, entry.get("error"))


def read_config(job_dir: Path) -> dict | None:
    """The runner's resolved config beside the records (config.yaml in a job directory,
    config.json in a results-store entry), or None; only used to describe the run."""
    import yaml

    for name, parse in (("config.yaml", yaml.safe_load), ("config.json", json.loads)):
        path = job_dir / name
        if path.is_file():
            try:
                config = parse(path.read_text())
            except (OSError, ValueError, yaml.YAMLError):
                return None
            return config if isinstance(config, dict) else None
    return None


def display_path(path: Path) -> str:
    """A path relative to the working directory when it lies below it (reports stay
    readable and do not leak the machine's layout), else absolute."""
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def load_job_dir(summary_path: Path) -> Job:
    """Read one job directory (its summary.json and the metrics.csv beside it): with an
    unreadable metrics.csv every image is corrupt, its curve unknown."""
    source = display_path(summary_path.parent)
    mtime = summary_path.stat().st_mtime

    def bad(error):  # a summary.json that cannot be read as a job
        return Job(source, None, None, {}, error=error, mtime=mtime)

    try:
        summary = read_json(summary_path)
    except CorruptRecord as exc:
        return bad(f"summary.json unreadable: {exc}")
    if not isinstance(summary, dict) or summary.get("schema") not in SCHEMAS:
        got = summary.get("schema") if isinstance(summary, dict) else type(summary).__name__
        return bad(f"summary.json schema {got!r}, expected one of {list(SCHEMAS)}")
    run, images = summary.get("run"), summary.get("images")
    if not isinstance(run, dict) or not isinstance(images, dict):
        return bad("summary.json lacks the 'run' or 'images' object")
    try:
        cell = Cell.from_dict(run.get("cell") or {})
    except CorruptRecord as exc:
        return Job(source, None, run.get("config_hash"), run, error=str(exc), mtime=mtime)
    job = Job(source, cell, run.get("config_hash"), run, mtime=mtime, config=read_config(summary_path.parent))
    metrics = summary_path.with_name("metrics.csv")
    rows, error = None, None
    if metrics.is_file():
        try:
            rows = read_metrics_csv(metrics)
        except CorruptRecord as exc:
            error = str(exc)
    elif all(isinstance(e, dict) and e.get("status") == "running" for e in images.values()):
        rows = []  # a job that has not logged anything yet
    else:
        error = "metrics.csv is missing"
    by_image: dict[str, list[dict]] = {}
    for row in rows or []:
        by_image.setdefault(row["image"], []).append(row)
    for name, entry in images.items():
        curve = _curve_frame(by_image.pop(name, []))
        if rows is None:
            status = entry.get("status") if isinstance(entry, dict) else None
            job.images[name] = ImageRun(name, "corrupt", curve, entry if isinstance(entry, dict) else {}, source,
                                        f"metrics.csv unreadable ({error}); summary status was {status!r}")
        else:
            job.images[name] = validate_image(name, entry, curve, source)
    for name, image_rows in by_image.items():  # curve rows of an image the summary does not know
        job.images[name] = ImageRun(name, "corrupt", _curve_frame(image_rows), {}, source,
                                    "metrics.csv has rows for this image but summary.json has no entry")
    return job


def find_summaries(paths: list[str]) -> list[Path]:
    """Every summary.json under the given directories, files or glob patterns."""
    found: list[Path] = []
    for arg in paths:
        if any(ch in arg for ch in "*?["):
            matches = sorted(glob.glob(os.path.expanduser(arg), recursive=True))
            if not matches:
                raise FileNotFoundError(f"the pattern {arg!r} matches nothing; quote it or check the path")
        else:
            if not os.path.exists(os.path.expanduser(arg)):
                raise FileNotFoundError(f"{arg} does not exist; give a sweep directory (e.g. multirun/DATE) or a glob")
            matches = [os.path.expanduser(arg)]
        for match in matches:
            p = Path(match)
            if p.is_dir():
                found.extend(sorted(p.rglob("summary.json")))
            elif p.name == "summary.json":
                found.append(p)
            elif p.name == "metrics.csv" and p.with_name("summary.json").is_file():
                found.append(p.with_name("summary.json"))
            else:
                raise ValueError(f"{p} is neither a directory nor a summary.json/metrics.csv record file")
    return list(dict.fromkeys(p.resolve() for p in found))


def load_local(paths: list[str]) -> list[Job]:
    summaries = find_summaries(paths)
    if not summaries:
        raise FileNotFoundError(f"no summary.json found under {', '.join(paths)}; is this a run directory?")
    return [load_job_dir(p) for p in summaries]
