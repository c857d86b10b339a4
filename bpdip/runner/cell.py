"""Run one cell (kernel, noise, loss) over its images and write the job's records."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from bpdip.data import center_crop, load_image
from bpdip.loggers import JobLogger, make_loggers
from bpdip.loop import Callback, Result, restore, seeded_model
from bpdip.losses import make_loss
from bpdip.models import build_model
from bpdip.physics import Blur, degrade
from bpdip.records import (
    atomic_write_text, curve_rows, image_summary, new_summary, write_json, write_metrics_csv, write_png,
)
from bpdip.runner.devices import device_name, job_device
from bpdip.runner.plan import CellPlan, ImageTask, absolute, plan_cell
from bpdip.runner.provenance import git_commit, git_dirty, versions
from bpdip.store import Store

log = logging.getLogger("bpdip")


def degraded(plan: CellPlan, task: ImageTask) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of one image: y = h * x + e with the image's own noise seed (paper eq. 1)."""
    x = center_crop(load_image(task.path), plan.crop)
    return x, degrade(x, plan.kernel, plan.noise_var, plan.seeds(task.name)["noise"])


def train_image(plan: CellPlan, task: ImageTask, device, callbacks=(), checkpoint=None) -> Result:
    """Train one network on one image (paper eqs. 3 and 9) and return its Result."""
    x, y = degraded(plan, task)
    seeds = plan.seeds(task.name)

    def to_tensor(a, dtype):
        return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None].to(device=device, dtype=dtype)

    y_t = to_tensor(y, torch.float32)
    x_t = to_tensor(x, torch.float64)  # metrics run in float64 against the exact ground truth
    blur = Blur(plan.kernel, task.shape, device=device)
    loss = make_loss(plan.fidelity, blur, y_t, plan.sigma, plan.tv_weight, **plan.loss_params)
    model = seeded_model(lambda: build_model(**plan.model_params), seeds["model"])
    [result] = restore(model, loss, y_t, [task.name], plan.settings, x_true=x_t, seed=seeds["z"],
                       device=device, callbacks=list(callbacks), checkpoint=checkpoint,
                       engine=plan.config.get("engine"))
    return result


class JobRecords:
    """The job directory's records (bpdip.records schema 1), rewritten atomically after
    every image, so that a killed job keeps the images it finished."""

    def __init__(self, out_dir: Path, run: dict, save_images: bool):
        self.out_dir = Path(out_dir)
        self.summary = new_summary(run)
        self.rows: list[dict] = []
        self.save_images = save_images

    def start(self, name: str, run_id: str | None) -> None:
        self.summary["images"][name] = {"status": "running", "run_id": run_id, "reused": False}
        self.write()

    def add(self, name: str, entry: dict, rows: list[dict], image=None, png: Path | None = None) -> None:
        self.summary["images"][name] = entry
        self.rows = [r for r in self.rows if r["image"] != name] + rows
        if self.save_images:
            target = self.out_dir / "restored" / f"{name}.png"
            if image is not None:
                write_png(target, image)
            elif png is not None:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(png, target)
        self.write()

    def finish(self) -> dict:
        statuses = {e["status"] for e in self.summary["images"].values()}
        self.summary["run"]["status"] = "complete" if statuses <= {"complete"} else "failed"
        self.write()
        return self.summary

    def write(self) -> None:
        write_metrics_csv(self.out_dir / "metrics.csv", self.rows)
        write_json(self.out_dir / "summary.json", self.summary)  # last: it points at the curves


def run_cell(cfg, out_dir, callbacks: list[Callback] = (), job_num: int = 0, plan: CellPlan | None = None) -> dict:
    """Train (or take from the results store) every image of one cell; return summary.json.

    ``callbacks`` are extra loop callbacks (tests inject failures with them).
    """
    plan = plan or plan_cell(cfg)
    config = plan.config
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    root = absolute(config.get("results_root"))
    store = Store(root) if root is not None else None
    loggers: list[JobLogger] = make_loggers(config.get("logger") or {"name": "none"}, out_dir)
    atomic_write_text(out_dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(config)))

    threads = torch.get_num_threads()
    try:
        with job_device(config.get("device", "auto"), job_num) as device:
            if config.get("threads"):
                torch.set_num_threads(int(config["threads"]))
            return _run(plan, config, out_dir, root, store, loggers, callbacks, device)
    finally:
        torch.set_num_threads(threads)  # a job in a shared process leaves the setting as it was


def _run(plan, config, out_dir, root, store, loggers, callbacks, device) -> dict:
    run = {
        "cell": plan.cell, "config_hash": plan.config_hash, "git_commit": git_commit(),
        "git_dirty": git_dirty(), "device": device_name(device), **versions(),
        "iterations": plan.settings.iterations, "log_every": plan.settings.log_every, "status": "running",
        "seed": plan.seed, "cell_name": plan.cell_name,
        "results_root": str(root) if root is not None else None,
    }
    records = JobRecords(out_dir, run, bool(config.get("save_images", True)))
    records.write()
    info = {"cell_name": plan.cell_name, "cell": plan.cell, "images": [t.name for t in plan.tasks],
            "config": config, "out_dir": str(out_dir), "iterations": plan.settings.iterations,
            "log_every": plan.settings.log_every, "device": run["device"], "progress": plan.settings.progress}
    try:
        for lg in loggers:
            lg.on_job_start(info)
        for index, task in enumerate(plan.tasks):
            _one_image(plan, task, index, store, records, loggers, list(callbacks), device, out_dir)
        summary = records.finish()
        for lg in loggers:
            lg.on_job_end(summary, records.rows)
    finally:
        for lg in loggers:
            lg.close()
    return summary


def _one_image(plan, task, index, store, records, loggers, callbacks, device, out_dir) -> None:
    config, s = plan.config, plan.settings
    stored = None
    if store is not None and config.get("reuse", True):
        stored = store.load(task.run_id, task.name, s.iterations, s.log_every,
                            accept_failed=not config.get("retry_failed", False))
    if stored is not None:
        entry = {**stored.entry, "run_id": task.run_id, "reused": True}
        records.add(task.name, entry, stored.rows, png=stored.png)
        for lg in loggers:
            lg.on_image_done(task.name, entry, stored.rows, None, True)
        return

    records.start(task.name, task.run_id if store is not None else None)
    for lg in loggers:
        lg.on_image_start(index, len(plan.tasks), task.name, task.shape, task.run_id)
    if store is not None:
        checkpoint = store.checkpoint(task.run_id)
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
    else:
        checkpoint = out_dir / "checkpoints" / f"{task.name}.pt"
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
    result = train_image(plan, task, device, [*loggers, *callbacks],
                         checkpoint if s.checkpoint_every else None)
    rows = curve_rows(task.name, result.curve)
    entry = {**image_summary(result), "run_id": task.run_id if store is not None else None, "reused": False}
    if store is not None:
        own = new_summary({**records.summary["run"], "status": entry["status"], "run_id": task.run_id,
                           "image_sha256": task.sha256})
        own["images"][task.name] = {k: v for k, v in entry.items() if k != "reused"}
        store.save(task.run_id, own, rows, result.image, plan.result_config)
    else:
        checkpoint.unlink(missing_ok=True)
    records.add(task.name, entry, rows, image=result.image)
    for lg in loggers:
        lg.on_image_done(task.name, entry, rows, result.image, False)
