"""Stable ids: the same (cell, image, seed, result-relevant config) always maps to the
same store folder, bookkeeping never changes it, anything result-relevant does."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from PIL import Image

from bpdip.data import SET14_DIR
from bpdip.runner import plan_cell, run_cell
from bpdip.store import Store, canonical, digest, drop_keys

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def smoke_cfg():
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        yield lambda *o: compose("config", overrides=["experiment=smoke", *o])


@pytest.fixture(scope="module")
def ids(smoke_cfg):
    def of(*overrides):
        plan = plan_cell(smoke_cfg(*overrides))
        return {t.name: t.run_id for t in plan.tasks}, plan.config_hash
    return of


def test_integral_numbers_and_key_order_do_not_change_a_digest():
    assert canonical({"b": 2.0, "a": [1.0, 0.5]}) == {"a": [1, 0.5], "b": 2}
    assert digest({"var": 2, "x": {"k": 1}}) == digest({"x": {"k": 1.0}, "var": 2.0})
    assert digest({"var": 0.3}) != digest({"var": 0.30000001})
    assert drop_keys({"a": {"b": 1, "c": 2}, "d": 3}, ("a.b", "d", "x.y")) == {"a": {"c": 2}}


@pytest.mark.parametrize("overrides", [
    ("results_root=/elsewhere",), ("logger=wandb", "logger.project=other"), ("device=cpu",), ("threads=2",),
    ("progress=true",), ("checkpoint_every=50",), ("save_images=false",), ("reuse=false",),
    ("noise.var=0.30",), ("engine.stack=4", "engine.compile=true"), ("hydra.job.name=x",),
])
def test_bookkeeping_keeps_the_ids(ids, overrides):
    assert ids(*overrides) == ids()


@pytest.mark.parametrize("overrides", [
    ("seed=1",), ("loss.iterations=8",), ("noise.var=2",), ("kernel=radial",), ("loss=bp_tv",),
    ("loss.eps2=0.01",), ("model.channels_up=[8,8,4]",), ("data.crop=48",), ("log_every=3",),
    ("optim.lr=0.02",), ("engine.precision=bf16",),
])
def test_result_relevant_changes_give_new_ids(ids, overrides):
    base, base_hash = ids()
    new, new_hash = ids(*overrides)
    assert new_hash != base_hash
    assert not set(new.values()) & set(base.values())


def test_image_selection_keeps_ids_and_image_content_changes_them(ids, tmp_path):
    both, h = ids()
    assert ids("data.images=[comic]") == ({"comic": both["comic"]}, h)
    assert ids("data.images=comic") == ({"comic": both["comic"]}, h)
    for name in ("face", "comic"):  # the same files in another folder: same ids
        shutil.copy(SET14_DIR / f"{name}.png", tmp_path / f"{name}.png")
    assert ids("data=folder", f"data.folder={tmp_path}", "data.images=[face,comic]") == (both, h)
    pixels = np.asarray(Image.open(tmp_path / "face.png")).copy()
    pixels[0, 0] ^= 1  # one bit of one pixel
    Image.fromarray(pixels).save(tmp_path / "face.png")
    changed, _ = ids("data=folder", f"data.folder={tmp_path}", "data.images=[face,comic]")
    assert changed["comic"] == both["comic"] and changed["face"] != both["face"]
    assert both["face"].startswith("uniform-0.3-bp-face-")  # readable prefix


def test_store_accepts_only_consistent_records(smoke_cfg, tmp_path):
    cfg = smoke_cfg("data.images=[face]", f"results_root={tmp_path}")
    plan = plan_cell(cfg)
    run_cell(cfg, tmp_path / "job", plan=plan)
    run_id, store = plan.tasks[0].run_id, Store(tmp_path)
    good = store.load(run_id, "face", 6, 2)
    assert good is not None and good.entry["status"] == "complete" and len(good.rows) == 3
    assert json.loads((store.dir(run_id) / "config.json").read_text()) == json.loads(json.dumps(plan.result_config))
    assert store.load(run_id, "face", 8, 2) is None  # other iterations: not this run
    assert store.load(run_id, "comic", 6, 2) is None  # another image
    summary_path = store.dir(run_id) / "summary.json"
    record = json.loads(summary_path.read_text())
    for damage in ({"peak_psnr": 99.0}, {"status": "running"}, {"final_psnr": None}):
        bad = json.loads(json.dumps(record))
        bad["images"]["face"].update(damage)
        summary_path.write_text(json.dumps(bad))
        assert store.load(run_id, "face", 6, 2) is None, damage
    record["images"]["face"]["status"] = "failed"
    summary_path.write_text(json.dumps(record))
    assert store.load(run_id, "face", 6, 2).entry["status"] == "failed"  # final: kept by default
    assert store.load(run_id, "face", 6, 2, accept_failed=False) is None  # retry_failed=true


def test_a_results_version_bump_changes_every_id(ids, monkeypatch):
    """Records made by code that computed other numbers are never reused: the id carries
    RESULTS_VERSION (the git commit does not, so doc-only commits keep the store)."""
    import bpdip.store as store_module

    base, base_hash = ids()
    monkeypatch.setattr(store_module, "RESULTS_VERSION", store_module.RESULTS_VERSION + 1)
    bumped, bumped_hash = ids()
    assert bumped_hash != base_hash and not set(bumped.values()) & set(base.values())


def test_the_id_holds_the_precision_and_adam_that_actually_run(ids, monkeypatch):
    """engine "auto" is resolved for the job's device before hashing: on a CPU it is fp32
    with plain Adam (so it equals an explicit fp32), on a GPU tf32 with fused Adam, whose
    records must not be taken for CPU ones."""
    import torch

    cpu, cpu_hash = ids()
    assert ids("engine.precision=fp32", "engine.fused_adam=false")[1] == cpu_hash
    assert ids("engine.precision=bf16")[1] != cpu_hash
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    gpu, gpu_hash = ids()
    assert gpu_hash != cpu_hash and not set(gpu.values()) & set(cpu.values())
    assert ids("engine.precision=tf32", "engine.fused_adam=true")[1] == gpu_hash
    assert ids("device=cpu")[1] == cpu_hash  # a CPU job on a GPU machine is a CPU job
