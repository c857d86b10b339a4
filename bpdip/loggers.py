"""Job loggers: the console and Weights & Biases, as callbacks of the optimisation loop.

Besides the loop's hooks (:class:`bpdip.loop.Callback`: ``on_log`` per logged record,
``on_end`` per finished sample), the runner calls job-level hooks: ``on_job_start``,
``on_image_start``, ``on_image_done`` (for trained images and for images reused from the
results store alike) and ``on_job_end``; ``close`` always runs last.
"""

from __future__ import annotations

import logging
import math
import os
import warnings

import numpy as np

from bpdip import curves
from bpdip.loop import Callback
from bpdip.records import CURVE_COLUMNS
from bpdip.stopping import statistic_columns

log = logging.getLogger("bpdip")

# metrics.csv's values (records.CURVE_COLUMNS less image, iteration, seconds: the perturbed
# stream, the loss, the rules' statistics, the clean and average streams), then the statistics
# the rules declare beyond them (bpdip.stopping; absent from older records: NaN, not logged)
CURVE_KEYS = tuple(c for c in CURVE_COLUMNS if c not in ("image", "iteration", "seconds")) + \
    tuple(c for c in statistic_columns() if c not in CURVE_COLUMNS)


def _value(rec: dict, key: str) -> float:
    v = rec.get(key)
    return float(v) if isinstance(v, (int, float)) and v is not None else math.nan


class JobLogger(Callback):
    def on_job_start(self, info: dict) -> None:
        """``info``: cell_name, cell, images, config (resolved, plain), out_dir, iterations, log_every,
        device, progress (whether the loop shows a progress bar)."""

    def on_image_start(self, index: int, total: int, name: str, shape: tuple, run_id: str | None) -> None:
        pass

    def on_image_done(self, name: str, entry: dict, rows: list[dict], image, reused: bool) -> None:
        pass

    def on_job_end(self, summary: dict, rows: list[dict]) -> None:
        pass

    def close(self) -> None:
        pass


def mean_curve(rows: list[dict], images: list[str]) -> list[dict]:
    """The curve averaged over ``images`` at the iterations that all of them logged
    (bpdip.curves.mean_curve, as the report's)."""
    return curves.mean_records(rows, images, CURVE_KEYS)


def _fmt(value, spec=".2f") -> str:
    return "-" if value is None or (isinstance(value, float) and not math.isfinite(value)) else format(value, spec)


class ConsoleLogger(JobLogger):
    """A line per image started and finished, and a one-screen summary per job
    (the progress bar with PSNR and ETA is the loop's own)."""

    def on_job_start(self, info):
        self.info = info
        log.info("cell %s: %d image(s), %d iterations, device %s; records in %s", info["cell_name"],
                 len(info["images"]), info["iterations"], info["device"], info["out_dir"])

    def on_image_start(self, index, total, name, shape, run_id):
        log.info("[%d/%d] %s (%dx%d): training", index + 1, total, name, shape[0], shape[1])
        self.first = None

    def on_log(self, result, record):
        """Without a progress bar (logs of batch jobs), a line every 10 logged records."""
        info = getattr(self, "info", None)
        if info is None or info.get("progress"):
            return
        it, seconds = record["iteration"], record["seconds"]
        if self.first is None:
            self.first = (it, seconds)
        every = 10 * info["log_every"]
        if it and it % every == 0 and it > self.first[0]:
            rate = (seconds - self.first[1]) / (it - self.first[0])
            quality = f", PSNR {record['psnr']:.2f} dB" if record.get("psnr") is not None else ""
            log.info("%s: iteration %d/%d%s, %.0f s, about %.0f s left", result.name, it,
                     info["iterations"], quality, seconds, rate * (info["iterations"] - it))

    def on_image_done(self, name, entry, rows, image, reused):
        how = "reused from the store" if reused else f"{_fmt(entry.get('runtime_s'), '.0f')} s"
        if entry["status"] == "complete":
            if entry.get("peak_psnr") is not None:
                log.info("%s: peak PSNR of the perturbed stream %s dB (SSIM %s) at iteration %s, final PSNR of "
                         "the restored image (%s) %s dB; %s", name, _fmt(entry["peak_psnr"]),
                         _fmt(entry["peak_ssim_dr2"], ".3f"), entry["peak_iteration"], restored_label(entry),
                         _fmt(entry["final_psnr"]), how)
            else:
                log.info("%s: restored (no ground truth: no PSNR); %s", name, how)
            if entry.get("stopping"):
                log.info("%s: stopping rules: %s", name, format_choices(entry))
            if entry.get("streams") and entry.get("peak_psnr") is not None:
                log.info("%s: restored image = the %s stream; %s", name, entry.get("restored_stream"),
                         format_streams(entry))
        else:
            log.warning("%s: %s (%s); %s", name, entry["status"].upper(), entry.get("error"), how)

    def on_job_end(self, summary, rows):
        log.info("%s", format_summary(summary, rows, self.info.get("out_dir")))


def restored_label(entry: dict) -> str:
    """What the restored image is, e.g. 'average stream, fixed @1500' (issue 32's ``restored``)."""
    r = entry.get("restored")
    if isinstance(r, dict):
        return f"{r.get('stream')} stream, {r.get('rule')} @{r.get('iteration')}"
    stream = entry.get("restored_stream") or "clean"
    rf = entry.get("restored_from")
    return f"{stream} stream, " + (f"{rf['rule']} @{rf['iteration']}" if rf else f"fixed @{entry.get('iterations')}")


def format_choices(entry: dict) -> str:
    """Each rule's chosen iteration (and PSNR with ground truth) on each stream it watched,
    e.g. 'perturbed stream: wmv @410 (stopped) 26.1 dB, ...; average stream: ...' (summary
    ``choices``); older records: the perturbed stream's ``stopping``."""
    if isinstance(entry.get("choices"), dict):
        return "; ".join(f"{stream} stream: " + _choices(rules) for stream, rules in entry["choices"].items()) + \
            f"; restored image: {restored_label(entry)}"
    return "perturbed stream: " + _choices(entry["stopping"], entry.get("restored_from"))


def _choices(rules: dict, restored: dict | None = None) -> str:
    parts = []
    for rule, c in rules.items():
        psnr = f" {c['psnr']:.2f} dB" if c.get("psnr") is not None else ""
        parts.append(f"{rule} @{c['iteration']}{' (stopped)' if c.get('stopped') else ''}{psnr}")
    tail = f"; restored image: {restored['rule']} @{restored['iteration']}" if restored else ""
    return ", ".join(parts) + tail


def format_streams(entry: dict) -> str:
    """Each output stream's peak and final PSNR, e.g. 'average: peak 26.10 dB @900, final 26.05 dB'."""
    return "; ".join(f"{s}: peak {_fmt(v.get('peak_psnr'))} dB @{v.get('peak_iteration')}, final "
                     f"{_fmt(v.get('final_psnr'))} dB" for s, v in entry["streams"].items())


def format_summary(summary: dict, rows: list[dict], out_dir=None) -> str:
    """The end-of-job table: one line per image, the means, and the peak of the mean curve."""
    run, images = summary["run"], summary["images"]
    cell = run["cell"]
    stream = (run.get("output") or {}).get("restore") or "clean"
    lines = [f"summary of {cell['loss']} / {cell['kernel']} / noise var {cell['noise_var']:g} "
             f"({run.get('device')}, status {run['status']}); peak: the perturbed stream's logged peak, "
             f"final: the restored image ({stream} stream)",
             f"{'image':<12} {'status':<9} {'peak PSNR':>9} {'@it':>6} {'SSIM dr2':>8} {'final PSNR':>10} "
             f"{'time s':>7}  source  restored image"]
    for name, e in images.items():
        lines.append(f"{name:<12} {e['status']:<9} {_fmt(e.get('peak_psnr')):>9} {_fmt(e.get('peak_iteration'), 'd'):>6} "
                     f"{_fmt(e.get('peak_ssim_dr2'), '.3f'):>8} {_fmt(e.get('final_psnr')):>10} "
                     f"{_fmt(e.get('runtime_s'), '.0f'):>7}  {'store' if e.get('reused') else 'trained':<7} "
                     f"{restored_label(e) if e['status'] == 'complete' else ''}")
    done = [n for n, e in images.items() if e["status"] == "complete"]
    if done and all(images[n].get("final_psnr") is not None for n in done):
        final = float(np.mean([images[n]["final_psnr"] for n in done]))
        peak = curves.best(mean_curve(rows, done))
        lines.append(f"mean over {len(done)}/{len(images)} complete image(s): final PSNR {final:.2f} dB "
                     f"(restored images); peak of the perturbed stream's mean curve {_fmt(peak and peak['psnr'])} dB "
                     f"(SSIM dr2 {_fmt(peak and peak['ssim_dr2'], '.3f')}) at iteration {peak and peak['iteration']}")
    if out_dir is not None:
        lines.append(f"records: {out_dir}")
    return "\n".join(lines)


class WandbLogger(JobLogger):
    """One W&B run per job: the resolved config, per-image curves against the iteration,
    the running mean over images, the mean curve, final images, the summary and, last, the
    job's records as an artifact (:func:`records_artifact`, read back by the report).

    Offline unless WANDB_MODE or ``logger.mode`` says otherwise. If W&B cannot start or
    fails later, a warning is given and the job goes on with its local records.
    """

    def __init__(self, settings: dict, out_dir):
        self.settings = settings
        self.out_dir = out_dir
        self.run = None
        self.done: list[str] = []
        self.entries: dict[str, dict] = {}

    def _guard(self, what, fn, *args):
        if self.run is None:
            return
        try:
            fn(*args)
        except Exception as exc:  # W&B trouble must never cost the local records
            warnings.warn(f"W&B {what} failed ({type(exc).__name__}: {exc}); continuing without W&B")
            run, self.run = self.run, None
            try:
                run.finish(exit_code=1)
            except Exception:
                pass

    def on_job_start(self, info):
        s = self.settings
        try:
            import wandb

            mode = os.environ.get("WANDB_MODE") or s.get("mode") or "offline"
            if mode == "offline":
                # ENVIRONMENT.md: with only init(mode="offline"), wandb still calls an
                # analytics host at exit (a 10 s wait where packets are dropped)
                os.environ["WANDB_MODE"] = "offline"
                os.environ.setdefault("WANDB_ERROR_REPORTING", "false")
            self.run = wandb.init(
                project=s.get("project"), entity=s.get("entity"), group=str(s.get("group")),
                name=str(s.get("run_name")), tags=list(s.get("tags") or []), config=info["config"],
                mode=mode, dir=str(self.out_dir), job_type="cell", reinit="finish_previous",
            )
        except Exception as exc:
            warnings.warn(f"W&B could not start ({type(exc).__name__}: {exc}); continuing with local records only")
            self.run = None
            return
        self._guard("setup", self._define)

    def _define(self):
        r = self.run
        r.define_metric("iteration")
        r.define_metric("curve/*", step_metric="iteration")
        r.define_metric("mean/*", step_metric="iteration")
        r.define_metric("images_done")
        r.define_metric("running/*", step_metric="images_done")

    def _log_record(self, name, rec):
        values = {f"curve/{name}/{k}": _value(rec, k) for k in CURVE_KEYS if rec.get(k) is not None}
        self.run.log({"iteration": rec["iteration"], **{k: v for k, v in values.items() if math.isfinite(v)}})

    def on_log(self, result, record):
        self._guard("logging", self._log_record, result.name, record)

    def on_image_done(self, name, entry, rows, image, reused):
        self._guard("logging", self._image_done, name, entry, rows, image, reused)

    def _image_done(self, name, entry, rows, image, reused):
        import wandb

        if reused:  # its curve was trained by an earlier job: log it from the record
            for rec in rows:
                self._log_record(name, rec)
        self.entries[name] = entry
        if entry["status"] == "complete":
            self.done.append(name)
        data = {"images_done": len(self.entries)}
        with_truth = [n for n in self.done if self.entries[n].get("final_psnr") is not None]
        if with_truth:  # running mean over the images finished so far
            for key in ("peak_psnr", "final_psnr", "final_ssim_dr2"):
                data[f"running/mean_{key}"] = float(np.mean([self.entries[n][key] for n in with_truth]))
            for stream in _streams(self.entries, with_truth):  # per output stream (bpdip.streams)
                for key in ("peak_psnr", "final_psnr"):
                    vals = [self.entries[n]["streams"][stream].get(key) for n in with_truth]
                    if all(v is not None for v in vals):
                        data[f"running/{stream}/mean_{key}"] = float(np.mean(vals))
        if image is not None and self.settings.get("log_images", True):
            data[f"restored/{name}"] = wandb.Image(np.clip(image, 0, 1), caption=f"{name}: final PSNR "
                                                    f"{_fmt(entry.get('final_psnr'))} dB")
        self.run.log(data)

    def on_job_end(self, summary, rows):
        self._guard("summary", self._job_end, summary, rows)

    def _job_end(self, summary, rows):
        curve = mean_curve(rows, self.done)
        for rec in curve:
            self.run.log({"iteration": rec["iteration"],
                          **{f"mean/{k}": rec[k] for k in CURVE_KEYS if math.isfinite(rec[k])}})
        peak = curves.best(curve)
        s = {"status": summary["run"]["status"], "images_complete": len(self.done),
             "images_total": len(summary["images"]), "config_hash": summary["run"]["config_hash"]}
        if peak:
            s.update({"table1/psnr": peak["psnr"], "table1/ssim_dr2": peak["ssim_dr2"],
                      "table1/ssim": peak["ssim"], "table1/iteration": peak["iteration"]})
        # the report's "stopping" table for this cell (bpdip.curves.rule_statistics)
        for rule, stats in curves.rule_statistics([summary["images"][n] for n in self.done]).items():
            s.update({f"stopping/{rule}/{k}": v for k, v in stats.items() if math.isfinite(v)})
        # each output stream's Table I numbers (the peak of its mean curve) and rule choices
        for stream in _streams(summary["images"], self.done):
            prefix = {"perturbed": ""}.get(stream, f"{stream}_")
            if prefix:
                best = curves.best(curve, f"{prefix}psnr")
                if best:
                    s.update({f"streams/{stream}/table1/psnr": best[f"{prefix}psnr"],
                              f"streams/{stream}/table1/ssim_dr2": best[f"{prefix}ssim_dr2"],
                              f"streams/{stream}/table1/iteration": best["iteration"]})
            per_stream = [{"status": "complete", "iterations": summary["images"][n].get("iterations"),
                           "stopping": summary["images"][n]["streams"][stream]["stopping"]} for n in self.done]
            for rule, stats in curves.rule_statistics(per_stream).items():
                s.update({f"streams/{stream}/stopping/{rule}/{k}": v for k, v in stats.items()
                          if k in ("n", "mean_psnr", "gap_db", "within_05", "iteration") and math.isfinite(v)})
        for name, e in summary["images"].items():  # "stopping": a nested dict, as in summary.json
            s.update({f"image/{name}/{k}": v for k, v in e.items() if v is not None})
        self.run.summary.update(s)
        self.run.log_artifact(records_artifact(self.out_dir, self.run.id))

    def close(self):
        if self.run is not None:
            run, self.run = self.run, None
            try:
                run.finish()
            except Exception as exc:
                warnings.warn(f"W&B finish failed ({exc}); local records are complete")


def records_artifact(out_dir, run_id: str):
    """The job directory's records (bpdip.records) as a W&B artifact: what the report reads
    from a local job, so that a report built from W&B equals the local one."""
    from pathlib import Path

    import wandb

    from bpdip.records import RECORD_DIRS, RECORD_FILES, WANDB_ARTIFACT_TYPE

    out = Path(out_dir)
    art = wandb.Artifact(f"records-{run_id}", type=WANDB_ARTIFACT_TYPE,
                         description="a bpdip job directory's records: summary.json, metrics.csv, images")
    for name in RECORD_FILES:
        if (out / name).is_file():
            art.add_file(str(out / name), name=name)
    for name in RECORD_DIRS:
        if (out / name).is_dir():
            art.add_dir(str(out / name), name=name)
    return art


def _streams(entries: dict, names: list[str]) -> list[str]:
    """The output streams every one of ``names`` records (none for schema-1/2 records)."""
    sets = [set((entries[n].get("streams") or {})) for n in names]
    common = set.intersection(*sets) if sets else set()
    return [s for s in ("perturbed", "clean", "average") if s in common]


def make_loggers(logger_cfg: dict, out_dir) -> list[JobLogger]:
    """The loggers named by the ``logger`` config group (console always)."""
    loggers: list[JobLogger] = [ConsoleLogger()]
    name = logger_cfg.get("name", "none")
    if name == "wandb":
        loggers.append(WandbLogger(logger_cfg, out_dir))
    elif name != "none":
        raise ValueError(f"unknown logger '{name}'; choose logger=none or logger=wandb")
    return loggers
