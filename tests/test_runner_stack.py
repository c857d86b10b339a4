"""The runner with ``engine.stack`` = K > 1: images of one size trained together as one
stacked network give the records a K = 1 job gives, resume from their group's
checkpoint, regroup when some images are done, and are never trained twice.

Every claim is checked from the records on disk (summary.json, metrics.csv, the store)
against a K = 1 job or an uninterrupted stacked job, never from wall time.
"""

import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import bpdip.runner.cell as cell
from bpdip.data import SET14_DIR, center_crop, load_image
from bpdip.loggers import JobLogger
from bpdip.loop import Callback
from bpdip.records import CURVE_COLUMNS, read_summary, write_png
from bpdip.runner import plan_cell, run_cell
from bpdip.store import Store

IMAGES = ["face", "comic", "zebra"]  # 40x40 crops: with stack=2, [face, comic] stacked, zebra alone
# 12 iterations logged every 2, checkpointed every 4: a kill at 8 resumes from 8
SMALL = ("experiment=smoke", "loss.iterations=12", "checkpoint_every=4")
METRICS = ["psnr", "ssim", "ssim_dr2", "loss"]


@pytest.fixture(scope="module")
def cfg_of(compose_config):
    return lambda root, *o: compose_config(*SMALL, f"results_root={root}", *o)


class StackSpy:
    """Wraps cell.restore: which names each restore call trained together, and the stack size."""

    def __init__(self, monkeypatch):
        self.calls = []
        real = cell.restore

        def spy(model, loss, data, spec):
            self.calls.append((list(data.names), getattr(model, "stack", 1)))
            return real(model, loss, data, spec)

        monkeypatch.setattr(cell, "restore", spy)


class Trained(Callback):
    """Which iterations each image logged in this job (what was actually trained)."""

    def __init__(self):
        self.logged = {}

    def on_log(self, result, record):
        self.logged.setdefault(result.name, []).append(record["iteration"])


class KillAt(Callback):
    """Raises right after the checkpoint of ``iteration`` is written (as a kill would)."""

    def __init__(self, iteration):
        self.iteration = iteration

    def on_checkpoint(self, iteration, path):
        if iteration == self.iteration:
            raise KeyboardInterrupt(f"killed at {iteration}")


def frame(job: Path) -> pd.DataFrame:
    return pd.read_csv(job / "metrics.csv")


def curve(job: Path, image: str) -> pd.DataFrame:
    f = frame(job)
    return f[f.image == image].drop(columns="seconds").reset_index(drop=True)


def store_files(store: Path) -> dict:
    return {p.relative_to(store): p.read_bytes() for p in store.rglob("*") if p.is_file()}


@pytest.mark.parametrize("default_dtype,tol_db", [(torch.float64, 1e-9), (torch.float32, 0.05)],
                         indirect=["default_dtype"])
def test_stacked_job_writes_the_records_of_a_k1_job_with_the_same_curves(cfg_of, tmp_path, monkeypatch,
                                                                         default_dtype, tol_db):
    """float64: the curves agree to rounding (observed: bit-equal on this CPU); float32:
    equal at iteration 0 (no step taken, forward rounding only), then within 0.05 dB
    (Adam amplifies float32 rounding; the engine's own test states the same bound)."""
    single = run_cell(cfg_of(tmp_path / "s1", f"data.images=[{','.join(IMAGES)}]"), tmp_path / "k1")
    spy = StackSpy(monkeypatch)
    stacked = run_cell(cfg_of(tmp_path / "s2", f"data.images=[{','.join(IMAGES)}]", "engine.stack=2"),
                       tmp_path / "k2")
    assert spy.calls == [(["face", "comic"], 2), (["zebra"], 1)]  # really stacked; the odd one alone

    # the same record structure: run block, image entries (keys, order), columns, rows, files
    assert stacked["run"].keys() == single["run"].keys()
    assert stacked["run"]["config_hash"] == single["run"]["config_hash"]  # engine.stack is speed-only
    assert list(stacked["images"]) == list(single["images"]) == IMAGES
    for name in IMAGES:
        a, b = single["images"][name], stacked["images"][name]
        assert a.keys() == b.keys() and b["status"] == "complete" and b["reused"] is False
        assert b["run_id"] == a["run_id"]  # same store id: either job's record serves the other
        assert b["iterations"] == 12
    f1, f2 = frame(tmp_path / "k1"), frame(tmp_path / "k2")
    # the fixed columns, then every rule's statistic on every watched stream (bpdip.stopping)
    from bpdip.stopping import statistic_columns

    assert tuple(f2.columns[:len(CURVE_COLUMNS)]) == CURVE_COLUMNS
    assert set(f2.columns[len(CURVE_COLUMNS):]) == set(statistic_columns()) - set(CURVE_COLUMNS)
    assert list(f2.image) == list(f1.image) and list(f2.iteration) == list(f1.iteration)
    assert list(f1.image) == [n for n in IMAGES for _ in range(7)]  # 0, 2, ..., 10 and the last, 11
    rel = lambda store: sorted(p.relative_to(store) for p in store.rglob("*") if p.is_file())  # noqa: E731
    assert rel(tmp_path / "s2") == rel(tmp_path / "s1")  # no checkpoints left, same store files
    for name in IMAGES:
        assert (tmp_path / "k2" / "restored" / f"{name}.png").is_file()
        own = read_summary(tmp_path / "s2" / single["images"][name]["run_id"] / "summary.json")
        assert list(own["images"]) == [name] and own["images"][name]["status"] == "complete"

    # the same curves: exact before any step, within the dtype's rounding after
    start = f1.iteration == 0
    np.testing.assert_allclose(f2.loc[start, METRICS], f1.loc[start, METRICS], rtol=1e-12 if default_dtype ==
                               torch.float64 else 1e-6, atol=0)
    assert (f2.psnr - f1.psnr).abs().max() < tol_db
    assert (f2.ssim - f1.ssim).abs().max() < tol_db / 10  # SSIM moves much less than PSNR per dB
    np.testing.assert_allclose(f2.loss, f1.loss, rtol=1e-12 if default_dtype == torch.float64 else 1e-2)
    for name in IMAGES:
        assert abs(stacked["images"][name]["final_psnr"] - single["images"][name]["final_psnr"]) < tol_db
        assert stacked["images"][name]["peak_iteration"] == single["images"][name]["peak_iteration"]
    # the output streams (issue 20): the same columns, summary entries and stream images
    streams = ["clean_psnr", "clean_ssim", "average_psnr", "average_ssim"]
    assert f2[streams].notna().all().all()
    assert (f2[streams] - f1[streams]).abs().max().max() < tol_db
    for name in IMAGES:
        a, b = single["images"][name], stacked["images"][name]
        assert b["restored_stream"] == a["restored_stream"] == "average"
        assert b["images"] == a["images"] and "clean.oracle" in b["images"]
        for stream, entry in a["streams"].items():
            other = b["streams"][stream]
            assert other.keys() == entry.keys() and other["stopping"].keys() == entry["stopping"].keys()
            assert other["peak_iteration"] == entry["peak_iteration"]
            assert abs(other["final_psnr"] - entry["final_psnr"]) < tol_db
            for rule, c in entry["stopping"].items():
                assert other["stopping"][rule]["iteration"] == c["iteration"], (stream, rule)
                assert abs(other["stopping"][rule]["psnr"] - c["psnr"]) < tol_db
        for rel in b["images"].values():
            assert (tmp_path / "k2" / rel).is_file()
    # not a vacuous match: the images' curves differ from each other, and training moved them
    face, comic = curve(tmp_path / "k2", "face"), curve(tmp_path / "k2", "comic")
    assert abs(face.psnr.iloc[-1] - comic.psnr.iloc[-1]) > 0.5
    assert face.psnr.iloc[-1] > face.psnr.iloc[0] + 0.5


def test_killed_stacked_job_resumes_from_its_group_checkpoint(cfg_of, tmp_path):
    images = "data.images=[face,comic]"
    ref = run_cell(cfg_of(tmp_path / "ref-store", images, "engine.stack=2"), tmp_path / "ref")
    store = tmp_path / "store"
    face_id, comic_id = (t.run_id for t in plan_cell(cfg_of(store, images)).tasks)
    with pytest.raises(KeyboardInterrupt):
        run_cell(cfg_of(store, images, "engine.stack=2"), tmp_path / "job1", callbacks=[KillAt(8)])
    # one checkpoint for the group, in its first image's store folder, holding both runs
    [ckpt] = list(store.rglob("*.pt"))
    assert ckpt.parent == store / face_id and ckpt.name.startswith("group-")
    state = torch.load(ckpt, weights_only=False)
    assert state["iteration"] == 8 and len(state["generator"]) == 2 and state["z"].shape[0] == 2
    assert not (store / face_id / "summary.json").exists() and not (store / comic_id / "summary.json").exists()

    spy = Trained()
    summary = run_cell(cfg_of(store, images, "engine.stack=2"), tmp_path / "job2", callbacks=[spy])
    assert spy.logged == {"face": [8, 10, 11], "comic": [8, 10, 11]}  # both went on from 8 together
    for name in ("face", "comic"):
        pd.testing.assert_frame_equal(curve(tmp_path / "job2", name), curve(tmp_path / "ref", name),
                                      check_exact=True)
        for key in ("final_psnr", "final_ssim", "peak_psnr", "peak_iteration", "streams", "images"):
            assert summary["images"][name][key] == ref["images"][name][key]
        assert (tmp_path / "job2" / "restored" / f"{name}.png").read_bytes() == \
            (tmp_path / "ref" / "restored" / f"{name}.png").read_bytes()
        for rel in ref["images"][name]["images"].values():  # the streams resume from the group checkpoint
            assert (tmp_path / "job2" / rel).read_bytes() == (tmp_path / "ref" / rel).read_bytes()
    assert not list(store.rglob("*.pt*"))  # the group checkpoint is gone once both records exist


def test_regrouped_images_start_afresh_and_never_load_another_groups_checkpoint(cfg_of, tmp_path, caplog):
    """A group of three is killed; one of its images is then finished by a K = 1 job; the
    relaunch stacks the other two: their group is new, so it starts at 0, even when a
    checkpoint of the old group sits at the new group's path (it is refused and set aside)."""
    store = tmp_path / "store"
    all3 = f"data.images=[{','.join(IMAGES)}]"
    with pytest.raises(KeyboardInterrupt):
        run_cell(cfg_of(store, all3, "engine.stack=3"), tmp_path / "job1", callbacks=[KillAt(8)])
    [old] = list(store.rglob("group-*.pt"))
    run_cell(cfg_of(store, "data.images=[comic]"), tmp_path / "job2")  # comic done alone
    plan = plan_cell(cfg_of(store, all3))
    face, _, zebra = plan.tasks
    new = cell.group_checkpoint([face, zebra], Store(store), tmp_path)
    assert new != old and new.parent == old.parent  # both in face's folder
    shutil.copyfile(old, new)  # a K = 3 state where the K = 2 group looks: must not be loaded

    spy = Trained()
    summary = run_cell(cfg_of(store, all3, "engine.stack=3"), tmp_path / "job3", callbacks=[spy])
    assert f"ignoring checkpoint {new} (wrong shapes: z (3, " in caplog.text
    assert spy.logged == {"face": [0, 2, 4, 6, 8, 10, 11], "zebra": [0, 2, 4, 6, 8, 10, 11]}
    assert [summary["images"][n]["reused"] for n in IMAGES] == [False, True, False]
    # the old group's checkpoint is gone; only the refused copy is left, set aside
    assert list(store.rglob("*.pt*")) == [new.with_name(new.name + ".rejected")]
    ref = run_cell(cfg_of(tmp_path / "ref-store", "data.images=[face,zebra]", "engine.stack=2"), tmp_path / "ref")
    for name in ("face", "zebra"):
        pd.testing.assert_frame_equal(curve(tmp_path / "job3", name), curve(tmp_path / "ref", name),
                                      check_exact=True)
        assert summary["images"][name]["final_psnr"] == ref["images"][name]["final_psnr"]


def test_relaunching_a_finished_stacked_sweep_trains_nothing(cfg_of, tmp_path):
    store = tmp_path / "store"
    images = f"data.images=[{','.join(IMAGES)}]"
    first = run_cell(cfg_of(store, images, "engine.stack=2"), tmp_path / "job1")
    files = store_files(store)
    for k, job in ((2, "job2"), (1, "job3"), (3, "job4")):  # any stack: the same ids
        spy = Trained()
        again = run_cell(cfg_of(store, images, f"engine.stack={k}"), tmp_path / job, callbacks=[spy])
        assert spy.logged == {}
        assert [again["images"][n]["reused"] for n in IMAGES] == [True, True, True]
        assert all(e["status"] == "complete" for e in again["images"].values())
        assert store_files(store) == files  # store untouched
        for name in IMAGES:
            pd.testing.assert_frame_equal(curve(tmp_path / job, name), curve(tmp_path / "job1", name),
                                          check_exact=True)
            assert again["images"][name]["final_psnr"] == first["images"][name]["final_psnr"]


class Recorder(JobLogger):
    """The job-level and loop calls a logger receives, in order."""

    def __init__(self):
        self.calls = []

    def on_image_start(self, index, total, name, shape, run_id):
        self.calls.append(("start", index, total, name, tuple(shape)))

    def on_log(self, result, record):
        self.calls.append(("log", result.name, record["iteration"]))

    def on_image_done(self, name, entry, rows, image, reused):
        self.calls.append(("done", name, reused, len(rows), image is not None))


def test_mixed_sizes_are_grouped_and_loggers_see_each_image(cfg_of, tmp_path, monkeypatch):
    """Images a (40x40), b (48x40, done earlier), c (40x40), d (48x40) with stack=2: b comes
    from the store, [a, c] train together, d alone; records stay in the listed order."""
    folder = tmp_path / "images"
    sources = {"a": ("face", (40, 40)), "b": ("comic", (48, 40)), "c": ("zebra", (40, 40)), "d": ("lenna", (48, 40))}
    for name, (src, size) in sources.items():
        write_png(folder / f"{name}.png", center_crop(load_image(SET14_DIR / f"{src}.png"), size))
    data = ("data=folder", f"data.folder={folder}", "data.crop=null", "loss.iterations=4", "checkpoint_every=0")
    store = tmp_path / "store"
    run_cell(cfg_of(store, *data, "data.images=[b]"), tmp_path / "b-alone")
    rec = Recorder()
    real = cell.make_loggers
    monkeypatch.setattr(cell, "make_loggers", lambda *a: [*real(*a), rec])
    summary = run_cell(cfg_of(store, *data, "data.images=[a,b,c,d]", "engine.stack=2"), tmp_path / "job")

    assert rec.calls == [
        ("done", "b", True, 3, False),
        ("start", 0, 4, "a", (40, 40)), ("start", 2, 4, "c", (40, 40)),  # logs 0, 2 and the last, 3
        ("log", "a", 0), ("log", "c", 0), ("log", "a", 2), ("log", "c", 2), ("log", "a", 3), ("log", "c", 3),
        ("done", "a", False, 3, True), ("done", "c", False, 3, True),
        ("start", 3, 4, "d", (48, 40)), ("log", "d", 0), ("log", "d", 2), ("log", "d", 3), ("done", "d", False, 3, True),
    ]
    assert list(summary["images"]) == ["a", "b", "c", "d"]
    assert list(frame(tmp_path / "job").image) == [n for n in "abcd" for _ in range(3)]
    assert [summary["images"][n]["reused"] for n in "abcd"] == [False, True, False, False]
    for name, (_, size) in sources.items():  # each restored image has its own size
        png = Image.open(tmp_path / "job" / "restored" / f"{name}.png")
        assert png.size[::-1] == size
    assert summary["run"]["status"] == "complete"


def test_a_failing_image_fails_alone_and_its_group_goes_on(cfg_of, tmp_path, monkeypatch):
    """face's loss turns NaN from its 4th step: face fails with its curve up to then, while
    comic, trained in the same stacked network, gets the curve of a group without failure
    (the runs share no weights, statistics or gradients)."""
    images = ("data.images=[face,comic]", "engine.stack=2", "checkpoint_every=0")
    ref = run_cell(cfg_of(tmp_path / "ref-store", *images), tmp_path / "ref")
    real = cell.make_loss
    calls = []

    def poisoned(fidelity, blur, y, *args, **kwargs):
        loss = real(fidelity, blur, y, *args, **kwargs)
        calls.append(1)
        if len(calls) > 1:
            return loss  # only the first (face's)
        steps = []

        def f(x):
            steps.append(1)
            return loss(x) * (math.nan if len(steps) > 3 else 1.0)
        return f

    monkeypatch.setattr(cell, "make_loss", poisoned)
    summary = run_cell(cfg_of(tmp_path / "store", *images), tmp_path / "job")
    face, comic = summary["images"]["face"], summary["images"]["comic"]
    assert face["status"] == "failed" and "non-finite" in face["error"]
    assert comic["status"] == "complete" and summary["run"]["status"] == "failed"
    assert list(curve(tmp_path / "job", "face").iteration) == [0, 2]
    pd.testing.assert_frame_equal(curve(tmp_path / "job", "face"), curve(tmp_path / "ref", "face").iloc[:2],
                                  check_exact=True)
    pd.testing.assert_frame_equal(curve(tmp_path / "job", "comic"), curve(tmp_path / "ref", "comic"),
                                  check_exact=True)
    assert comic["final_psnr"] == ref["images"]["comic"]["final_psnr"]
    assert not (tmp_path / "job" / "restored" / "face.png").exists()
