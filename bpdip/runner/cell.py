"""Run one cell (kernel, noise, loss) over its images and write the job's records.

``engine.stack`` = K > 1: after the images already in the results store are taken from
it, the others are grouped by size (``bpdip.engine.group_by_size``, at most K per group)
and each group of two or more is trained by one ``restore`` call on K stacked networks
(``bpdip.engine.stacked``): each image keeps its own model and z seeds, y, ground truth
and record, so an image's curve is the one it gets alone up to floating-point rounding.
A group of one trains exactly as with K = 1. ``engine.stack`` is therefore speed-only
and not part of the results store's id (``bpdip.store.BOOKKEEPING``). Every image gets
the same records, store entry and logger calls as with K = 1; the job's summary.json and
metrics.csv list the images in the configured order. ``runtime_s`` and ``seconds`` of a
stacked image are its group's wall time (the K images share one clock).

A group checkpoints to ``<results_root>/<first image's run_id>/group-<hash>.pt`` (in the
job's ``checkpoints/`` without a store), the hash of the group's run ids in order, so a
relaunch with the same group resumes it. Group checkpoints of groups that no longer occur
(some of their images finished) are removed; a checkpoint that does not fit its run (one
image or a group) is set aside by the loop with one warning line, and the run starts from
iteration 0 (``bpdip.loop.restore``: one rule for both).
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from bpdip.data import center_crop, load_image
from bpdip.engine import StackedLoss, build_stacked, group_by_size
from bpdip.loggers import JobLogger, make_loggers
from bpdip.loop import Callback, Data, Result, RunSpec, restore
from bpdip.losses import make_loss
from bpdip.models import build_model, seeded_model
from bpdip.metrics import quality
from bpdip.physics import degrade, degrade_sr, degrade_valid
from bpdip.physics.valid import crop_hw
from bpdip.physics.resize import bicubic_upsample, degrade_pil
from bpdip.records import (
    atomic_write_text, curve_rows, image_path, image_summary, input_paths, new_summary, write_json, write_metrics_csv,
    write_npy, write_png,
)
from bpdip.runner.devices import device_name, job_device
from bpdip.runner.checks import check_results_root
from bpdip.runner.plan import CellPlan, ImageTask, UserError, absolute, plan_cell
from bpdip.provenance import git_commit, git_dirty, versions
from bpdip.stopping import Stopping
from bpdip.store import Store, digest

log = logging.getLogger("bpdip")


def degraded(plan: CellPlan, task: ImageTask) -> tuple[np.ndarray | None, np.ndarray]:
    """(x, y) of one image: y = h * x + e with the image's own noise seed (paper eq. 1); for
    ``data=observed`` the file is y itself and there is no x (None). Super-resolution: x is
    the HR image (cropped to a multiple of s) and y = S H x + e (``bpdip.physics.sr``), or
    with ``sr.lr_source=pil`` PIL's Lanczos LR + e (DIP's protocol, ``bpdip.physics.resize``).
    boundary=valid: x is the extended image (the network's size) and y = valid(h * x) + e
    on its frame (``bpdip.physics.valid``)."""
    if plan.observed:  # data.truth: measurement only, already on y's frame
        y = center_crop(load_image(task.path), plan.crop)
        truth = plan.truths.get(task.name)
        if truth is None:
            return None, y
        x = center_crop(load_image(truth), plan.crop)
        if x.shape != y.shape:
            raise ValueError(f"data.truth {truth} is {x.shape[1]}x{x.shape[0]}, its observation "
                             f"{y.shape[1]}x{y.shape[0]}: the truth must be on y's frame")
        return x, y
    image = plan.ground_truth(load_image(task.path))
    seed = plan.seeds(task.name)["noise"]
    if plan.boundary.valid:
        return image, degrade_valid(image, plan.kernel, plan.noise_var, seed)
    if plan.sr is None:
        return image, degrade(image, plan.kernel, plan.noise_var, seed)
    if plan.sr.lr_source == "pil":
        return image, degrade_pil(image, plan.sr.factor, plan.noise_var, seed)
    return image, degrade_sr(image, plan.kernel, plan.sr.factor, plan.noise_var, seed)


@dataclass(frozen=True)
class Observation:
    """One image's arrays, degraded once per job (:func:`degraded`): ``x`` the ground truth as
    degraded (the HR image, or under boundary=valid the extended x; None without truth) and
    ``y`` the measurement. Every consumer (the loop's tensors, the baselines, the input's record)
    takes them from here instead of reading and degrading the file again."""

    x: np.ndarray | None
    y: np.ndarray
    frame: tuple[int, int, int, int] | None
    observed: bool

    @classmethod
    def of(cls, plan: CellPlan, task: ImageTask) -> "Observation":
        x, y = degraded(plan, task)
        return cls(x, y, task.frame, plan.observed)

    @property
    def truth(self) -> np.ndarray | None:
        """x on y's frame (boundary=valid), what the metrics compare with; data=observed's
        data.truth is on y's frame already."""
        if self.x is None or self.frame is None or self.observed:
            return self.x
        return crop_hw(self.x, self.frame)


def baseline(plan: CellPlan, task: ImageTask, seen: Observation | None = None) -> dict | None:
    """Super-resolution's baseline row: y upsampled by PIL's bicubic (bpdip.physics.resize,
    docs/references.md "Deep Image Prior super-resolution": DIP's bicubic image), clipped and
    measured as the network's output is (``bpdip.metrics.quality``: psnr, ssim, ssim_dr2,
    psnr_y). None for deblurring."""
    if plan.sr is None or plan.observed:
        return None
    seen = seen or Observation.of(plan, task)
    x, y = seen.x, seen.y
    up = torch.from_numpy(bicubic_upsample(y, plan.sr.factor)).permute(2, 0, 1)[None]
    ref = torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)[None]
    return {"method": "bicubic", **{k: float(v[0]) for k, v in quality(up, ref, plan.sr.shave).items()}}


def deblur_baselines(plan: CellPlan, task: ImageTask, seen: Observation | None = None
                     ) -> tuple[list[dict], dict] | None:
    """Deblurring's baselines (``bpdip.baselines``: Wiener, unsupervised Wiener,
    Richardson-Lucy, BM3D where installed; with ``boundary=valid`` also the border-aware
    ones) on the image's y with the run's noise level, measured on y's frame; (records,
    images), or None for super-resolution or with ``baselines=false``. Without ground truth
    (``data=observed``) only the fixed-parameter methods run, and their images are kept."""
    if plan.sr is not None or not plan.config.get("baselines", True):
        return None
    from bpdip.baselines import run_baselines

    seen = seen or Observation.of(plan, task)
    return run_baselines(seen.y, plan.kernel, seen.truth, sigma=plan.sigma, boundary=plan.boundary.name)


def observation(plan: CellPlan, task: ImageTask, seen: Observation | None = None) -> tuple[dict, dict | None]:
    """What the report draws beside the restorations (bpdip.report.visual), so that it never
    re-runs this front end: ({"y": y as the loss sees it (float32), "truth": x on y's frame},
    the input's quality: PSNR / SSIM of y clipped to [0, 1] against x, as an output is
    measured; None without ground truth or when y has another size, i.e. super-resolution)."""
    seen = seen or Observation.of(plan, task)
    x, y = seen.truth, seen.y  # on y's frame (data=observed's data.truth is already)
    images = {"y": np.asarray(y, dtype=np.float32)}
    if x is None:
        return images, None
    images["truth"] = x
    if x.shape != y.shape:
        return images, None
    from bpdip.baselines import measure

    return images, measure(np.clip(y, 0.0, 1.0), x)


def input_entry(plan: CellPlan, task: ImageTask, seen: Observation | None = None) -> tuple[dict, dict]:
    """(summary.json's ``input`` of one image: where y and the truth lie and the input's
    metrics; the arrays to write there)."""
    images, metrics = observation(plan, task, seen)
    paths = input_paths(task.name)
    return {**{k: paths[k] for k in images}, **(metrics or {})}, images


def shave_of(plan: CellPlan) -> int | None:
    """The Y-PSNR border of an SR run (the loop logs psnr_y with it); None for deblurring."""
    return None if plan.sr is None else plan.sr.shave


def image_tensors(plan: CellPlan, task: ImageTask, device, seen: Observation | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(y, x) of one image as (1, 3, H, W) tensors: y float32 (what the loss sees), x float64
    (metrics run in float64 against the exact ground truth, on y's frame for boundary=valid;
    None without ground truth)."""
    seen = seen or Observation.of(plan, task)
    x, y = seen.truth, seen.y

    def to_tensor(a, dtype):
        return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None].to(device=device, dtype=dtype)

    return to_tensor(y, torch.float32), None if x is None else to_tensor(x, torch.float64)


def stopping_for(plan: CellPlan, op, y: torch.Tensor, device, frame=None, fidelity=None) -> Stopping:
    """Every online stopping rule of ``plan``'s runs on ``device`` (bpdip.stopping), watching
    y's ``frame`` of the output (boundary=valid); ``fidelity``: the loss's (one per stacked
    image), whose value bp_discrepancy watches."""
    return Stopping(plan.stop, plan.settings.iterations, op, y, plan.sigma, device, frame=frame, fidelity=fidelity,
                    ema=plan.output.ema)


def cg_summary(loss) -> dict | None:
    """BP by conjugate gradients (boundary=valid): the solves' iterations and the largest
    residual reached, for the record; None for the FFT losses."""
    stats = getattr(getattr(loss, "fidelity", None), "cg", None)
    s = stats.summary() if stats is not None else None
    return None if s is None else {k: (v[0] if isinstance(v, list) else v) for k, v in s.items()}


def job_threads(plan: CellPlan, device) -> int | None:
    """The torch CPU threads of this job (``threads``; ``auto``: bpdip.runner.threads), or
    None for torch's default. ``auto`` reads the network's size and the largest x."""
    from bpdip.engine.settings import network_parameters
    from bpdip.runner.threads import resolve_threads

    value = plan.config.get("threads")
    if value != "auto":
        return resolve_threads(value or None, torch.device(device).type, 0, 0)
    pixels = max((t.shape[0] * t.shape[1] for t in plan.tasks), default=0)
    parameters = network_parameters(build_model(**plan.model_params))
    return resolve_threads(value, torch.device(device).type, parameters, pixels)


def train_image(plan: CellPlan, task: ImageTask, device, callbacks=(), checkpoint=None,
                seen: Observation | None = None) -> Result:
    """Train one network on one image (paper eqs. 3 and 9) and return its Result."""
    [result] = train_group(plan, [task], device, callbacks, checkpoint, [seen] if seen is not None else None)
    return result


def train_group(plan: CellPlan, tasks: list[ImageTask], device, callbacks=(), checkpoint=None,
                seen: list[Observation] | None = None) -> list[Result]:
    """Train K images of one size together (engine.stack, bpdip.engine.stacked): image k
    gets the network, z and perturbations of its own seeds, its own y, loss and ground
    truth, as it gets them alone. One image (K = 1) trains one plain network with one int
    seed, as a job without engine.stack does. Returns one Result per image, in order."""
    if len({t.shape for t in tasks}) != 1:
        raise ValueError(f"a stacked group needs one image size, got {[t.shape for t in tasks]}")
    seen = seen or [Observation.of(plan, t) for t in tasks]
    pairs = [image_tensors(plan, t, device, o) for t, o in zip(tasks, seen)]
    seeds = [plan.seeds(t.name) for t in tasks]
    op = plan.operator(tasks[0].shape, device=device)  # one kernel and size: one OTF for the group
    losses = [make_loss(plan.fidelity, op, y_t, plan.sigma, plan.tv_weight, **plan.loss_params) for y_t, _ in pairs]
    fidelity = [getattr(one, "fidelity", None) for one in losses]
    factory = lambda: build_model(**plan.model_params)  # noqa: E731
    if len(tasks) == 1:
        [loss], [fidelity], [seed] = losses, fidelity, [seeds[0]["z"]]
        model = seeded_model(factory, seeds[0]["model"])
    else:
        loss, seed = StackedLoss(losses), [s["z"] for s in seeds]
        # float32 head under bf16, as SkipNet's: stacking never changes what a run computes
        model = build_stacked(factory, [s["model"] for s in seeds])
    if len(pairs) == 1:  # the tensors themselves: a copy by torch.cat has another memory layout
        [(y, x_true)] = pairs
    else:
        y = torch.cat([y for y, _ in pairs])
        x_true = None if any(x is None for _, x in pairs) else torch.cat([x for _, x in pairs])
    data = Data(y, [t.name for t in tasks], x_true=x_true, image_shape=op.in_shape, frame=tasks[0].frame,
                shave=shave_of(plan))
    spec = RunSpec(plan.settings, seed=seed, device=device, engine=plan.config.get("engine"),
                   stopping=stopping_for(plan, op, y, device, tasks[0].frame, fidelity),
                   stop_early=plan.stop.early_rule, output=plan.output, checkpoint=checkpoint,
                   callbacks=list(callbacks))
    results = restore(model, loss, data, spec)
    for result, one in zip(results, losses):
        result.cg = cg_summary(one)
    return results


def group_checkpoint(tasks: list[ImageTask], store: Store | None, out_dir: Path) -> Path:
    """Where a group of images checkpoints: named after its run ids in order, so only a
    relaunch with the same group (same images, seeds and result-relevant config) finds it."""
    key = digest([t.run_id for t in tasks], 12)
    folder = store.dir(tasks[0].run_id) if store is not None else Path(out_dir) / "checkpoints"
    return folder / f"group-{key}.pt"


def _drop_other_group_checkpoints(store: Store | None, tasks: list[ImageTask], keep: Path | None = None) -> None:
    """Group checkpoints in these images' store folders other than ``keep``: left by a
    group that no longer occurs (some of its images finished, or the images changed)."""
    if store is None:
        return
    for task in tasks:
        for path in store.dir(task.run_id).glob("group-*.pt*"):  # with atomic_save's .tmp
            if keep is None or not path.name.startswith(keep.name):
                log.info("removing the stale group checkpoint %s", path)
                path.unlink(missing_ok=True)


class JobRecords:
    """The job directory's records (bpdip.records schema 3), rewritten atomically after
    every image, so that a killed job keeps the images it finished."""

    def __init__(self, out_dir: Path, run: dict, save_images: bool, order: list[str] = ()):
        self.out_dir = Path(out_dir)
        self.summary = new_summary(run)
        self.rows: list[dict] = []
        self.save_images = save_images
        # the configured image order: stacked groups may finish images in another order
        self.rank = {name: i for i, name in enumerate(order)}

    def start(self, name: str, run_id: str | None) -> None:
        self.summary["images"][name] = {"status": "running", "run_id": run_id, "reused": False}
        self.write()

    def add(self, name: str, entry: dict, rows: list[dict], image=None, png: Path | None = None,
            extras: dict | None = None, images: dict | None = None, pngs: dict | None = None,
            observed: dict | None = None) -> None:
        """``extras``: more images of this one, ``restored/<name>.<suffix>.png`` for each
        suffix (``extended``: boundary=valid's whole x; the baselines), arrays or PNG paths.
        ``images`` (arrays) for a trained image, ``pngs`` (the store's files) for a reused one:
        the stream images, written to ``images/<name>/<stream>.<rule>.png``. ``observed``:
        y and the truth (:func:`observation`), written where ``input_paths`` says."""
        self.summary["images"][name] = entry
        self.rows = [r for r in self.rows if r["image"] != name] + rows
        if self.save_images:
            # the restored image at full depth (16 bits), the others as 8-bit previews
            for target, item, bits in [
                    (self.out_dir / "restored" / f"{name}.png", image if image is not None else png, 16),
                    *((self.out_dir / "restored" / f"{name}.{k}.png", v, 8) for k, v in (extras or {}).items()),
                    *((self.out_dir / image_path(name, k), v, 8) for k, v in (images or {}).items()),
                    *((self.out_dir / image_path(name, k), v, 8) for k, v in (pngs or {}).items())]:
                if isinstance(item, Path):
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(item, target)
                elif item is not None:
                    write_png(target, item, bits=bits)
            paths = input_paths(name)
            for key, array in (observed or {}).items():
                (write_npy if paths[key].endswith(".npy") else write_png)(self.out_dir / paths[key], array)
        self.write()

    def finish(self) -> dict:
        statuses = {e["status"] for e in self.summary["images"].values()}
        self.summary["run"]["status"] = "complete" if statuses <= {"complete"} else "failed"
        self.write()
        return self.summary

    def write(self) -> None:
        last = len(self.rank)
        images = self.summary["images"]
        self.summary["images"] = {n: images[n] for n in sorted(images, key=lambda n: self.rank.get(n, last))}
        self.rows.sort(key=lambda r: self.rank.get(r["image"], last))  # stable: each curve keeps its order
        write_metrics_csv(self.out_dir / "metrics.csv", self.rows)
        write_json(self.out_dir / "summary.json", self.summary)  # last: it points at the curves


@dataclass
class Job:
    """One job's context, the same for every image it records: the plan, where it writes
    (``out_dir``, ``records``, the results ``store``), who hears of it (``loggers``, the extra
    loop ``callbacks``) and its ``device``; and each image's :class:`Observation`, made once
    and dropped when the image is recorded."""

    plan: CellPlan
    out_dir: Path
    store: Store | None
    records: JobRecords
    loggers: list[JobLogger]
    callbacks: list[Callback]
    device: torch.device
    seen: dict[str, Observation] = field(default_factory=dict)

    def observation(self, task: ImageTask) -> Observation:
        if task.name not in self.seen:
            self.seen[task.name] = Observation.of(self.plan, task)
        return self.seen[task.name]

    def recorded(self, task: ImageTask) -> None:
        self.seen.pop(task.name, None)


def run_cell(cfg, out_dir, callbacks: list[Callback] = (), job_num: int = 0, plan: CellPlan | None = None) -> dict:
    """Train (or take from the results store) every image of one cell; return summary.json.

    ``callbacks`` are extra loop callbacks (tests inject failures with them).
    """
    plan = plan or plan_cell(cfg)
    config = plan.config
    root = absolute(config.get("results_root"))
    try:
        check_results_root(root)  # before the job writes its "running" summary
    except ValueError as exc:
        raise UserError(str(exc)) from None
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    store = Store(root) if root is not None else None
    loggers: list[JobLogger] = make_loggers(config.get("logger") or {"name": "none"}, out_dir)
    atomic_write_text(out_dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(config)))

    threads = torch.get_num_threads()
    try:
        with job_device(config.get("device", "auto"), job_num) as device:
            n = job_threads(plan, device)
            if n is not None:
                torch.set_num_threads(n)
            return _run(plan, out_dir, root, store, loggers, list(callbacks), device)
    finally:
        torch.set_num_threads(threads)  # a job in a shared process leaves the setting as it was


def _run(plan, out_dir, root, store, loggers, callbacks, device) -> dict:
    config = plan.config
    engine = plan.engine(device)
    run = {
        "cell": plan.cell, "config_hash": plan.config_hash, "protocol_hash": plan.protocol_hash,
        "stop": plan.stop.name, "stop_early": plan.stop.early,
        "output": {"restore": plan.output.restore, "ema": plan.output.ema}, "git_commit": git_commit(),
        "git_dirty": git_dirty(), "device": device_name(device), **versions(),
        "engine": engine.label(),
        "iterations": plan.settings.iterations, "log_every": plan.settings.log_every, "status": "running",
        "seed": plan.seed, "cell_name": plan.cell_name,
        "results_root": str(root) if root is not None else None,
    }
    records = JobRecords(out_dir, run, bool(config.get("save_images", True)), [t.name for t in plan.tasks])
    records.write()
    job = Job(plan, out_dir, store, records, loggers, callbacks, device)
    info = {"cell_name": plan.cell_name, "cell": plan.cell, "images": [t.name for t in plan.tasks],
            "config": config, "out_dir": str(out_dir), "iterations": plan.settings.iterations,
            "log_every": plan.settings.log_every, "device": run["device"], "progress": plan.settings.progress}
    try:
        for lg in loggers:
            lg.on_job_start(info)
        if engine.stack == 1:
            deferred = [(index, task) for index, task in enumerate(plan.tasks) if not _one_image(job, index, task)]
        else:
            deferred = _stacked_images(job, engine.stack)
        _wait_for_other_jobs(job, deferred)
        summary = records.finish()
        for lg in loggers:
            lg.on_job_end(summary, records.rows)
    finally:
        for lg in loggers:
            lg.close()
    return summary


def _one_image(job: Job, index: int, task: ImageTask) -> bool:
    """Take the image from the store or train it; False: another job trains it now."""
    if _take_from_store(job, task):
        return True
    if not _claim(job, task):
        return False
    _train(job, [(index, task)])
    return True


def _stacked_images(job: Job, stack: int) -> list:
    """engine.stack = K > 1: the images not in the store, in groups of one size and at most
    K (see the module docstring), each group trained by one stacked run. Returns the images
    that other jobs train now."""
    todo = [(index, task) for index, task in enumerate(job.plan.tasks) if not _take_from_store(job, task)]
    mine, others = [], []
    for member in todo:
        (mine if _claim(job, member[1]) else others).append(member)
    for group in group_by_size(mine, lambda member: member[1].shape, stack):
        _train(job, group)
    return others


CLAIM_POLL_S = 30.0  # how often a job looks again at images that other jobs train


def _claim(job: Job, task: ImageTask) -> bool:
    """Claim the image in the store (bpdip.store "claim.json"); False: a live job holds it."""
    if job.store is None:
        return True
    holder = job.store.claim(task.run_id, 60.0 * float(job.plan.config.get("claim_timeout_min") or 30))
    if holder is not None:
        log.info("%s: job %s on %s (pid %s) trains it now; taking it when it is done", task.name,
                 holder.get("slurm_job") or "-", holder.get("host"), holder.get("pid"))
    return holder is None


def _wait_for_other_jobs(job: Job, deferred: list) -> None:
    """After its own images, a job takes those that other jobs were training from the
    store once they are done there, or trains them itself if their job died."""
    while deferred:
        waiting = []
        for index, task in deferred:
            if _take_from_store(job, task):
                continue
            if _claim(job, task):
                _train(job, [(index, task)])
            else:
                waiting.append((index, task))
        deferred = waiting
        if deferred:
            log.info("waiting for %d image(s) that other jobs train: %s", len(deferred),
                     ", ".join(t.name for _, t in deferred))
            time.sleep(CLAIM_POLL_S)


class _Heartbeat(Callback):
    """Touches the claims of the images being trained at every log (bpdip.store)."""

    def __init__(self, store, tasks):
        self.store, self.run_ids, self.first = store, [t.run_id for t in tasks], tasks[0].name

    def on_log(self, result, record):
        if result.name == self.first:  # once per logged iteration of the group
            for run_id in self.run_ids:
                self.store.heartbeat(run_id)


def _take_from_store(job: Job, task: ImageTask) -> bool:
    """Record an image from the results store when it is done there; False: train it."""
    config, s, store = job.plan.config, job.plan.settings, job.store
    stored = None
    if store is not None and config.get("reuse", True):
        stored = store.load(task.run_id, task.name, s.iterations, s.log_every,
                            accept_failed=not config.get("retry_failed", False))
    if stored is None:
        return False
    _drop_other_group_checkpoints(store, [task])  # a finished image's groups are over
    entry = {**stored.entry, "run_id": task.run_id, "reused": True, "bit_depth": task.bit_depth}
    observed = None
    if stored.entry.get("status") == "complete":
        entry["input"], observed = input_entry(job.plan, task, job.observation(task))
    job.records.add(task.name, entry, stored.rows, png=stored.png, extras=stored.extras, pngs=stored.images,
                    observed=observed)
    job.recorded(task)
    for lg in job.loggers:
        lg.on_image_done(task.name, entry, stored.rows, None, True)
    return True


def _train(job: Job, members: list) -> None:
    """Train ``members`` ((index, task) pairs of one size, claimed by this job): one alone
    exactly as with K = 1, two or more as one stacked group; then record each image as a
    K = 1 job records it. The claims are dropped at the end, also on an error."""
    tasks = [task for _, task in members]
    heartbeat = [] if job.store is None else [_Heartbeat(job.store, tasks)]
    try:
        _train_claimed(job, members, heartbeat)
    finally:
        for task in tasks if job.store is not None else ():
            job.store.release(task.run_id)


def _train_claimed(job: Job, members: list, heartbeat: list) -> None:
    plan, store, records = job.plan, job.store, job.records
    tasks = [task for _, task in members]
    for index, task in members:
        records.start(task.name, task.run_id if store is not None else None)
        for lg in job.loggers:
            lg.on_image_start(index, len(plan.tasks), task.name, task.shape, task.run_id)
    if len(tasks) == 1:
        [task] = tasks
        checkpoint = store.checkpoint(task.run_id) if store is not None else \
            job.out_dir / "checkpoints" / f"{task.name}.pt"
        _drop_other_group_checkpoints(store, tasks)
    else:
        checkpoint = group_checkpoint(tasks, store, job.out_dir)
        _drop_other_group_checkpoints(store, tasks, keep=checkpoint)
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    seen = [job.observation(task) for task in tasks]
    results = train_group(plan, tasks, job.device, [*job.loggers, *job.callbacks, *heartbeat],
                          checkpoint if plan.settings.checkpoint_every else None, seen)
    for task, result, obs in zip(tasks, results, seen):
        _record_trained(job, task, result, obs, checkpoint if len(tasks) == 1 else None)
    if len(tasks) > 1:
        checkpoint.unlink(missing_ok=True)  # every image of the group has its record now


def _record_trained(job: Job, task: ImageTask, result: Result, seen: Observation, checkpoint: Path | None) -> None:
    """Write a trained image's records: the job's, the store's, and the loggers'."""
    plan, store = job.plan, job.store
    rows = curve_rows(task.name, result.curve)
    entry = {**image_summary(result), "run_id": task.run_id if store is not None else None, "reused": False,
             "bit_depth": task.bit_depth}  # the input file's bits per sample (bpdip.data)
    base = baseline(plan, task, seen)
    if base is not None:  # super-resolution only: deblurring entries keep their keys
        entry["baseline"] = base
    if result.cg is not None:  # BP by conjugate gradients (boundary=valid)
        entry["cg"] = result.cg
    observed = None
    if result.status == "complete":
        entry["input"], observed = input_entry(plan, task, seen)
    extras = {} if result.extended is None else {"extended": result.extended}
    bases = deblur_baselines(plan, task, seen) if result.status == "complete" else None
    if bases is not None:
        entry["baselines"] = bases[0]
        if plan.observed:  # no truth to measure them: the images are the comparison
            extras.update(bases[1])
    if store is not None:
        own = new_summary({**job.records.summary["run"], "status": entry["status"], "run_id": task.run_id,
                           "image_sha256": task.sha256})
        # the store keeps the run's result; y and the truth are the job's (input_entry re-makes them)
        own["images"][task.name] = {k: v for k, v in entry.items() if k not in ("reused", "input")}
        store.save(task.run_id, own, rows, result.image, plan.result_config, extras=extras,
                   images=result.stream_images)
    elif checkpoint is not None:
        checkpoint.unlink(missing_ok=True)
    job.records.add(task.name, entry, rows, image=result.image, extras=extras, images=result.stream_images,
                    observed=observed)
    job.recorded(task)
    for lg in job.loggers:
        lg.on_image_done(task.name, entry, rows, result.image, False)
