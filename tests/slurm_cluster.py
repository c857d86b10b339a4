"""A real one-node SLURM cluster for the tests, started once per test session.

The cluster is scripts/local_slurm.sh's (munged, MariaDB, slurmdbd, slurmctld, slurmd) in
a fresh temporary folder: the fixture only calls that script, so the tests run the very
cluster users get. Session end, or a failed start, calls the script's ``stop``, which
cancels the cluster's jobs and stops each daemon by the pid in its own pid file, last
started first. Where the packages are missing, or the ports are taken by another SLURM
or MariaDB, the tests are skipped and the reason is printed (pytest -ra).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "local_slurm.sh"
PROGRAMS = ("munged", "mariadbd", "mariadb-install-db", "slurmdbd", "slurmctld", "slurmd", "sbatch", "sacct")
INSTALL = "apt-get install -y slurm-wlm slurmdbd mariadb-server"


def missing_programs() -> list[str]:
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    return [p for p in PROGRAMS if shutil.which(p, path=path) is None]


@dataclass
class Cluster:
    folder: Path
    conf: Path

    def run(self, *cmd: str, timeout: float = 30) -> str:
        """A SLURM command against this cluster; its stdout (it must succeed)."""
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                             env={**os.environ, "SLURM_CONF": str(self.conf)})
        assert out.returncode == 0, f"{' '.join(cmd)}: {out.stderr.strip()}"
        return out.stdout

    def queue(self) -> dict[str, str]:
        """Job id (array tasks as 12_3) -> state, of the jobs slurmctld still lists as queued."""
        lines = self.run("squeue", "-h", "-o", "%i %T").split()
        return dict(zip(lines[::2], lines[1::2]))

    def accounting(self, job: str) -> list[tuple[str, str]]:
        """(job id, state) of a job's allocations in the accounting database (sacct)."""
        rows = self.run("sacct", "-X", "-n", "-P", "-j", job, "-o", "JobID,State").split()
        return [tuple(r.split("|", 1)) for r in rows]

    def cancel_all(self, timeout: float = 30) -> None:
        """Cancel every job of this cluster and wait until none is listed."""
        self.run("scancel", "--user=root")
        deadline = time.monotonic() + timeout
        while self.queue():
            assert time.monotonic() < deadline, f"jobs still queued after scancel: {self.queue()}"
            time.sleep(0.2)


def _script(*args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    missing = missing_programs()
    if missing:
        pytest.skip(f"SLURM is not installed here (no {', '.join(missing)}); to run these tests: {INSTALL}")
    folder = tmp_path_factory.mktemp("slurm")
    try:
        try:
            started = _script("start", str(folder), timeout=120)
        except subprocess.TimeoutExpired:
            pytest.fail("scripts/local_slurm.sh start took over 120 s")
        reason = (started.stderr.strip().splitlines() or ["(no message)"])[-1]
        if started.returncode == 3:
            pytest.skip(f"no local SLURM cluster here: {reason}")
        assert started.returncode == 0, f"scripts/local_slurm.sh start failed:\n{started.stderr}"
        assert started.stdout.strip() == f"export SLURM_CONF={folder / 'slurm.conf'}"
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("SLURM_CONF", str(folder / "slurm.conf"))  # the tests' sweeps, and their jobs
            yield Cluster(folder, folder / "slurm.conf")
    finally:
        stopped = _script("stop", str(folder), timeout=120)
        assert stopped.returncode == 0, f"scripts/local_slurm.sh stop failed:\n{stopped.stderr}"
