"""Exact resume on every path (issue 29): a job killed with SIGKILL right after a checkpoint
and relaunched writes the same metrics.csv, restored images and summary as a job that was
never interrupted, for BP under boundary=valid (CG warm start and statistics in the
checkpoint), super-resolution, a stacked group (engine.stack) and stop.early.

Each job is a real process (tests/resume_driver.py) that kills itself with SIGKILL after
the checkpoint of iteration 16, so the kill point is known and nothing of the process runs
after it; the relaunch is a new process on the same results store."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
DRIVER = ROOT / "tests" / "resume_driver.py"
# 24-40 iterations on 40 px crops of the slim net; logs at 0, 5, ... and the last iteration
BASE = ("experiment=smoke", "log_every=5", "checkpoint_every=8", "threads=1", "baselines=false")
KILL_AT = 16
CASES = {
    "valid_bp_tv": ("data.images=[face]", "boundary=valid", "loss=bp_tv", "loss.iterations=24"),
    "sr": ("data.images=[face]", "task=sr", "loss=bp", "loss.iterations=24"),
    "stacked_valid": ("data.images=[face,comic]", "engine.stack=2", "boundary=valid", "loss.iterations=24"),
    # ES-WMV with these parameters stops at iteration 30 of 60, after the kill at 16
    "stop_early": ("data.images=[face]", "loss.iterations=60", "stop=wmv", "stop.early=true",
                   "stop.reference_iterations=60", "stop.wmv.window=3", "stop.wmv.patience=6",
                   "stop.warmup.floor=0", "stop.warmup.fraction=0"),  # no warm-up guard (issue 32)
}
RUNTIME = ("runtime_s", "seconds_per_iteration")  # wall time: the only values that may differ


def launch(out: Path, kill_at: int, overrides) -> subprocess.Popen:
    args = [sys.executable, str(DRIVER), str(out), str(kill_at), *BASE, *overrides, f"results_root={out / 'store'}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def trained(out: Path) -> dict[str, list[int]]:
    logged = {}
    for line in (out / "trained.txt").read_text().splitlines():
        name, it = line.split()
        logged.setdefault(name, []).append(int(it))
    return logged


def images(job: Path) -> dict[str, bytes]:
    return {str(p.relative_to(job)): p.read_bytes() for p in sorted(job.rglob("*.png"))}


def entries(job: Path) -> dict:
    summary = json.loads((job / "summary.json").read_text())
    return {name: {k: v for k, v in e.items() if k not in RUNTIME} for name, e in summary["images"].items()}


@pytest.mark.parametrize("case", list(CASES))
def test_a_sigkilled_job_resumes_to_the_uninterrupted_result(tmp_path, case):
    overrides = CASES[case]
    running = []
    try:
        running.append(launch(tmp_path / "reference", 0, overrides))  # alongside the killed one
        running.append(launch(tmp_path / "resumed", KILL_AT, overrides))
        killed = running[-1]
        assert killed.wait(timeout=300) == -9, killed.stderr.read()[-2000:]  # SIGKILL, as planned
        ckpts = list((tmp_path / "resumed" / "store").rglob("*.pt"))
        assert len(ckpts) == 1, ckpts
        before = trained(tmp_path / "resumed")
        (tmp_path / "resumed" / "trained.txt").unlink()
        relaunch = launch(tmp_path / "resumed", 0, overrides)
        running.append(relaunch)
        assert relaunch.wait(timeout=300) == 0, relaunch.stderr.read()[-2000:]
        assert running[0].wait(timeout=300) == 0, running[0].stderr.read()[-2000:]
    finally:
        for proc in running:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    after = trained(tmp_path / "resumed")
    ref = trained(tmp_path / "reference")
    for name, its in ref.items():  # the killed job got to 16; the relaunch went on from there
        assert max(before[name]) < KILL_AT and min(after[name]) >= KILL_AT
        assert sorted(set(before[name]) | set(after[name])) == its
    assert not ckpts[0].exists()  # removed once the records exist
    job, ref_job = tmp_path / "resumed" / "job", tmp_path / "reference" / "job"
    resumed_csv = pd.read_csv(job / "metrics.csv").drop(columns="seconds")
    pd.testing.assert_frame_equal(resumed_csv, pd.read_csv(ref_job / "metrics.csv").drop(columns="seconds"),
                                  check_exact=True)
    assert resumed_csv.groupby("image").iteration.max().tolist() == \
        [max(i) for i in ref.values()]  # the runs' last logged iterations are in the files
    assert entries(job) == entries(ref_job)  # final/peak values, rules' choices, streams, cg
    assert images(job) == images(ref_job) and images(job)
    if "boundary=valid" in overrides:
        cg = [e["cg"] for e in entries(job).values()]
        assert all(c["solves"] == e["iterations"] for c, e in zip(cg, entries(job).values()))
    if case == "stop_early":
        [e] = entries(job).values()
        assert e["stopped_early"] and e["iterations"] > KILL_AT
