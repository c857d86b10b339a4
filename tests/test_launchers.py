"""Launchers: submitit (local, for real), SLURM (up to the sbatch file), joblib, and how
parallel jobs of one machine share its GPUs."""

import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path


from bpdip.records import read_summary
from bpdip.runner.devices import claim_gpu

ROOT = Path(__file__).resolve().parents[1]


def run_py(cwd, *args, env=None, timeout=300):
    return subprocess.run([sys.executable, str(ROOT / "run.py"), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def check_sweep(sweep: Path, store: Path, jobs: list[str]):
    # the jobs' folders, and the sweep's report written on the launching side once they returned
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir() and not p.name.startswith(".")) == [*jobs, "report"]
    assert (sweep / "report" / "table1.csv").read_text().count(",complete,") == len(jobs)
    for job in jobs:
        summary = read_summary(sweep / job / "summary.json")
        assert summary["run"]["status"] == "complete"
        assert [e["status"] for e in summary["images"].values()] == ["complete", "complete"]
        for e in summary["images"].values():
            assert (store / e["run_id"] / "summary.json").is_file()


def test_submitit_local_runs_two_jobs_for_real(tmp_path):
    # both jobs start at once (ENVIRONMENT.md): the smoke preset gives each one torch thread
    out = run_py(tmp_path, "-m", "hydra/launcher=submitit_local", "kernel=uniform,radial", "experiment=smoke",
                 "hydra.sweep.dir=sweep", "results_root=store", "hydra.launcher.timeout_min=5")
    assert out.returncode == 0, out.stderr[-3000:]
    check_sweep(tmp_path / "sweep", tmp_path / "store", ["0-uniform-0.3-bp", "1-radial-0.3-bp"])
    logs = list((tmp_path / "sweep" / ".submitit").rglob("*_log.out"))
    assert len(logs) == 2  # two submitit tasks, each with its own log
    # a relative results_root is taken from where run.py was launched, in every job
    assert len(list((tmp_path / "store").iterdir())) == 4


def test_joblib_runs_jobs_in_parallel_processes(tmp_path):
    out = run_py(tmp_path, "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "loss=ls,bp", "experiment=smoke",
                 "hydra.sweep.dir=sweep", "results_root=store")
    assert out.returncode == 0, out.stderr[-3000:]
    check_sweep(tmp_path / "sweep", tmp_path / "store", ["0-uniform-0.3-ls", "1-uniform-0.3-bp"])


def test_slurm_launcher_writes_the_sbatch_array_for_table1(tmp_path):
    """Real Hydra + plugin + submitit down to `sbatch`, which is a stub here: it keeps the
    submission file and refuses the job, so nothing waits for a cluster."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stubs = {"sbatch": f"cp \"$1\" {tmp_path}/submitted.sh\necho 'no cluster here' >&2\nexit 1",
             "srun": "exit 1"}  # submitit only checks that srun exists
    for name, body in stubs.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod((bin_dir / name).stat().st_mode | stat.S_IEXEC)
    out = run_py(tmp_path, "-m", "experiment=table1", "hydra/launcher=slurm", "hydra.launcher.partition=gpu",
                 "hydra.launcher.account=my_account", "hydra.launcher.timeout_min=90",
                 "hydra.launcher.array_parallelism=8", "hydra.sweep.dir=sweep",
                 env={"PATH": f"{bin_dir}:{os.environ['PATH']}"}, timeout=120)
    assert out.returncode != 0  # the stub refused the submission
    # 36 jobs (experiment=table1), at most 8 at once, one GPU each, our time limit and accounts,
    # requeueable (submitit's requeue on USR2 needs it where a site sets JobRequeue=0)
    text = (tmp_path / "submitted.sh").read_text()
    for line in ("#SBATCH --array=0-35%8", "#SBATCH --gpus-per-node=1", "#SBATCH --partition=gpu",
                 "#SBATCH --account=my_account", "#SBATCH --time=90", "#SBATCH --cpus-per-task=8",
                 "#SBATCH --mem=16GB", "#SBATCH --signal=USR2@120", "#SBATCH --requeue"):
        assert line in text, line


def test_a_failed_slurm_job_is_told_by_one_line_of_its_log():
    """What the SLURM launcher reports for a job that ended without a result
    (tests/test_slurm.py checks bpdip's error line on a real cluster)."""
    from hydra_plugins.bpdip_slurm.launcher import one_line_error

    config_error = "error: image 'nosuch' not found\nsrun: error: vm: task 0: Exited with exit code 2\n"
    assert one_line_error(config_error) == "error: image 'nosuch' not found"
    crash = ("Traceback (most recent call last):\n  File \"x.py\", line 1\ntorch.OutOfMemoryError: CUDA out of"
             " memory.\nsrun: error: vm: task 0: Exited with exit code 1\n")
    assert one_line_error(crash) == "torch.OutOfMemoryError: CUDA out of memory."
    killed = "slurmstepd: error: *** JOB 7 ON vm CANCELLED AT 2026-01-01T00:00:00 DUE TO TIME LIMIT ***\n"
    assert one_line_error(killed) == killed.strip()
    assert one_line_error("") is None and one_line_error(None) is None


def test_parallel_jobs_claim_different_gpus_and_wait_when_all_are_taken(tmp_path):
    got, order = [], []
    release = threading.Event()

    def job(name, start):
        with claim_gpu(2, start=start, directory=tmp_path, poll_s=0.01) as idx:
            got.append(idx)
            order.append(("start", name, idx))
            release.wait(5)
            order.append(("end", name, idx))

    first = [threading.Thread(target=job, args=(n, 0)) for n in ("a", "b")]
    for t in first:
        t.start()
    deadline = time.monotonic() + 5
    while len(got) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(got) == [0, 1]  # same preferred GPU, yet each job got its own
    third = threading.Thread(target=job, args=("c", 1))
    third.start()
    time.sleep(0.2)
    assert len(got) == 2  # all GPUs claimed: the third job waits
    release.set()
    for t in (*first, third):
        t.join(5)
    assert len(got) == 3
    start_c = order.index(("start", "c", got[2]))
    assert any(e[0] == "end" and e[2] == got[2] for e in order[:start_c])  # it took a GPU freed before


def test_gpu_claim_is_released_when_the_holder_dies(tmp_path):
    code = ("import os, sys\nfrom bpdip.runner.devices import claim_gpu\n"
            f"with claim_gpu(1, directory=__import__('pathlib').Path({str(tmp_path)!r})):\n    os._exit(0)\n")
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
    with claim_gpu(1, directory=tmp_path, poll_s=0.01) as idx:  # would wait forever if still held
        assert idx == 0
