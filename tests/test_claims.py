"""Two sweeps over the same images never train one twice: a job claims an image in the
results store while it trains it; another job waits for that record, or takes the image
over when the claim's holder is gone."""

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import bpdip.runner.cell as cell_module
from bpdip.loop import Callback
from bpdip.runner import plan_cell, run_cell
from bpdip.store import CLAIM, Store, claimant


@pytest.fixture(scope="module")
def smoke_cfg(compose_config):
    return lambda *o: compose_config("experiment=smoke", *o)


def other_job(host="node-7", pid=4242, slurm_job="991_3") -> dict:
    return {"host": host, "pid": pid, "slurm_job": slurm_job, "since": time.time()}


def write_claim(store: Store, run_id: str, holder: dict, age_s: float = 0.0) -> Path:
    path = store.dir(run_id) / CLAIM
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(holder))
    if age_s:
        old = time.time() - age_s
        os.utime(path, (old, old))
    return path


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid  # exited and reaped: no process has it (barring a quick reuse)


def test_claim_rules(tmp_path, monkeypatch):
    store = Store(tmp_path)
    assert store.claim("a", 60) is None and json.loads((tmp_path / "a" / CLAIM).read_text())["pid"] == os.getpid()
    assert store.claim("a", 60) is None  # ours already
    fresh = other_job()
    write_claim(store, "b", fresh)
    assert store.claim("b", 60) == fresh  # a live job elsewhere: not ours
    store.release("b")
    assert (tmp_path / "b" / CLAIM).exists()  # release drops only our own claim
    write_claim(store, "c", other_job(), age_s=120)
    assert store.claim("c", 60) is None  # no heartbeat for longer than the timeout: taken over
    write_claim(store, "d", other_job(host=claimant()["host"], pid=dead_pid(), slurm_job=None))
    assert store.claim("d", 3600) is None  # same host, its process is gone: taken over at once
    monkeypatch.setenv("SLURM_JOB_ID", "991")
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "991")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    write_claim(store, "e", other_job())
    assert store.claim("e", 3600) is None  # this SLURM array task before its requeue: ours
    store.release("e")
    assert not (tmp_path / "e" / CLAIM).exists()
    path = write_claim(store, "f", other_job(slurm_job="12"), age_s=600)  # coarse file clocks: a clear gap
    store.heartbeat("f")
    assert time.time() - path.stat().st_mtime < 60
    assert store.claim("f", 300) is not None  # the heartbeat made it fresh again: still held


def test_a_job_trains_its_free_images_then_takes_the_others_record(smoke_cfg, tmp_path, monkeypatch):
    """face is claimed by a live job elsewhere: this job trains comic, then waits; once the
    other job's record of face appears (copied from an earlier run) it is reused."""
    monkeypatch.setattr(cell_module, "CLAIM_POLL_S", 0.05)
    cfg = smoke_cfg(f"results_root={tmp_path / 'other'}")
    run_cell(cfg, tmp_path / "earlier")  # what the other job will have written
    plan = plan_cell(smoke_cfg(f"results_root={tmp_path / 'store'}"))
    face = next(t for t in plan.tasks if t.name == "face")
    store = Store(tmp_path / "store")
    claim = write_claim(store, face.run_id, other_job())
    comic = next(t for t in plan.tasks if t.name == "comic")
    trained, holders = [], []

    class Spy(Callback):
        def on_log(self, result, record):  # while comic trains, this job holds its claim
            holders.append(json.loads((store.dir(comic.run_id) / CLAIM).read_text())["pid"])

        def on_end(self, result):
            trained.append(result.name)

    def other_job_finishes():
        deadline = time.monotonic() + 120
        while "comic" not in trained and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)
        # the other job's whole record, its output streams' images/ folder included
        shutil.copytree(tmp_path / "other" / face.run_id, store.dir(face.run_id), dirs_exist_ok=True)
        claim.unlink()

    # a daemon with a deadline: a failing run_cell below cannot leave pytest hanging
    thread = threading.Thread(target=other_job_finishes, daemon=True)
    thread.start()
    summary = run_cell(smoke_cfg(f"results_root={tmp_path / 'store'}"), tmp_path / "job", callbacks=[Spy()], plan=plan)
    thread.join(timeout=130)
    assert trained == ["comic"] and holders and set(holders) == {os.getpid()}
    assert summary["images"]["face"]["reused"] and summary["images"]["face"]["status"] == "complete"
    assert list(summary["images"]) == ["face", "comic"]  # the configured order
    assert not list((tmp_path / "store").glob(f"*/{CLAIM}"))  # every claim released


@pytest.mark.parametrize("stack", [1, 2])
def test_an_image_whose_job_died_is_trained_here(smoke_cfg, tmp_path, monkeypatch, stack):
    """The holder of face's claim stops its heartbeat: after the timeout this job trains it."""
    monkeypatch.setattr(cell_module, "CLAIM_POLL_S", 0.05)
    overrides = [f"results_root={tmp_path / 'store'}", f"engine.stack={stack}", "claim_timeout_min=0.01"]
    plan = plan_cell(smoke_cfg(*overrides))
    face = next(t for t in plan.tasks if t.name == "face")
    write_claim(Store(tmp_path / "store"), face.run_id, other_job())  # fresh, then silent
    summary = run_cell(smoke_cfg(*overrides), tmp_path / "job", plan=plan)
    assert {n: (e["status"], e["reused"]) for n, e in summary["images"].items()} == \
        {"face": ("complete", False), "comic": ("complete", False)}
    assert not list((tmp_path / "store").glob(f"*/{CLAIM}"))
