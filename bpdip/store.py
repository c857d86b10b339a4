"""The results store: finished work keyed by stable ids, so that sweeps never redo it.

Every (cell, image, seed, result-relevant config) gets a stable ``run_id``; its files live
in ``<results_root>/<run_id>/``:

``summary.json``   the record (schema 1 of :mod:`bpdip.records`, one image), written LAST
                   and atomically: its presence and validity mark the image as done.
``metrics.csv``    the image's curve.
``restored.png``   the final restored image (16-bit RGB PNG; 8-bit in records before 2026-12-06).
``restored_<x>.png`` more images of it: ``restored_extended.png`` (boundary=valid: all of
                   x, y's frame and the border) and the baselines' (``restored_wiener.png``...).
``images/``        ``<stream>.<rule>.png``: each output stream's oracle image and the restored
                   stream's rule choices (schema 3, summary.json ``images``), copied back into
                   a job's ``images/<image>/`` when the image is reused.
``config.json``    the result-relevant config the id was computed from (for humans).
``checkpoint.pt``  while training: the resumable state (removed once the record exists).
``claim.json``     while training: which job trains the image (host, pid, SLURM job), so a
                   second sweep over the same ids waits for that job instead of training
                   the image twice. The holder touches it at every log (a heartbeat); a
                   claim whose holder died (same host: its pid is gone; else no heartbeat
                   for ``claim_timeout_min``) is taken over, and a requeued SLURM job
                   takes back its own.

A relaunched sweep reads the record and skips the image; a record that is truncated or
inconsistent with its curve is reported and the image is trained again, never averaged.

The id hashes the resolved config minus :data:`BOOKKEEPING` keys (where files go, how
runs are logged or shown, which device runs them), plus the SHA-256 of the image file and
of the blur kernel, so renaming a folder keeps the id and editing an image changes it.
Your own fidelity, kernel or network named by import path adds the SHA-256 of its
source file (``bpdip.registry.source_sha256``). The git commit is not part of the id (a
README edit must not retrain Table I); the id carries :data:`RESULTS_VERSION` instead,
which a change to what a run computes (loss, network, loop, degradation, metrics) must
bump, so that old records are never reused for new code.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from bpdip import curves
from bpdip.records import CorruptRecord, read_metrics_csv, read_summary, write_json, write_metrics_csv, write_png

log = logging.getLogger(__name__)

# Dotted config keys that never change a result. Everything else is result-relevant, so a
# new config key is hashed by default (a wrongly reused result is worse than a redo).
BOOKKEEPING = (
    "hydra", "logger", "results_root", "reuse", "retry_failed", "device", "threads",
    "progress", "save_images", "baselines", "checkpoint_every", "claim_timeout_min", "demo",
    "data.name", "data.folder", "data.images", "data.path",  # which files: replaced by the image hash
    "kernel.path",  # replaced by the kernel hash
    # speed-only engine switches (the engine keeps results equal across them); the
    # precision and the optimiser implementation stay in the id, resolved for the job's
    # device (bpdip.runner.plan: "auto" is tf32 + fused Adam on a GPU, fp32 on a CPU)
    "engine.compile", "engine.compile_mode", "engine.cuda_graphs", "engine.stack",
    "engine.channels_last", "engine.cudnn_benchmark", "engine.warmup",
)
# Bump when a code change alters the numbers a run produces: every id changes with it, so
# the store retrains instead of reusing records of the old code. Speed-only changes keep it.
# 2: records carry every stopping rule's choice and statistics (bpdip.stopping; version-1
#    records lack them, so they are not reused), and the config gained the stop block.
# 3: records carry the clean and average output streams (bpdip.streams, issue 20) and the
#    restored image is output.restore's stream (default: the average, no longer f(z));
#    version-2 records say nothing about the streams, so they are not reused.
# 4: issue 32: every online rule on the perturbed and the average stream with a warm-up
#    guard, and bp_discrepancy; issue 29: the last iteration is always logged, the rules'
#    windows and patience never scaled below 10 iterations, exact resume under boundary=valid.
RESULTS_VERSION = 4
STORE_FILES = ("summary.json", "metrics.csv", "restored.png", "config.json", "checkpoint.pt", "claim.json", "images")
IMAGES_DIR = "images"  # <run_id>/images/<stream>.<rule>.png (summary.json "images")
CLAIM = "claim.json"


def canonical(value):
    """A JSON-ready copy in which equal settings look equal: keys sorted, and numbers
    with an integral value written as integers (``noise.var=2`` and ``2.0`` agree)."""
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return value


def digest(value, length: int = 16) -> str:
    text = json.dumps(canonical(value), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def drop_keys(config: dict, keys=BOOKKEEPING) -> dict:
    """A copy of a plain (resolved) config without the given dotted keys."""
    out = json.loads(json.dumps(config))  # deep copy of plain data
    for dotted in keys:
        node, *rest = dotted.split(".")
        parent, key = out, node
        for part in rest:
            parent = parent.get(key) if isinstance(parent, dict) else None
            key = part
        if isinstance(parent, dict):
            parent.pop(key, None)
    return out


def result_config(config: dict, kernel_sha256: str) -> dict:
    """The part of a resolved config that determines a cell's results, with the version of
    the code's results (:data:`RESULTS_VERSION`)."""
    return {**drop_keys(config), "kernel_sha256": kernel_sha256, "results_version": RESULTS_VERSION}


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def make_run_id(cell_name: str, image: str, config_hash: str, image_sha256: str, bit_depth: int | None = None) -> str:
    """``<cell>-<image>-<12 hex>``: readable, and stable for the same inputs. ``bit_depth``
    (None: not part of the id) marks a file read at a depth older code did not read it at."""
    fields = {"config_hash": config_hash, "image": image, "image_sha256": image_sha256}
    if bit_depth is not None:
        fields["bit_depth"] = bit_depth
    key = digest(fields, 12)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{cell_name}-{image}")
    return f"{safe}-{key}"


def expected_rows(iterations: int, log_every: int) -> int:
    """The loop logs at iterations 0, log_every, ... below ``iterations``, and at the last one,
    ``iterations - 1`` (``bpdip.loop.is_logged``; issue 29)."""
    return len(range(0, iterations, log_every)) + (1 if (iterations - 1) % log_every else 0)


def claimant() -> dict:
    """Who this process is, for a claim: host and pid, and the SLURM job (array task) if
    any, which stays the same when SLURM requeues the job on another node."""
    job = os.environ.get("SLURM_ARRAY_JOB_ID") or os.environ.get("SLURM_JOB_ID")
    if job and os.environ.get("SLURM_ARRAY_TASK_ID"):
        job = f"{job}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return {"host": socket.gethostname(), "pid": os.getpid(), "slurm_job": job}


def _alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, TypeError, ValueError):
        return True  # someone else's process, or unreadable: assume alive
    return True


@dataclass
class StoredImage:
    """A finished image read back from the store."""

    run_id: str
    entry: dict  # its summary.json image entry
    rows: list[dict]  # its metrics.csv rows
    png: Path | None
    extras: dict = None  # suffix -> path of restored_<suffix>.png (JobRecords.add's extras)
    images: dict = None  # "<stream>.<rule>" -> the stored PNG (schema 3)


class Store:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def dir(self, run_id: str) -> Path:
        return self.root / run_id

    def checkpoint(self, run_id: str) -> Path:
        return self.dir(run_id) / "checkpoint.pt"

    def load(self, run_id: str, image: str, iterations: int, log_every: int,
             accept_failed: bool = True) -> StoredImage | None:
        """The finished record of ``run_id``, or None when the image must (still) be trained.

        A record that exists but cannot be trusted is logged as a warning and ignored,
        so the image is trained again and the new record replaces it.
        """
        d = self.dir(run_id)
        if not (d / "summary.json").exists():
            return None
        try:
            stored = self._read(d, run_id, image, iterations, log_every)
        except CorruptRecord as exc:
            log.warning("store: ignoring the record in %s (%s); this image is trained again", d, exc)
            return None
        if stored.entry["status"] == "failed" and not accept_failed:
            return None
        ckpt = self.checkpoint(run_id)
        if ckpt.exists():  # left by a kill between the record and the clean-up
            ckpt.unlink()
        return stored

    def save(self, run_id: str, summary: dict, rows: list[dict], image=None, config: dict | None = None,
             extras: dict | None = None, images: dict | None = None) -> Path:
        """Write an image's record; summary.json goes last, so it marks completion.
        ``extras``: suffix -> image, written as ``restored_<suffix>.png``; ``images``:
        "<stream>.<rule>" -> (H, W, 3) array, written to ``images/<key>.png``."""
        d = self.dir(run_id)
        d.mkdir(parents=True, exist_ok=True)
        if config is not None:
            write_json(d / "config.json", config)
        write_metrics_csv(d / "metrics.csv", rows)
        if image is not None:
            write_png(d / "restored.png", image, bits=16)
        for suffix, extra in (extras or {}).items():
            write_png(d / f"restored_{suffix}.png", extra)
        for key, img in (images or {}).items():
            write_png(d / IMAGES_DIR / f"{key}.png", img)
        write_json(d / "summary.json", summary)
        self.checkpoint(run_id).unlink(missing_ok=True)
        return d

    # ---------------------------------------------------------------- claims

    def claim(self, run_id: str, timeout_s: float) -> dict | None:
        """Claim ``run_id`` for this process: None when it is ours now, else the live
        holder's claim (another job trains this image; wait for its record)."""
        path = self.dir(run_id) / CLAIM
        path.parent.mkdir(parents=True, exist_ok=True)
        me = claimant()
        holder = None
        for _ in range(3):  # a claim found dead is removed, then taken (O_EXCL settles races)
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder(path)
                if holder is not None and not self._ours(holder, me) and not self._dead(path, holder, me, timeout_s):
                    return holder
                log.info("store: taking over the claim on %s (%s)", run_id,
                         "ours" if holder and self._ours(holder, me) else "its holder is gone")
                path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                json.dump({**me, "since": time.time()}, f)
            return None
        return holder or {"host": "?", "pid": None, "slurm_job": None}

    def heartbeat(self, run_id: str) -> None:
        """Show that the holder still trains ``run_id`` (the claim's mtime)."""
        try:
            os.utime(self.dir(run_id) / CLAIM)
        except FileNotFoundError:
            pass

    def release(self, run_id: str) -> None:
        """Drop the claim on ``run_id`` if it is this process's."""
        path = self.dir(run_id) / CLAIM
        holder = self._holder(path)
        if holder is not None and self._ours(holder, claimant()):
            path.unlink(missing_ok=True)

    @staticmethod
    def _holder(path: Path) -> dict | None:
        try:
            holder = json.loads(path.read_text())
            return holder if isinstance(holder, dict) else {}
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}  # being written, or garbage: judged by its age alone

    @staticmethod
    def _ours(holder: dict, me: dict) -> bool:
        if holder.get("slurm_job") and holder.get("slurm_job") == me["slurm_job"]:
            return True  # this SLURM job before its requeue
        return holder.get("host") == me["host"] and holder.get("pid") == me["pid"]

    @staticmethod
    def _dead(path: Path, holder: dict, me: dict, timeout_s: float) -> bool:
        if holder.get("host") == me["host"] and holder.get("pid") is not None and not _alive(holder["pid"]):
            return True
        try:
            return time.time() - path.stat().st_mtime > timeout_s
        except FileNotFoundError:
            return True

    @staticmethod
    def _read(d: Path, run_id: str, image: str, iterations: int, log_every: int) -> StoredImage:
        summary = read_summary(d / "summary.json")
        if summary["run"].get("run_id") != run_id:
            raise CorruptRecord(f"run_id {summary['run'].get('run_id')!r} != {run_id!r}")
        entry = summary["images"].get(image)
        if entry is None or set(summary["images"]) != {image}:
            raise CorruptRecord(f"record holds {sorted(summary['images'])}, expected only {image!r}")
        if entry["status"] not in ("complete", "failed"):
            raise CorruptRecord(f"status {entry['status']!r} is not final")
        rows = read_metrics_csv(d / "metrics.csv")
        if any(r["image"] != image for r in rows):
            raise CorruptRecord("metrics.csv holds rows of another image")
        n = expected_rows(iterations, log_every)
        if entry["status"] == "complete":
            ran = entry.get("iterations")
            if entry.get("stopped_early") is True:  # stop.early ended it at a logged iteration
                if not (isinstance(ran, int) and 0 < ran <= iterations and len(rows) == expected_rows(ran, log_every)):
                    raise CorruptRecord(f"{len(rows)} curve rows and {ran} iterations do not fit a run stopped "
                                        f"early within {iterations} iterations")
            elif len(rows) != n or ran != iterations:
                raise CorruptRecord(f"{len(rows)} curve rows and {ran} iterations, "
                                    f"expected {n} rows and {iterations} iterations")
            peak = (curves.best(rows, "psnr") or {}).get("psnr")
            if peak is None and all(entry.get(k) is None for k in ("peak_psnr", "final_psnr")):
                pass  # no ground truth (data=observed): no PSNR anywhere
            elif peak is None or entry.get("peak_psnr") is None or not math.isclose(peak, entry["peak_psnr"]):
                raise CorruptRecord(f"peak_psnr {entry.get('peak_psnr')} does not match the curve's {peak}")
            elif entry.get("final_psnr") is None:
                raise CorruptRecord("a complete record without final_psnr")
        elif len(rows) > n:
            raise CorruptRecord(f"{len(rows)} curve rows, at most {n} expected")
        png = d / "restored.png"
        extras = {p.stem[len("restored_"):]: p for p in sorted(d.glob("restored_*.png"))}
        keys = entry.get("images") if isinstance(entry.get("images"), dict) else {}
        images = {k: d / IMAGES_DIR / f"{k}.png" for k in keys if (d / IMAGES_DIR / f"{k}.png").is_file()}
        return StoredImage(run_id, entry, rows, png if png.is_file() else None, extras, images)
