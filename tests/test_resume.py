"""Never redo work, resume after a kill: the results store and the loop's checkpoints.

Every claim is checked from the records on disk (summary.json ``reused`` flags, curves,
files), never from wall time.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from bpdip.loop import Callback
from bpdip.records import read_summary
from bpdip.runner import plan_cell, run_cell

ROOT = Path(__file__).resolve().parents[1]


def assert_same_curve(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Bit-for-bit equal curves (CPU runs are deterministic); the seconds column is not compared."""
    pd.testing.assert_frame_equal(a, b, check_exact=True)
# 12 iterations, logged every 2, checkpointed every 4: a kill at 8 resumes from 8
SMALL = ("experiment=smoke", "loss.iterations=12", "checkpoint_every=4")


@pytest.fixture(scope="module")
def cfg_of(compose_config):
    return lambda root, *o: compose_config(*SMALL, f"results_root={root}", *o)


class Killed(Exception):
    pass


class KillAt(Callback):
    """Raises right after the checkpoint of ``iteration`` of image ``name`` is written."""

    def __init__(self, name, iteration):
        self.name, self.iteration, self.current = name, iteration, None

    def on_log(self, result, record):
        self.current = result.name

    def on_checkpoint(self, iteration, path):
        if self.current == self.name and iteration == self.iteration:
            raise Killed(f"killed at {iteration}")


class Trained(Callback):
    """Which iterations each image logged in this job (what was actually trained)."""

    def __init__(self):
        self.logged = {}

    def on_log(self, result, record):
        self.logged.setdefault(result.name, []).append(record["iteration"])


def curve(job: Path, image: str) -> pd.DataFrame:
    frame = pd.read_csv(job / "metrics.csv")
    return frame[frame.image == image].drop(columns="seconds").reset_index(drop=True)


@pytest.fixture(scope="module")
def reference(cfg_of, tmp_path_factory):
    """An uninterrupted run of the same cell."""
    base = tmp_path_factory.mktemp("reference")
    summary = run_cell(cfg_of(base / "store"), base / "job")
    return base / "job", summary


def test_killed_run_resumes_from_its_checkpoint_and_matches_an_uninterrupted_one(cfg_of, reference, tmp_path):
    ref_job, ref = reference
    store = tmp_path / "store"
    plan = plan_cell(cfg_of(store))
    face_id, comic_id = (t.run_id for t in plan.tasks)
    with pytest.raises(Killed):
        run_cell(cfg_of(store), tmp_path / "job1", callbacks=[KillAt("comic", 8)])
    # what the kill left: face finished, comic checkpointed at 8, no comic record
    assert read_summary(store / face_id / "summary.json")["images"]["face"]["status"] == "complete"
    assert (store / comic_id / "checkpoint.pt").is_file()
    assert not (store / comic_id / "summary.json").exists()
    killed = read_summary(tmp_path / "job1" / "summary.json")
    assert killed["images"]["face"]["status"] == "complete" and killed["images"]["comic"]["status"] == "running"

    spy = Trained()
    summary = run_cell(cfg_of(store), tmp_path / "job2", callbacks=[spy])
    assert spy.logged == {"comic": [8, 10, 11]}  # face not trained again; comic went on from 8
    assert summary["images"]["face"]["reused"] is True and summary["images"]["comic"]["reused"] is False
    for name in ("face", "comic"):
        assert_same_curve(curve(tmp_path / "job2", name), curve(ref_job, name))
        for key in ("final_psnr", "final_ssim", "peak_psnr", "peak_iteration", "streams"):
            assert summary["images"][name][key] == ref["images"][name][key]
    assert not (store / comic_id / "checkpoint.pt").exists()  # removed once the record exists


def test_relaunching_a_finished_sweep_trains_nothing(cfg_of, tmp_path):
    store = tmp_path / "store"
    first = run_cell(cfg_of(store), tmp_path / "job1")
    files = {p: p.read_bytes() for p in store.rglob("*") if p.is_file()}
    spy = Trained()
    again = run_cell(cfg_of(store, "logger=none", "progress=false", "threads=2"), tmp_path / "job2", callbacks=[spy])
    assert spy.logged == {}
    assert all(e["reused"] for e in again["images"].values())
    assert all(e["status"] == "complete" for e in again["images"].values())
    assert {p: p.read_bytes() for p in store.rglob("*") if p.is_file()} == files  # store untouched
    for name in ("face", "comic"):  # the new job's records are complete copies
        assert_same_curve(curve(tmp_path / "job2", name), curve(tmp_path / "job1", name))
        assert again["images"][name]["final_psnr"] == first["images"][name]["final_psnr"]
        assert (tmp_path / "job2" / "restored" / f"{name}.png").read_bytes() == \
            (tmp_path / "job1" / "restored" / f"{name}.png").read_bytes()
        # the output streams' images (summary.json "images") are copied back from the store
        images = again["images"][name]["images"]
        assert images == first["images"][name]["images"] and "average.oracle" in images
        for rel in images.values():
            assert (tmp_path / "job2" / rel).read_bytes() == (tmp_path / "job1" / rel).read_bytes()
    # a result-relevant change is new work; the finished images stay as they are
    spy = Trained()
    run_cell(cfg_of(store, "seed=1"), tmp_path / "job3", callbacks=[spy])
    assert set(spy.logged) == {"face", "comic"}


@pytest.mark.parametrize("damaged", ["summary.json", "metrics.csv"])
def test_a_truncated_record_is_detected_and_that_image_redone(cfg_of, reference, tmp_path, damaged, caplog):
    ref_job, _ = reference
    store = tmp_path / "store"
    run_cell(cfg_of(store), tmp_path / "job1")
    face_id = plan_cell(cfg_of(store)).tasks[0].run_id
    path = store / face_id / damaged
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    spy = Trained()
    summary = run_cell(cfg_of(store), tmp_path / "job2", callbacks=[spy])
    assert list(spy.logged) == ["face"]  # only the damaged image is trained again
    assert summary["images"]["face"]["reused"] is False and summary["images"]["comic"]["reused"] is True
    assert f"ignoring the record in {store / face_id}" in caplog.text
    assert_same_curve(curve(tmp_path / "job2", "face"), curve(ref_job, "face"))
    assert read_summary(store / face_id / "summary.json")["images"]["face"]["status"] == "complete"


def test_a_truncated_checkpoint_is_detected_and_the_image_restarts(cfg_of, reference, tmp_path, caplog):
    ref_job, _ = reference
    store = tmp_path / "store"
    comic_id = plan_cell(cfg_of(store)).tasks[1].run_id
    with pytest.raises(Killed):
        run_cell(cfg_of(store), tmp_path / "job1", callbacks=[KillAt("comic", 8)])
    ckpt = store / comic_id / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    spy = Trained()
    run_cell(cfg_of(store), tmp_path / "job2", callbacks=[spy])
    assert f"ignoring checkpoint {ckpt} (unreadable" in caplog.text
    assert spy.logged == {"comic": [0, 2, 4, 6, 8, 10, 11]}  # from scratch
    assert_same_curve(curve(tmp_path / "job2", "comic"), curve(ref_job, "comic"))


def test_sigterm_mid_run_then_relaunch_resumes_in_a_new_process(tmp_path):
    """A real kill (SIGTERM, as SLURM sends) of a real process, then a relaunch.

    The signal goes out as soon as the first checkpoint (iteration 10) exists; the run
    has 590 iterations (seconds, even with a second job on the cores) still to go then,
    so it cannot end before the signal arrives. The processes are killed and reaped
    whatever happens, so a failed assertion leaves none running."""
    args = [sys.executable, str(ROOT / "run.py"), "experiment=smoke", "data.images=[face]",
            "loss.iterations=600", "log_every=20", "checkpoint_every=10", "hydra.run.dir=job", "results_root=store"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    running = []

    def launch(where: Path):
        where.mkdir()
        running.append(subprocess.Popen(args, cwd=where, env=env, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL))
        return running[-1]

    try:
        uninterrupted = launch(tmp_path / "b")  # alongside (one thread each, as in the smoke preset)
        killed = launch(tmp_path / "a")
        deadline = time.monotonic() + 120
        while not list((tmp_path / "a" / "store").glob("*/checkpoint.pt")):
            assert killed.poll() is None and time.monotonic() < deadline, "no checkpoint before the run ended"
            time.sleep(0.02)
        killed.send_signal(signal.SIGTERM)
        assert killed.wait(timeout=60) != 0  # ended by the signal, not by finishing
        [run_dir] = list((tmp_path / "a" / "store").iterdir())
        assert not (run_dir / "summary.json").exists(), "the run finished before the kill"
        import torch

        resumed_from = torch.load(run_dir / "checkpoint.pt", weights_only=False)["iteration"]
        assert 0 < resumed_from < 600

        (tmp_path / "a" / "job").rename(tmp_path / "a" / "job-killed")
        relaunch = subprocess.run(args, cwd=tmp_path / "a", env=env, capture_output=True, text=True, timeout=300)
        assert relaunch.returncode == 0, relaunch.stderr[-2000:]
        assert uninterrupted.wait(timeout=300) == 0
    finally:
        for proc in running:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    assert_same_curve(curve(tmp_path / "a" / "job", "face"), curve(tmp_path / "b" / "job", "face"))
    final = {d: read_summary(tmp_path / d / "job" / "summary.json")["images"]["face"]["final_psnr"] for d in "ab"}
    assert final["a"] == final["b"]
    # wall time went on from the checkpoint's clock, it did not restart at zero
    seconds = pd.read_csv(tmp_path / "a" / "job" / "metrics.csv").seconds
    assert seconds.is_monotonic_increasing
