"""The SLURM path against a real scheduler: a one-node cluster (tests/slurm_cluster.py,
scripts/local_slurm.sh) runs the sweeps of ``hydra/launcher=slurm`` as array jobs, with
the overrides a CPU-only cluster needs. Faults: USR2 near the time limit, an external
``scontrol requeue``, a failing job, a relaunch, two sweeps over the same ids at once.

Every sweep is a subprocess with its own time limit, so a scheduler that hangs fails its
test; after each test the cluster's jobs are cancelled. The jobs import this checkout's
bpdip (PYTHONPATH, inherited through sbatch), which their records' git commit confirms.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from bpdip.loop import atomic_save
from bpdip.records import read_summary
from bpdip.provenance import git_commit
from slurm_cluster import ROOT, slurm_cluster  # noqa: F401  (the session fixture)

# the project's launcher config, plus what this CPU-only cluster (2 CPUs, no GPU) needs
SLURM = ("hydra/launcher=slurm", "hydra.launcher.partition=debug", "hydra.launcher.gpus_per_node=0",
         "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1")
# one image long enough to be interrupted mid-run, checkpointed often: after the first
# checkpoint it must outlast SLURM's kill sequence (KillWait 2 s, then srun's own wait of up
# to 4 s, while submitit bypasses SIGTERM). 800 iterations (4.4 s on an idle core) finished
# inside it; 3000 take ~16 s idle and ~45 s on a loaded 2-core machine.
LONG_ITERATIONS = 3000
LONG = ("experiment=smoke", "data.images=[face]", f"loss.iterations={LONG_ITERATIONS}", "log_every=50",
        "checkpoint_every=50")


class Sweep:
    """``python run.py -m ...`` in its own process group, its output in files."""

    def __init__(self, cwd: Path, *args: str, name: str = "sweep"):
        self.cwd, self.name = cwd, name
        cwd.mkdir(parents=True, exist_ok=True)
        self.out, self.err = cwd / f"{name}.stdout", cwd / f"{name}.stderr"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               "PYTHONUNBUFFERED": "1"}
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.proc = subprocess.Popen([sys.executable, str(ROOT / "run.py"), "-m", *args], cwd=cwd, env=env,
                                         stdout=out, stderr=err, start_new_session=True)
        RUNNING.append(self)

    def running(self) -> bool:
        return self.proc.poll() is None

    def stderr(self) -> str:
        return self.err.read_text()

    def output(self) -> str:
        """stdout and stderr (the launching side logs to stdout, Hydra's errors go to stderr)."""
        return self.out.read_text() + self.err.read_text()

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"{self.name} still running after {timeout} s; its stderr ends:\n{self.stderr()[-3000:]}")

    def kill(self) -> None:
        if self.running():
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


RUNNING: list[Sweep] = []


@pytest.fixture(autouse=True)
def cluster(slurm_cluster):  # noqa: F811
    """The cluster, left without jobs or sweep processes by each test, passed or failed."""
    yield slurm_cluster
    while RUNNING:
        RUNNING.pop().kill()
    slurm_cluster.cancel_all()


def wait_for(what: str, condition, timeout: float, sweep: Sweep | None = None, poll: float = 0.05):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if sweep is not None and not sweep.running():
            pytest.fail(f"{sweep.name} ended before {what}; its stderr ends:\n{sweep.stderr()[-3000:]}")
        assert time.monotonic() < deadline, f"no {what} after {timeout} s"
        time.sleep(poll)
    return value


def array_job(sweep_dir: Path) -> str:
    """The SLURM array job of a sweep: submitit's folder of its submission file."""
    [script] = (sweep_dir / ".submitit").glob("*/*_submission.sh")
    return script.parent.name


def curve(job_dir: Path, image: str) -> pd.DataFrame:
    frame = pd.read_csv(job_dir / "metrics.csv")
    return frame[frame.image == image].drop(columns="seconds").reset_index(drop=True)


def trained(job_dir: Path) -> list[str]:
    """The images a job trained itself (not taken from the store)."""
    return [n for n, e in read_summary(job_dir / "summary.json")["images"].items() if not e["reused"]]


def leftovers(store: Path) -> list[str]:
    return sorted(str(p.relative_to(store)) for p in store.rglob("*") if p.name in ("claim.json", "checkpoint.pt"))


def check_complete(job_dir: Path, images: list[str]) -> dict:
    summary = read_summary(job_dir / "summary.json")
    assert summary["run"]["status"] == "complete", summary["run"]
    assert list(summary["images"]) == images and all(e["status"] == "complete" for e in summary["images"].values())
    assert summary["run"]["git_commit"] == git_commit()  # the job ran this checkout's code
    return summary


# ---------------------------------------------------------------- the cluster

def test_local_slurm_script_reports_status_and_never_starts_over_a_running_cluster(cluster, tmp_path):
    script = str(ROOT / "scripts" / "local_slurm.sh")
    status = subprocess.run(["bash", script, "status", str(cluster.folder)], capture_output=True, text=True,
                            timeout=30)
    assert status.returncode == 0, status.stdout
    for daemon in ("munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd"):
        assert f"{daemon} running (pid " in status.stdout
    assert f"export SLURM_CONF={cluster.conf}" in status.stdout
    # a second cluster elsewhere: the ports are ours, so it refuses (status 3: the tests skip)
    other = subprocess.run(["bash", script, "start", str(tmp_path / "other")], capture_output=True, text=True,
                           timeout=30)
    assert other.returncode == 3 and "port 6817 is taken" in other.stderr.splitlines()[-1]
    assert subprocess.run(["bash", script, "stop", str(tmp_path / "other")], timeout=30).returncode == 0
    assert cluster.run("sinfo", "-h", "-o", "%T").split() == ["idle"]  # ours untouched


# ---------------------------------------------------------------- sweeps

FOUR = ("kernel=uniform,radial", "loss=bp,bp_tv", "experiment=smoke")
JOBS = ["0-uniform-0.3-bp", "1-uniform-0.3-bp_tv", "2-radial-0.3-bp", "3-radial-0.3-bp_tv"]


@pytest.fixture(scope="module")
def four_jobs(slurm_cluster, tmp_path_factory):  # noqa: F811
    """The issue's sweep through the scheduler: 2 kernels x 2 losses = 4 SLURM jobs."""
    base = tmp_path_factory.mktemp("four")
    sweep = Sweep(base, *FOUR, *SLURM, "hydra.sweep.dir=sweep", "results_root=store")
    rc = sweep.wait(timeout=150)
    assert rc == 0, sweep.stderr()[-3000:]
    return base


def test_a_sweep_runs_as_slurm_jobs_with_records_store_entries_and_report(four_jobs, cluster):
    sweep, store = four_jobs / "sweep", four_jobs / "store"
    job = array_job(sweep)
    assert sorted(cluster.accounting(job)) == [(f"{job}_{i}", "COMPLETED") for i in range(4)]
    submitted = (sweep / ".submitit" / job / f"{job}_submission.sh").read_text()
    for line in ("#SBATCH --array=0-3%4", "#SBATCH --requeue", "#SBATCH --signal=USR2@120", "#SBATCH --gpus-per-node=0"):
        assert line in submitted, line
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir() and not p.name.startswith(".")) == [*JOBS, "report"]
    entries = set()
    for name in JOBS:
        summary = check_complete(sweep / name, ["face", "comic"])
        for image, entry in summary["images"].items():
            assert not entry["reused"]
            stored = read_summary(store / entry["run_id"] / "summary.json")["images"][image]
            assert stored["final_psnr"] == entry["final_psnr"]
            entries.add(entry["run_id"])
    assert len(entries) == 8 and sorted(p.name for p in store.iterdir()) == sorted(entries)
    assert leftovers(store) == []
    # the report, written on the launching side once the jobs returned
    table = pd.read_csv(sweep / "report" / "table1.csv")
    done = table[table.status == "complete"]
    assert sorted(zip(done.kernel, done.loss)) == [("radial", "bp"), ("radial", "bp_tv"),
                                                   ("uniform", "bp"), ("uniform", "bp_tv")]
    assert set(done.n_images) == {2}


def test_relaunching_the_finished_sweep_trains_nothing(four_jobs):
    store = four_jobs / "store"
    files = {p: p.read_bytes() for p in store.rglob("*") if p.is_file()}
    again = Sweep(four_jobs, *FOUR, *SLURM, "hydra.sweep.dir=again", "results_root=store", name="again")
    assert again.wait(timeout=150) == 0, again.stderr()[-3000:]
    for name in JOBS:
        summary = check_complete(four_jobs / "again" / name, ["face", "comic"])
        assert all(e["reused"] for e in summary["images"].values())
        log = (four_jobs / "again" / name / "run.log").read_text()
        assert "): training" not in log and log.count("reused from the store") == 2  # 0 iterations trained
        for image in ("face", "comic"):
            pd.testing.assert_frame_equal(curve(four_jobs / "again" / name, image),
                                          curve(four_jobs / "sweep" / name, image), check_exact=True)
    assert {p: p.read_bytes() for p in store.rglob("*") if p.is_file()} == files  # the store untouched
    assert (four_jobs / "again" / "report" / "table1.csv").read_text().count(",complete,") == 4


# ---------------------------------------------------------------- interruptions

@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The same run as the interrupted ones, uninterrupted and without SLURM (started at
    once in the background; ``reference()`` waits for it and gives its job folder)."""
    base = tmp_path_factory.mktemp("reference")
    args = [sys.executable, str(ROOT / "run.py"), *LONG, "hydra.run.dir=job", "results_root=store"]
    with open(base / "stderr", "w") as err:
        proc = subprocess.Popen(args, cwd=base, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)

    def result() -> Path:
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            pytest.fail("the uninterrupted reference run took over 120 s")
        assert proc.returncode == 0, (base / "stderr").read_text()[-3000:]
        return base / "job"

    yield result
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def interrupt_mid_run(cluster, tmp_path, interrupt, *overrides):
    """Start a one-job sweep of LONG, let it write its first checkpoint in the store,
    interrupt it with ``interrupt(job_id)``, and once SLURM has requeued it (pending again,
    the old process gone) mark the checkpoint: 1000 s more on its clock, so that a run
    that went on from this very checkpoint ends with runtime_s >= 1000, and one that
    started over does not. Returns (sweep, store, iteration of the checkpoint)."""
    store = tmp_path / "store"
    sweep = Sweep(tmp_path, *LONG, *SLURM, *overrides, "hydra.sweep.dir=sweep", "results_root=store")
    ckpt = wait_for("first checkpoint", lambda: next(store.glob("*/checkpoint.pt"), None), 120, sweep)
    job = json.loads((ckpt.parent / "claim.json").read_text())["slurm_job"]
    assert job and cluster.queue()[job] == "RUNNING"
    interrupt(job)
    wait_for("requeued job", lambda: cluster.queue().get(job) == "PENDING", 60, sweep)
    assert not (ckpt.parent / "summary.json").exists(), "the run finished before the interruption"
    state = torch.load(ckpt, weights_only=False)
    assert 0 < state["iteration"] < LONG_ITERATIONS
    state["elapsed"] += 1000.0
    atomic_save(state, ckpt)
    return sweep, store, state["iteration"]


def check_resumed(tmp_path, store, reference, iteration):
    job_dir = tmp_path / "sweep" / "0-uniform-0.3-bp"
    summary = check_complete(job_dir, ["face"])
    entry = summary["images"]["face"]
    assert entry["iterations"] == LONG_ITERATIONS and entry["reused"] is False
    assert entry["runtime_s"] >= 1000  # it went on from the checkpoint in the store
    seconds = pd.read_csv(job_dir / "metrics.csv").set_index("iteration").seconds
    assert (seconds[seconds.index < iteration] < 1000).all() and (seconds[seconds.index >= iteration] >= 1000).all()
    # on the CPU, the interrupted run's curve and final image equal an uninterrupted run's
    ref_dir = reference()
    pd.testing.assert_frame_equal(curve(job_dir, "face"), curve(ref_dir, "face"), check_exact=True)
    ref = read_summary(ref_dir / "summary.json")["images"]["face"]
    for key in ("final_psnr", "final_ssim", "peak_psnr", "peak_iteration"):
        assert entry[key] == ref[key], key
    assert (job_dir / "restored" / "face.png").read_bytes() == (ref_dir / "restored" / "face.png").read_bytes()
    assert read_summary(store / entry["run_id"] / "summary.json")["images"]["face"]["final_psnr"] == ref["final_psnr"]
    assert leftovers(store) == []
    submitit_log = next((tmp_path / "sweep" / ".submitit").glob("*/*_0_log.out")).read_text()
    assert submitit_log.count("Starting with JobEnvironment") == 2  # two attempts of one job
    return submitit_log


def test_usr2_near_the_time_limit_checkpoints_requeues_and_resumes(cluster, tmp_path, reference):
    """USR2 is what SLURM sends signal_delay_s before the time limit. With timeout_min < 12.5
    submitit takes any USR2 for a timeout: it requeues the job itself (scontrol requeue,
    which the cluster allows only because the launcher asks for --requeue) and counts it."""
    sweep, store, iteration = interrupt_mid_run(
        cluster, tmp_path, lambda job: cluster.run("scancel", "--signal=USR2", job), "hydra.launcher.timeout_min=5")
    assert sweep.wait(timeout=150) == 0, sweep.stderr()[-3000:]
    submitit_log = check_resumed(tmp_path, store, reference, iteration)
    err_log = next((tmp_path / "sweep" / ".submitit").glob("*/*_0_log.err")).read_text()
    assert "Caught signal SIGUSR2" in err_log and "this job is timed-out" in err_log
    assert "Requeued job" in submitit_log and "remaining timeouts" in submitit_log


def test_an_external_scontrol_requeue_restarts_the_job_and_ends_with_correct_records(cluster, tmp_path, reference):
    """``scontrol requeue`` (an admin, or SLURM after a node failure) kills the job without
    a checkpoint call; the restarted job runs the cell again: it takes back its own claim,
    left by the killed process, and goes on from the checkpoint it finds in the store."""
    sweep, store, iteration = interrupt_mid_run(cluster, tmp_path, lambda job: cluster.run("scontrol", "requeue", job))
    assert len(list(store.glob("*/claim.json"))) == 1  # the killed process never released its claim
    assert sweep.wait(timeout=150) == 0, sweep.stderr()[-3000:]
    check_resumed(tmp_path, store, reference, iteration)
    job = array_job(tmp_path / "sweep")
    assert cluster.accounting(job)[-1][1] == "COMPLETED"


# ---------------------------------------------------------------- failures and concurrency

def test_a_failing_job_does_not_spoil_the_sweep_and_is_reported_in_one_line(cluster, tmp_path):
    sweep = Sweep(tmp_path, "data.images=nosuch,face,comic", "experiment=smoke", *SLURM, "hydra.sweep.dir=sweep",
                  "results_root=store")
    assert sweep.wait(timeout=150) == 1
    err = sweep.stderr()
    assert "Traceback" not in err
    error = "error: image 'nosuch' not found as a file or in"
    [line] = [ln for ln in err.splitlines() if ln.startswith("  #0 ")]  # the sweep's closing message
    assert line.startswith(f"  #0 data.images=nosuch experiment=smoke results_root=store: {error}")
    assert "known names: baboon" in line and "(state FAILED, log " in line
    assert "1 of 3 jobs of the sweep failed" in err
    assert sum(f"job #0 data.images=nosuch experiment=smoke results_root=store: {error}" in ln
               for ln in sweep.output().splitlines()) == 1  # logged once when the job ended
    job = array_job(tmp_path / "sweep")
    assert sorted(cluster.accounting(job)) == [(f"{job}_0", "FAILED"), (f"{job}_1", "COMPLETED"),
                                               (f"{job}_2", "COMPLETED")]
    for num, image in ((1, "face"), (2, "comic")):  # the others finished, with their store entries
        summary = check_complete(tmp_path / "sweep" / f"{num}-uniform-0.3-bp", [image])
        assert (tmp_path / "store" / summary["images"][image]["run_id"] / "summary.json").is_file()
    assert not (tmp_path / "sweep" / "0-uniform-0.3-bp" / "summary.json").exists()
    # the report of what finished: the cell with its two images
    table = pd.read_csv(tmp_path / "sweep" / "report" / "table1.csv")
    [cell] = table[(table.kernel == "uniform") & (table.noise_var == 0.3) & (table.loss == "bp")].to_dict("records")
    assert (cell["status"], cell["n_images"]) == ("complete", 2)


def test_two_sweeps_over_the_same_ids_at_once_never_train_an_image_twice(cluster, tmp_path):
    """Two sweeps of the same cell start together: one job claims face, the other finds it
    claimed and trains comic meanwhile; each then takes the other's record from the store."""
    args = ("experiment=smoke", "loss.iterations=600", "log_every=50", "checkpoint_every=50", *SLURM,
            "results_root=store")
    store = tmp_path / "store"
    sweeps = {name: Sweep(tmp_path, *args, f"hydra.sweep.dir={name}", name=name) for name in ("first", "second")}
    for sweep in sweeps.values():
        assert sweep.wait(timeout=150) == 0, sweep.stderr()[-3000:]
    jobs = {name: tmp_path / name / "0-uniform-0.3-bp" for name in sweeps}
    assert sorted(trained(d) for d in jobs.values()) == [["comic"], ["face"]]  # each image trained once
    for d in jobs.values():
        check_complete(d, ["face", "comic"])
    for image in ("face", "comic"):  # one record, copied: the same curve in both sweeps
        pd.testing.assert_frame_equal(curve(jobs["first"], image), curve(jobs["second"], image), check_exact=True)
    # the job that did not train face found it claimed by the other
    other = next(d for d in jobs.values() if trained(d) == ["comic"])
    assert "face: job " in (other / "run.log").read_text() and "trains it now" in (other / "run.log").read_text()
    assert len(list(store.iterdir())) == 2 and leftovers(store) == []
