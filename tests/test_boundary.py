"""``boundary=circular|valid`` end to end (issue 19): circular ids unchanged, what a valid
run restores (x larger than y, metrics on y's frame, the extended image kept), observed
data defaulting to valid, stacked valid runs, and bad input in one line each."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image
from scipy.signal import convolve2d

from bpdip.data import DATA_ROOT, SET14_DIR, center_crop, load_image
from bpdip.physics import make_kernel
from bpdip.runner import UserError, plan_cell, run_cell
from bpdip.runner.cell import degraded, image_tensors

ROOT = Path(__file__).resolve().parents[1]
TINY = ("experiment=smoke", "kernel=gaussian", "loss.iterations=8", "checkpoint_every=0", "results_root=null")


@pytest.fixture(scope="module")
def cfg_of(compose_config):
    return lambda *o: compose_config(*TINY, *o)


def test_circular_is_the_default_and_leaves_run_ids_unchanged(cfg_of):
    cfg = cfg_of()
    assert cfg.boundary.name == "circular"
    plain = OmegaConf.to_container(cfg, resolve=True)
    del plain["boundary"]  # the config as it was before the boundary group existed
    with_group, without = plan_cell(cfg), plan_cell(plain)
    assert with_group.config_hash == without.config_hash
    assert [t.run_id for t in with_group.tasks] == [t.run_id for t in without.tasks]
    assert with_group.cell == {"kernel": "gaussian", "noise_var": 0.3, "loss": "bp"}
    assert all(t.frame is None for t in with_group.tasks)
    # the CG keys are not part of a circular id; under valid they are
    assert plan_cell(cfg_of("boundary.cg_tol=1e-3")).config_hash == with_group.config_hash
    valid = plan_cell(cfg_of("boundary=valid"))
    assert valid.config_hash != with_group.config_hash
    assert plan_cell(cfg_of("boundary=valid", "boundary.cg_tol=1e-3")).config_hash != valid.config_hash
    # LS never solves: under valid its id ignores the CG keys, but not the boundary itself
    ls = plan_cell(cfg_of("boundary=valid", "loss=ls_tv"))
    assert ls.config_hash != plan_cell(cfg_of("loss=ls_tv")).config_hash
    assert plan_cell(cfg_of("boundary=valid", "loss=ls_tv", "boundary.cg_tol=1e-3",
                            "boundary.cg_max_iter=7")).config_hash == ls.config_hash
    assert plan_cell(cfg_of("boundary=valid", "loss=ls_tv", "boundary.fft_grid=x")).config_hash != ls.config_hash
    assert plan_cell(cfg_of("boundary.fft_grid=x")).config_hash == with_group.config_hash
    assert plan_cell(cfg_of("boundary=valid", "boundary.fft_grid=x")).config_hash != valid.config_hash


def test_both_boundary_configs_carry_the_codes_cg_defaults(cfg_of):
    """conf/boundary/*.yaml repeat bpdip.physics.cg's defaults for Hydra: they must agree."""
    from bpdip.physics.cg import CG_MAX_ITER, CG_TOL
    from bpdip.runner.boundary import BoundarySettings

    for option in ("circular", "valid"):
        b = cfg_of(f"boundary={option}").boundary
        assert (b.cg_tol, b.cg_max_iter) == (CG_TOL, CG_MAX_ITER) == (BoundarySettings().cg_tol,
                                                                      BoundarySettings().cg_max_iter)


def test_valid_x_is_the_crop_grown_by_the_kernels_reach(cfg_of):
    plan = plan_cell(cfg_of("boundary=valid", "data.images=[face]"))
    [task] = plan.tasks
    k = make_kernel("gaussian")
    assert task.shape == (40 + 14, 40 + 14) and task.frame == (7, 7, 40, 40)
    assert plan.cell["boundary"] == "valid"
    x, y = degraded(plan, task)
    image = load_image(SET14_DIR / "face.png")
    # y's frame of x is exactly the circular run's ground truth (the same crop of the image)
    np.testing.assert_array_equal(x[7:47, 7:47], center_crop(image, 40))
    clean = np.stack([convolve2d(x[..., c], k, mode="valid") for c in range(3)], -1)
    assert y.shape == (40, 40, 3) and np.abs(y - clean).max() < 10 * np.sqrt(0.3) / 255
    y_t, x_t = image_tensors(plan, task, "cpu")
    assert tuple(y_t.shape) == (1, 3, 40, 40) and tuple(x_t.shape) == (1, 3, 40, 40)
    np.testing.assert_array_equal(x_t[0].permute(1, 2, 0).numpy(), center_crop(image, 40))


def test_an_even_kernel_and_no_crop(cfg_of, tmp_path):
    k = np.ones((2, 4)) / 8
    np.save(tmp_path / "k.npy", k)
    img = np.random.default_rng(0).integers(0, 255, (20, 23, 3), dtype=np.uint8)
    Image.fromarray(img).save(tmp_path / "a.png")
    plan = plan_cell(cfg_of("boundary=valid", "data=folder", f"data.folder={tmp_path}", "data.images=[]", "data.crop=null",
                            "kernel=file", f"kernel.path={tmp_path / 'k.npy'}"))
    [task] = plan.tasks
    assert task.shape == (20, 23) and task.frame == (0, 1, 19, 20)
    op = plan.operator(task.shape)
    assert op.in_shape == (20, 23) and op.out_shape == (19, 20)


def test_a_valid_run_measures_y_frame_and_keeps_the_extended_image(cfg_of, tmp_path):
    store = tmp_path / "store"
    cfg = cfg_of("boundary=valid", "data.images=[face]", f"results_root={store}", "stop=wmv", "stop.early=true",
                 "stop.reference_iterations=8", "stop.wmv.window=2", "stop.wmv.patience=2", "log_every=1")
    summary = run_cell(cfg, tmp_path / "job")
    entry = summary["images"]["face"]
    assert entry["status"] == "complete" and summary["run"]["cell"]["boundary"] == "valid"
    assert entry["cg"]["solves"] == entry["iterations"] and entry["cg"]["residual_max"] <= cfg.boundary.cg_tol
    restored = tmp_path / "job" / "restored"
    assert Image.open(restored / "face.png").size == (40, 40)
    ext = np.asarray(Image.open(restored / "face.extended.png"))
    assert ext.shape == (54, 54, 3)
    # the restored image (16-bit) is y's frame of the extended one (8-bit; the same iterate: wmv's candidate)
    mine = load_image(restored / "face.png")
    np.testing.assert_allclose(ext[7:47, 7:47] / 255, mine, atol=0.5 / 255 + 1e-4)
    assert entry["restored_from"]["rule"] == "wmv"
    # the final PSNR is that image's against the same crop a circular run measures
    truth = center_crop(load_image(SET14_DIR / "face.png"), 40)
    assert entry["final_psnr"] == pytest.approx(10 * np.log10(1 / np.mean((mine - truth) ** 2)), abs=2e-3)
    # the baselines ran on the same y, measured against the same frame
    from bpdip.baselines import run_baselines

    plan = plan_cell(cfg)
    x, y = degraded(plan, plan.tasks[0])
    records, _ = run_baselines(y, plan.kernel, truth, sigma=plan.sigma, boundary="valid")
    # with the border-aware ones and BM3D (issue 30), whose package rounds differently from call to call
    assert [(b["method"], b["params"]) for b in entry["baselines"]] == [(r["method"], r["params"]) for r in records]
    for b, r in zip(entry["baselines"], records):
        assert all(b[m] == pytest.approx(r[m], rel=1e-6) for m in ("psnr", "ssim", "ssim_dr2")), b["method"]
    assert "richardson_lucy_valid" in {r["method"] for r in records}
    assert not list(restored.glob("face.wiener*"))  # with ground truth: numbers, no images
    # the store keeps both images and copies them back on reuse
    [run_dir] = [d for d in store.iterdir() if d.is_dir()]
    assert (run_dir / "restored_extended.png").is_file()
    again = run_cell(cfg, tmp_path / "job2")
    assert again["images"]["face"]["reused"] and (tmp_path / "job2" / "restored" / "face.extended.png").is_file()


def test_stacked_valid_runs_equal_separate_ones(cfg_of, tmp_path):
    base = ("boundary=valid", "data.images=[face,comic]", "loss.iterations=4")
    one = run_cell(cfg_of(*base), tmp_path / "one")
    two = run_cell(cfg_of(*base, "engine.stack=2"), tmp_path / "two")
    for name in ("face", "comic"):
        a, b = one["images"][name], two["images"][name]
        assert b["status"] == "complete" and b["cg"]["solves"] == 4
        assert b["final_psnr"] == pytest.approx(a["final_psnr"], abs=1e-3)


def test_stopping_rules_watch_the_frame_and_checkpoint_the_extended_candidates():
    from bpdip.physics import ValidBlur
    from bpdip.stopping import StopSettings, Stopping

    op = ValidBlur(make_kernel("gaussian", size=5), (9, 11))
    y = torch.zeros(2, 3, 9, 11)
    # a window of 2 (short runs keep a configured value below the floor of 10): it fills in 3 steps
    settings = StopSettings(warmup={"fraction": 0.0, "floor": 0}, wmv={"window": 2, "patience": 5})
    stop = Stopping(settings, 10, op, y, 0.01, "cpu", frame=op.frame)
    outs = [torch.rand(2, 3, *op.in_shape) for _ in range(3)]
    for out in outs:
        stop.update(out)
    wmv = stop.rules["wmv"]
    assert tuple(wmv.candidate.shape) == (2, 3, 9, 11)
    it = int(wmv.best_it[0])
    assert it in (1, 2)  # a candidate from a full window
    top, left, h, w = op.frame
    torch.testing.assert_close(wmv.candidate[0], outs[it][0, :, top:top + h, left:left + w])
    torch.testing.assert_close(stop.extended["wmv"][0], outs[it][0])
    again = Stopping(settings, 10, op, y, 0.01, "cpu", frame=op.frame)
    again.load_state_dict(stop.state_dict())
    torch.testing.assert_close(again.extended["wmv"], stop.extended["wmv"])
    plain = Stopping(StopSettings(), 10, op, y, 0.01, "cpu")
    with pytest.raises(ValueError):
        plain.check_state(stop.state_dict())


EXAMPLE = DATA_ROOT / "observed"


def _observed(cfg_of, *o):
    return cfg_of("data=observed", f"data.path={EXAMPLE / 'chelsea_blurred.png'}", "kernel=file",
                  f"kernel.path={EXAMPLE / 'gaussian_kernel.npy'}", "noise.var=2", "data.crop=null", *o)


def test_observed_data_defaults_to_valid_and_takes_circular(cfg_of):
    plan = plan_cell(_observed(cfg_of))
    assert plan.boundary.valid and plan.tasks[0].shape == (96 + 14, 96 + 14) and plan.tasks[0].frame == (7, 7, 96, 96)
    circ = plan_cell(_observed(cfg_of, "boundary=circular"))
    assert not circ.boundary.valid and circ.tasks[0].shape == (96, 96) and circ.tasks[0].frame is None


@pytest.mark.parametrize("override, message", [
    ("boundary.name=foo", "boundary.name='foo' is not a boundary model"),
    ("boundary.cg_tol=0", "boundary.cg_tol must be a number in"),
    ("boundary.cg_tol=2", "boundary.cg_tol must be a number in"),
    ("boundary.cg_max_iter=0", "boundary.cg_max_iter must be an integer >= 1"),
    ("boundary.cg_max_iter=1.5", "boundary.cg_max_iter must be an integer >= 1"),
    ("boundary.fft_grid=slow", "boundary.fft_grid='slow' is not an FFT grid"),
    ("data.crop=270", "needs a 284x284 window .* the kernel is too large for this image"),
    ("task=sr", "boundary=valid is for deblurring"),
])
def test_bad_boundary_input_fails_with_one_line(cfg_of, override, message):
    with pytest.raises(UserError, match=message) as info:
        plan_cell(cfg_of("boundary=valid", "data.images=[face]", override))
    assert "\n" not in str(info.value)


def test_a_kernel_too_large_for_the_whole_image(cfg_of, tmp_path):
    Image.fromarray(np.zeros((18, 30, 3), dtype=np.uint8)).save(tmp_path / "small.png")
    with pytest.raises(UserError, match="kernel is too large for the 18x30 image under boundary=valid"):
        plan_cell(cfg_of("boundary=valid", "data=folder", f"data.folder={tmp_path}", "data.images=[]", "data.crop=null"))


def test_unknown_boundary_lists_the_options(tmp_path):
    env = {**os.environ, "BPDIP_RESULTS": str(tmp_path / "store")}
    out = subprocess.run([sys.executable, str(ROOT / "run.py"), "boundary=foo"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == [
        "error: boundary=foo is not an option of config group 'boundary'; use one of: circular, valid (conf/boundary/)"]


def test_the_report_keeps_valid_and_circular_apart(cfg_of, tmp_path):
    from bpdip.report import build_report, load_local
    from bpdip.report.build import markdown

    base = ("data.images=[face]", "loss.iterations=4", "log_every=2")
    circ = run_cell(cfg_of(*base), tmp_path / "circular")
    valid = run_cell(cfg_of(*base, "boundary=valid"), tmp_path / "valid")
    report = build_report(load_local([str(tmp_path)]))
    by_kernel = {c.cell.kernel: c for c in report.cells if c.sources}
    assert set(by_kernel) == {"gaussian", "gaussian-valid"}  # two columns, never one mean
    for kernel, summary in (("gaussian", circ), ("gaussian-valid", valid)):
        [seed] = by_kernel[kernel].valued_seeds
        assert seed.images["face"].summary["final_psnr"] == summary["images"]["face"]["final_psnr"]
    md = markdown(report)
    # the valid cell is not the paper's experiment: outside Table I, in its own table
    outside = md.split("## Settings outside the paper's grid")[1].split("\n## ")[0]
    assert "| bp / gaussian-valid / var 0.3 |" in outside and "| bp / gaussian / var 0.3 |" not in outside
    baselines = md.split("## Baselines")[1].split("\n## ")[0]
    assert "(circular)" in baselines and "(valid)" in baselines and "gaussian-valid" not in baselines
