"""Stable ids: the same (cell, image, seed, result-relevant config) always maps to the
same store folder, bookkeeping never changes it, anything result-relevant does."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from bpdip.data import SET14_DIR
from bpdip.loop import Callback
from bpdip.records import read_summary
from bpdip.runner import degraded, plan_cell, run_cell
from bpdip.store import Store, canonical, digest, drop_keys


@pytest.fixture(scope="module")
def smoke_cfg(compose_config):
    return lambda *o: compose_config("experiment=smoke", *o)


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


def test_a_rule_without_a_block_in_rules_yaml_keeps_the_ids(ids):
    """Every rule's parameters enter the id as StopSettings has them (its PARAMS where the
    config has no block): a new rule needs no block in conf/stop/rules.yaml, and these ids
    are those of the configs that have one."""
    assert ids("~stop.emv", "~stop.bp_discrepancy") == ids()
    assert ids("stop.emv.alpha=0.2") != ids()


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


def test_16_bit_inputs_are_read_whole_and_recorded_and_only_rgb_gets_a_new_id(smoke_cfg, tmp_path):
    """Issue 29: a 16-bit RGB file was cut to 8 bits before, so its id carries the depth
    (old records of it are never reused); 8-bit and 16-bit grayscale ids are unchanged."""
    from png16 import write_png16

    from bpdip.store import file_sha256, make_run_id

    rng = np.random.default_rng(3)
    write_png16(tmp_path / "rgb16.png", rng.integers(0, 65536, (24, 24, 3)))
    write_png16(tmp_path / "gray16.png", rng.integers(0, 65536, (24, 24)))
    Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(tmp_path / "rgb8.png")
    cfg = smoke_cfg("data=folder", f"data.folder={tmp_path}", "data.images=null", "data.crop=null",
                    f"results_root={tmp_path / 'store'}", "loss.iterations=2", "baselines=false")
    plan = plan_cell(cfg)
    tasks = {t.name: t for t in plan.tasks}
    assert {n: t.bit_depth for n, t in tasks.items()} == {"gray16": 16, "rgb16": 16, "rgb8": 8}
    old = {n: make_run_id(plan.cell_name, n, plan.config_hash, file_sha256(t.path)) for n, t in tasks.items()}
    assert tasks["rgb8"].run_id == old["rgb8"] and tasks["gray16"].run_id == old["gray16"]
    assert tasks["rgb16"].run_id != old["rgb16"]
    x, y = degraded(plan, tasks["rgb16"])
    assert len(np.unique(x)) > 1000  # the run's ground truth keeps the 16-bit levels
    for source in ("trained", "reused"):
        summary = run_cell(cfg, tmp_path / source)
        assert {n: e["bit_depth"] for n, e in summary["images"].items()} == {"gray16": 16, "rgb16": 16, "rgb8": 8}
        assert all(e["reused"] == (source == "reused") for e in summary["images"].values())


def test_store_accepts_only_consistent_records(smoke_cfg, tmp_path):
    cfg = smoke_cfg("data.images=[face]", f"results_root={tmp_path}")
    plan = plan_cell(cfg)
    run_cell(cfg, tmp_path / "job", plan=plan)
    run_id, store = plan.tasks[0].run_id, Store(tmp_path)
    good = store.load(run_id, "face", 6, 2)
    assert good is not None and good.entry["status"] == "complete" and len(good.rows) == 4  # 0, 2, 4 and 5
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


def test_the_kernel_file_content_is_in_the_id(ids, tmp_path):
    """kernel=file: the id holds the kernel's SHA-256, not its path; one edited value
    changes every id, the same file in another folder keeps them."""
    kernel = np.ones((5, 5))
    kernel[2, 2] = 3.0
    np.save(tmp_path / "k.npy", kernel)
    (tmp_path / "copy").mkdir()
    shutil.copy(tmp_path / "k.npy", tmp_path / "copy" / "k.npy")
    base, base_hash = ids("kernel=file", f"kernel.path={tmp_path / 'k.npy'}")
    assert ids("kernel=file", f"kernel.path={tmp_path / 'copy' / 'k.npy'}") == (base, base_hash)
    kernel[0, 1] = 2.0  # one value
    np.save(tmp_path / "k.npy", kernel)
    edited, edited_hash = ids("kernel=file", f"kernel.path={tmp_path / 'k.npy'}")
    assert edited_hash != base_hash
    assert set(edited) == set(base) and not set(edited.values()) & set(base.values())


def test_bpdip_results_sets_the_default_results_root(smoke_cfg, tmp_path, monkeypatch):
    """conf/config.yaml: results_root defaults to $BPDIP_RESULTS, else outputs/store; a
    results_root on the command line wins."""
    monkeypatch.delenv("BPDIP_RESULTS", raising=False)
    assert plan_cell(smoke_cfg()).config["results_root"] == "outputs/store"
    monkeypatch.setenv("BPDIP_RESULTS", str(tmp_path / "results"))
    assert plan_cell(smoke_cfg()).config["results_root"] == str(tmp_path / "results")
    assert plan_cell(smoke_cfg(f"results_root={tmp_path / 'mine'}")).config["results_root"] == str(tmp_path / "mine")


class Trained(Callback):
    """Which iterations each image logged in this job (what was actually trained)."""

    def __init__(self):
        self.logged = {}

    def on_log(self, result, record):
        self.logged.setdefault(result.name, []).append(record["iteration"])


def test_reuse_false_trains_again_and_the_default_reuses(smoke_cfg, tmp_path, monkeypatch):
    store = tmp_path / "results"
    monkeypatch.setenv("BPDIP_RESULTS", str(store))  # the store named only by the environment
    monkeypatch.chdir(tmp_path)  # were it ignored, outputs/store would land here, not in the checkout
    cfg = lambda *o: smoke_cfg("data.images=[face]", *o)  # noqa: E731
    first = run_cell(cfg(), tmp_path / "job1")["images"]["face"]
    stored = lambda: read_summary(store / first["run_id"] / "summary.json")["images"]["face"]  # noqa: E731
    assert first["reused"] is False and stored()["runtime_s"] == first["runtime_s"]

    spy = Trained()
    again = run_cell(cfg(), tmp_path / "job2", callbacks=[spy])["images"]["face"]
    assert spy.logged == {}  # reuse=true (the default): nothing trained
    assert again["reused"] is True and again["runtime_s"] == first["runtime_s"]

    spy = Trained()
    fresh = run_cell(cfg("reuse=false"), tmp_path / "job3", callbacks=[spy])["images"]["face"]
    assert spy.logged == {"face": [0, 2, 4, 5]}
    assert fresh["reused"] is False and fresh["runtime_s"] != first["runtime_s"]
    assert read_summary(tmp_path / "job3" / "summary.json")["images"]["face"]["reused"] is False
    assert stored()["runtime_s"] == fresh["runtime_s"]  # the store now holds the new run
    assert fresh["final_psnr"] == first["final_psnr"]  # the same computation, done again


def nan_after(steps: int):
    """A make_loss whose losses turn NaN after ``steps`` calls (a diverging run)."""
    import bpdip.runner.cell as cell

    real = cell.make_loss

    def make(*args, **kwargs):
        loss, calls = real(*args, **kwargs), []

        def f(x):
            calls.append(1)
            return loss(x) * (float("nan") if len(calls) > steps else 1.0)
        return f
    return make


def test_a_failed_record_is_kept_unless_retry_failed(smoke_cfg, tmp_path, monkeypatch):
    import bpdip.runner.cell as cell

    cfg = lambda *o: smoke_cfg("data.images=[face]", f"results_root={tmp_path / 'store'}", *o)  # noqa: E731
    with monkeypatch.context() as m:
        m.setattr(cell, "make_loss", nan_after(3))
        failed = run_cell(cfg(), tmp_path / "job1")["images"]["face"]
    assert failed["status"] == "failed" and "non-finite" in failed["error"]
    record = tmp_path / "store" / failed["run_id"] / "summary.json"
    assert read_summary(record)["images"]["face"]["status"] == "failed"

    spy = Trained()
    kept = run_cell(cfg(), tmp_path / "job2", callbacks=[spy])["images"]["face"]
    assert spy.logged == {}  # retry_failed=false (the default): a failure is a final result
    assert kept["status"] == "failed" and kept["reused"] is True

    spy = Trained()
    retried = run_cell(cfg("retry_failed=true"), tmp_path / "job3", callbacks=[spy])["images"]["face"]
    assert spy.logged == {"face": [0, 2, 4, 5]}
    assert retried["status"] == "complete" and retried["reused"] is False
    assert read_summary(record)["images"]["face"]["status"] == "complete"

    spy = Trained()
    done = run_cell(cfg("retry_failed=true"), tmp_path / "job4", callbacks=[spy])["images"]["face"]
    assert spy.logged == {} and done["reused"] is True  # complete records are still reused


# Run ids pinned as literals: a code change that keeps what runs compute must keep them (the
# store then reuses every record). If this test fails, either the change alters results, and
# RESULTS_VERSION is bumped on purpose (update these literals and say why in the commit), or
# an id changed by accident. Version 2: the stopping rules' records and the stop/task blocks;
# version 3: the output streams (bpdip.streams) and the output block; version 4: every rule on
# the perturbed and the average stream, the warm-up guard, bp_discrepancy (issue 32), the last
# iteration logged, the rules' scaling floor, exact resume under boundary=valid (issue 29).
PINNED_IDS = {
    ("data.images=[face]",): ["uniform-0.3-bp-face-0bf793e6ccdb"],
    ("kernel=radial", "noise.var=2", "loss=ls_tv", "data.images=[comic]"): ["radial-2-ls_tv-comic-003024a7eb3f"],
    ("experiment=smoke",): ["uniform-0.3-bp-face-5c1ecbaf5495", "uniform-0.3-bp-comic-09d8eec34e8a"],
    # speed-only engine switches, the logger and the named rule (without stop.early) keep the id
    ("experiment=smoke", "engine.stack=4", "stop=wmv", "logger=wandb"):
        ["uniform-0.3-bp-face-5c1ecbaf5495", "uniform-0.3-bp-comic-09d8eec34e8a"],
    ("experiment=cpu_grid", "seed=2", "kernel=gaussian", "noise.var=4", "loss=bp_tv"):
        ["gaussian-4-bp_tv-face-4a9b524c1c8b", "gaussian-4-bp_tv-zebra-7fe04f68d00a"],
}


def test_run_ids_are_pinned(compose_config, monkeypatch):
    """The ids as a CPU without bf16 plans them: there the paper net's precision=auto is fp32
    (on a bf16 CPU it is bf16, a different id by design: bpdip.engine.settings)."""
    import bpdip.engine.settings as settings_module
    from bpdip.store import RESULTS_VERSION

    monkeypatch.setattr(settings_module, "cpu_has_bf16", lambda: False)
    assert RESULTS_VERSION == 4
    for overrides, ids in PINNED_IDS.items():
        assert [t.run_id for t in plan_cell(compose_config(*overrides)).tasks] == ids, overrides


def test_stop_early_and_the_seed_change_the_id_but_seeds_share_the_protocol_hash(compose_config):
    base = plan_cell(compose_config("experiment=smoke"))
    early = plan_cell(compose_config("experiment=smoke", "stop=wmv", "stop.early=true"))
    other_rule = plan_cell(compose_config("experiment=smoke", "stop=emv", "stop.early=true"))
    seed = plan_cell(compose_config("experiment=smoke", "seed=1"))
    assert len({base.config_hash, early.config_hash, other_rule.config_hash, seed.config_hash}) == 4
    assert seed.protocol_hash == base.protocol_hash != early.protocol_hash


def _committed_grid_schema() -> int:
    """The schema of the committed results/cpu_grid records (0 when absent)."""
    from pathlib import Path

    summaries = sorted((Path(__file__).resolve().parents[1] / "results/cpu_grid/records").glob("*/summary.json"))
    return json.loads(summaries[0].read_text()).get("schema", 0) if summaries else 0


# The committed grid was run with RESULTS_VERSION 3 (schema-3 records); its ids cannot match
# the plans of a later version (issue 29: version 4) until the grid is regenerated.
GRID_RESULTS_VERSION = 4


def _grid_is_current() -> bool:
    from bpdip.store import RESULTS_VERSION

    return _committed_grid_schema() >= 3 and GRID_RESULTS_VERSION == RESULTS_VERSION


@pytest.mark.skipif(not _grid_is_current(),
                    reason="results/cpu_grid was run with another RESULTS_VERSION than the code's: regenerate the grid "
                           "and update GRID_RESULTS_VERSION")
def test_the_committed_grid_records_keep_their_run_ids(compose_config):
    """Every image record of results/cpu_grid (a real run) has the id today's code plans for
    its job's overrides: the store would reuse all of them, so no change since altered what
    those runs compute without a RESULTS_VERSION bump."""
    import glob
    from pathlib import Path

    import yaml

    jobs = sorted(glob.glob(str(Path(__file__).resolve().parents[1] / "results/cpu_grid/records/*/summary.json")))
    assert len(jobs) == 108
    for path in jobs[::9]:  # 12 of the 108 jobs, spread over kernels, noises, losses and seeds
        overrides = yaml.safe_load((Path(path).parent / ".hydra" / "overrides.yaml").read_text())
        planned = [t.run_id for t in plan_cell(compose_config(*overrides)).tasks]
        recorded = [e["run_id"] for e in read_summary(path)["images"].values()]
        assert planned == recorded, path
