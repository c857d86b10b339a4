"""Which device a job trains on, and how parallel jobs of one machine share its GPUs.

``device: auto`` gives the CPU without CUDA and ``cuda:0`` with one visible GPU (a SLURM
job with ``gpus_per_node: 1`` sees exactly its own GPU). With several visible GPUs, as
when ``hydra/launcher=joblib`` runs N jobs at once on one N-GPU machine, each job claims
a GPU that no other job holds: it takes an exclusive ``flock`` on a per-GPU lock file and
keeps it until the job ends. The kernel drops the lock when a worker dies, so a crash
never leaves a GPU claimed; jobs beyond the number of GPUs wait for one to free up.
Job number modulo the GPU count would put two jobs on one GPU as soon as jobs finish
out of order; joblib's workers have no stable index to use instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import tempfile
import time
from pathlib import Path

import torch

from bpdip.loop import resolve_device

log = logging.getLogger(__name__)


def lock_dir() -> Path:
    """Per-user folder of the GPU lock files (BPDIP_GPU_LOCKS overrides)."""
    default = Path(tempfile.gettempdir()) / f"bpdip-gpu-locks-{os.getuid()}"
    path = Path(os.environ.get("BPDIP_GPU_LOCKS", default))
    path.mkdir(parents=True, exist_ok=True)
    return path


def physical_ids(count: int) -> list[str]:
    """Names of the visible GPUs that stay the same in every job of the machine."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    ids = [v.strip() for v in visible.split(",") if v.strip()]
    return ids[:count] if len(ids) >= count else [str(i) for i in range(count)]


@contextlib.contextmanager
def claim_gpu(count: int, start: int = 0, directory: Path | None = None, poll_s: float = 1.0):
    """Hold an exclusive lock on one of ``count`` GPUs; yields its local index.

    Tries the GPUs from ``start`` (the job number spreads the first claims), then waits
    and retries until one is free.
    """
    directory = directory or lock_dir()
    names = physical_ids(count)
    waited = False
    while True:
        for k in range(count):
            idx = (start + k) % count
            fh = open(directory / f"gpu-{names[idx]}.lock", "a+")
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.close()
                continue
            try:
                fh.seek(0), fh.truncate(), fh.write(f"{os.getpid()}\n"), fh.flush()
                yield idx
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
                fh.close()
            return
        if not waited:
            log.info("all %d GPUs are claimed by other jobs; waiting for one", count)
            waited = True
        time.sleep(poll_s)


@contextlib.contextmanager
def job_device(spec: str = "auto", job_num: int = 0):
    """The torch device for one job (see the module docstring)."""
    if str(spec) != "auto" or not torch.cuda.is_available() or torch.cuda.device_count() < 2:
        yield resolve_device(spec)
        return
    with claim_gpu(torch.cuda.device_count(), start=job_num) as idx:
        device = torch.device("cuda", idx)
        torch.cuda.set_device(device)
        yield device


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
