"""``threads`` (conf/config.yaml): how many torch CPU threads a job uses.

- a positive integer: that many (``torch.set_num_threads``);
- ``null``: torch's default (one per core), left as it is;
- ``auto`` (the default): :func:`auto_threads`, the rule below.

The rule comes from ``scripts/bench.py --threads-row`` (``results/bench/cpu-threads.json``)
and the step timings of ``results/bench/cpu-matrix.json`` (docs/engine.md "Threads"): on the
CPU a second thread pays only for a problem with enough work per step (the paper's net at
128 px: 1.76x faster at a load of 2-3; the small net at 96 px: never), and only while a
core is free; a thread more than the free cores makes every step wait (2 threads on the
loaded 2-core machine: 1.5x to 8x slower whole runs than 1 thread). So ``auto`` is

    1                                          on the CPU if the problem's work per step,
                                               parameters x pixels, is below AUTO_MIN_WORK
    max(1, usable cores - other load)          on the CPU otherwise
    torch's default                            on a CUDA device (the host only feeds the GPU)

with the usable cores those this process may run on (``os.sched_getaffinity``: a SLURM
allocation's) and the other load the 1-minute load average, rounded to the nearest
integer. It is read once, when the job starts: jobs started together see each other's load
only after a while, so several jobs started at once on a small machine should keep
``threads=1`` (the CPU presets do).
"""

from __future__ import annotations

import math
import os

# parameters x pixels of one step below which a second thread gains nothing: the small net
# (34,627 parameters) at 96 px is 3.2e8 (no gain, measured); the paper's net (2,217,831) at
# 128 px 3.6e10 (a gain on a less loaded machine) and at 256 px 1.5e11
AUTO_MIN_WORK = 1e10


def usable_cores() -> int:
    """The cores this process may run on (a SLURM or taskset allocation), else all of them."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def other_load() -> float:
    """The machine's 1-minute load average (0 where the platform has none)."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0


def auto_threads(device_type: str, parameters: int, pixels: int, cores: int | None = None,
                 load: float | None = None) -> int | None:
    """``threads=auto`` for a job on ``device_type`` training a network of ``parameters``
    on images of ``pixels`` (the largest); None: leave torch's default (module docstring)."""
    if device_type != "cpu":
        return None
    if parameters * pixels < AUTO_MIN_WORK:
        return 1
    cores = usable_cores() if cores is None else cores
    load = other_load() if load is None else load
    busy = math.floor(load + 0.5) if math.isfinite(load) and load > 0 else 0
    return max(1, min(cores, cores - busy))


def resolve_threads(value, device_type: str, parameters: int, pixels: int) -> int | None:
    """The thread count to set for the config value ``threads``, or None for torch's default.
    Checking the value (a positive integer, null or auto) is the plan's job."""
    if value is None:
        return None
    if value == "auto":
        return auto_threads(device_type, parameters, pixels)
    return int(value)
