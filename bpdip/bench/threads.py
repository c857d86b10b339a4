"""``scripts/bench.py --threads`` (issue 29): whole runs with 1 and 2 torch threads, on the
machine as it is ("quiet") and with one more busy process ("busy"), the evidence behind
``threads: auto`` (:func:`bpdip.runner.threads.resolve_threads`).

Each measurement is a whole ``python run.py`` process (imports, data, training, records:
what a user waits for), BP on one Set14 crop, no baselines, images, store or checkpoints;
its wall time ``wall_s`` and its training time ``train_s`` (the loop's clock at the last
logged iteration, from metrics.csv). "busy" starts a second process that spins a Python
loop (one core's worth of load, as a second job would be) before the pair and stops it
after. Per problem and load, the two thread counts are timed in ``rounds`` rounds, in
alternating order; ``ratio`` is the median over the rounds of t(2 threads) / t(1 thread):
below 1, the second thread pays; above 1, it costs.

The machine is recorded with each row: its CPU count, the cores this process may use,
and the 1-minute load average before and after the pair (``os.getloadavg``), because
"quiet" is only as quiet as the machine was.
"""

from __future__ import annotations

import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# (net, size, iterations): issue 29's problems; the iterations keep the whole row a few minutes
THREAD_PROBLEMS = (("small", 96, 150), ("paper", 128, 40), ("paper", 256, 12))
LOADS = ("quiet", "busy")
MODELS = {"small": "small", "paper": "skip", "slim": "slim"}  # conf/model/


def run_args(net: str, size: int, iterations: int, threads: int, out: Path) -> list[str]:
    """The run.py command of one measurement (one image, BP, nothing written but the records)."""
    return [sys.executable, str(ROOT / "run.py"), f"model={MODELS[net]}", "data.images=[barbara]",
            f"data.crop={size}", f"loss.iterations={iterations}", f"log_every={iterations}", f"threads={threads}",
            "baselines=false", "save_images=false", "results_root=null", "checkpoint_every=0", "progress=false",
            f"hydra.run.dir={out}"]


def busy_process() -> subprocess.Popen:
    """A second busy process: one Python loop spinning on one core until it is stopped."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def _load() -> float | None:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def measure_run(args: list[str], out: Path) -> dict:
    """Wall time of one run.py process and its training time (metrics.csv's last ``seconds``)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    t0 = time.perf_counter()
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"run.py failed ({done.returncode}): {done.stderr.strip().splitlines()[-1:]}")
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    return {"wall_s": wall, "train_s": float(rows[-1]["seconds"]), "last_iteration": int(rows[-1]["iteration"])}


def threads_rows(problems=THREAD_PROBLEMS, rounds: int = 1, loads=LOADS, threads=(1, 2), keep=None) -> list[dict]:
    """One row per (problem, load): every round's times per thread count and the ratios
    t(threads[1]) / t(threads[0]) of wall and training time (medians over the rounds)."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for net, size, iterations in problems:
            for load in loads:
                row = {"net": net, "size": size, "iterations": iterations, "load": load, "threads": list(threads),
                       "rounds": [], "cpu_count": os.cpu_count(),
                       "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None}
                for r in range(rounds):
                    order = list(threads) if r % 2 == 0 else list(reversed(threads))  # alternate who goes first
                    spinner = busy_process() if load == "busy" else None
                    try:
                        times = {"load_average_before": _load()}
                        for n in order:
                            out = Path(tmp) / f"{net}-{size}-{load}-{r}-{n}"
                            times[str(n)] = measure_run(run_args(net, size, iterations, n, out), out)
                        times["load_average_after"] = _load()
                    finally:
                        if spinner is not None:
                            spinner.kill()
                            spinner.wait()
                    row["rounds"].append(times)
                a, b = (str(n) for n in threads)
                for what in ("wall_s", "train_s"):
                    row[f"ratio_{what}"] = statistics.median(t[b][what] / t[a][what] for t in row["rounds"])
                rows.append(row)
                if keep is not None:
                    keep(rows)
    return rows


def print_rows(rows: list[dict]) -> None:
    print(f"{'net':6} {'size':>5} {'load':6} {'2 vs 1 thread (wall)':>21} {'(training)':>11}  load avg")
    for r in rows:
        loads = [t["load_average_before"] for t in r["rounds"]]
        print(f"{r['net']:6} {r['size']:>5} {r['load']:6} {r['ratio_wall_s']:>20.2f}x {r['ratio_train_s']:>10.2f}x"
              f"  {', '.join(f'{v:.1f}' for v in loads if v is not None)}")
