"""Issue 30's baselines: BM3D deblurring against a direct call of the package, its skip
without the package, Richardson-Lucy with the valid model against an independent scipy
implementation, the extension for circular methods; issue 29's skip of a baseline that
cannot run (a real tiny run); run ids unchanged by the new baselines."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from scipy.ndimage import convolve
from scipy.signal import convolve2d
from skimage import restoration

from bpdip import baselines_bm3d
from bpdip.baselines import BORDER, RL_VALID_COUNTS, run_baselines
from bpdip.baselines_border import extend, richardson_lucy_valid
from bpdip.physics import degrade, degrade_valid, make_kernel, noise_sigma

ROOT = Path(__file__).resolve().parents[1]
bm3d = pytest.importorskip("bm3d")


def _psnr(a, b):
    return 10 * np.log10(1.0 / np.mean((np.clip(a, 0, 1) - b) ** 2))


@pytest.fixture(scope="module")
def scene():
    from skimage import data

    return np.asarray(data.chelsea(), dtype=np.float64)[100:160, 150:210] / 255.0  # 60 px of a photograph


def test_bm3d_is_the_packages_own_deblurring_with_the_known_noise_level(scene):
    truth = scene[:32, :32]
    k = make_kernel("gaussian", size=7, std=1.6)
    y = degrade(truth, k, 2.0, seed=4)
    sigma = noise_sigma(2.0)
    records, images = run_baselines(y, k, truth, sigma=sigma)
    by = {r["method"]: r for r in records}
    assert list(by)[-1] == "bm3d" and by["bm3d"]["params"] == {"sigma": sigma}
    direct = np.stack([bm3d.bm3d_deblurring(y[..., c:c + 1], sigma, k).reshape(32, 32) for c in range(3)], -1)
    # float32 inside the package, and its compiled block matching rounds differently from call to call
    np.testing.assert_allclose(images["bm3d"], np.clip(direct, 0, 1), atol=1e-5)
    assert by["bm3d"]["psnr"] == pytest.approx(_psnr(direct, truth), abs=1e-3)
    assert by["bm3d"]["psnr"] > _psnr(y, truth) + 1  # it deblurs
    assert not set(BORDER) & set(by)  # circular data: no border-aware methods


def test_without_the_bm3d_package_bm3d_is_skipped_with_one_warning_line(scene, monkeypatch, caplog):
    import builtins

    real = builtins.__import__

    def no_bm3d(name, *args, **kwargs):
        if name.split(".")[0] in ("bm3d", "bm4d"):
            raise ImportError(f"No module named {name!r}")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_bm3d)
    monkeypatch.setattr(baselines_bm3d, "_warned", set())
    truth = scene[:24, :24]
    k = make_kernel("gaussian", size=5, std=1.0)
    y = degrade(truth, k, 2.0, seed=1)
    with caplog.at_level(logging.WARNING, logger="bpdip"):
        first, _ = run_baselines(y, k, truth, sigma=noise_sigma(2.0))
        run_baselines(y, k, None, sigma=noise_sigma(2.0))  # a second image: no second line
    assert [r["method"] for r in first] == ["wiener_oracle", "unsupervised_wiener", "richardson_lucy_oracle",
                                            "richardson_lucy"]
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(lines) == 1 and "bm3d" in lines[0] and "non-commercial" in lines[0] and "\n" not in lines[0]


def _rl_scipy(y, k, n):
    """Richardson-Lucy with the valid model written with scipy's direct convolutions:
    A x = convolve2d(x, k, 'valid'), A^T r = convolve2d(r, k[::-1, ::-1], 'full')."""
    out = []
    for c in range(y.shape[2]):
        yc = np.clip(y[..., c], 0, None)
        norm = convolve2d(np.ones_like(yc), k[::-1, ::-1], mode="full")
        seen = norm > 1e-6 * norm.max()
        x = np.full(norm.shape, yc.mean())
        for _ in range(n):
            x = np.where(seen, x * convolve2d(yc / np.maximum(convolve2d(x, k, mode="valid"), 1e-12),
                                              k[::-1, ::-1], mode="full") / np.where(seen, norm, 1), x)
        out.append(x)
    return np.stack(out, -1)


@pytest.mark.parametrize("shape", [(5, 3), (4, 6)])  # odd and even, not square
def test_valid_richardson_lucy_matches_a_direct_scipy_computation(scene, shape):
    rng = np.random.default_rng(0)
    k = rng.random(shape)
    k /= k.sum()
    grown = scene[: 17 + shape[0] - 1, : 21 + shape[1] - 1]
    y = degrade_valid(grown, k, 2.0, seed=2)
    assert y.shape == (17, 21, 3)
    got = richardson_lucy_valid(y, k, (3, 7))
    top, left = (shape[0] - 1) // 2, (shape[1] - 1) // 2
    for n in (3, 7):
        want = np.clip(_rl_scipy(y, k, n)[top:top + 17, left:left + 21], 0, 1)
        np.testing.assert_allclose(got[n], want, atol=2e-5)


def test_valid_richardson_lucy_keeps_the_border_where_scikit_images_darkens_it():
    k = make_kernel("gaussian", size=9, std=2.0)
    grown = np.full((40 + 8, 40 + 8, 3), 0.6)
    y = degrade_valid(grown, k, 0.0, seed=0)  # noiseless: a flat grey photograph
    mine = richardson_lucy_valid(y, k, (50,))[50]
    theirs = np.stack([restoration.richardson_lucy(y[..., c], k, num_iter=50, clip=False) for c in range(3)], -1)
    rim = np.ones((40, 40), bool)
    rim[4:-4, 4:-4] = False
    assert np.abs(mine[rim] - 0.6).max() < 1e-3  # the border stays grey
    edge = np.concatenate([theirs[0], theirs[-1], theirs[:, 0], theirs[:, -1]])
    assert edge.mean() < 0.5 and np.abs(theirs[rim] - 0.6).max() > 0.2  # zero padding darkens the edge, rings


def test_the_extension_keeps_y_and_fills_the_rest_with_its_circular_blur(scene):
    k = make_kernel("gaussian", size=5, std=1.0)
    y = scene[:20, :26]
    t, (top, left, h, w) = extend(y, k)
    assert t.shape == (30, 36, 3) and (top, left, h, w) == (5, 5, 20, 26)
    np.testing.assert_array_equal(t[5:25, 5:31], y)
    padded = np.pad(y, ((5, 5), (5, 5), (0, 0)), mode="edge")
    blurred = np.stack([convolve(padded[..., c], k, mode="wrap") for c in range(3)], -1)  # odd k: centred
    outside = np.ones(t.shape[:2], bool)
    outside[5:25, 5:31] = False
    np.testing.assert_allclose(t[outside], blurred[outside], atol=1e-12)


def test_on_a_photograph_the_border_aware_baselines_beat_the_circular_ones(scene):
    k = make_kernel("gaussian", size=7, std=1.6)
    y = degrade_valid(scene[:46, :46], k, 2.0, seed=3)  # 40 px frame
    truth = scene[3:43, 3:43]
    records, images = run_baselines(y, k, truth, sigma=noise_sigma(2.0), boundary="valid")
    by = {r["method"]: r for r in records}
    assert set(BORDER) <= set(by)
    assert by["richardson_lucy_valid_oracle"]["params"]["iterations"] in RL_VALID_COUNTS
    assert by["richardson_lucy_valid"]["params"]["stop"] == "discrepancy"
    assert by["wiener_extended_oracle"]["psnr"] > by["wiener_oracle"]["psnr"]
    assert by["bm3d_extended"]["psnr"] > by["bm3d"]["psnr"]
    assert by["richardson_lucy_valid_oracle"]["psnr"] > by["richardson_lucy_oracle"]["psnr"]
    assert all(im.shape == truth.shape for im in images.values())


def test_a_baseline_that_cannot_run_is_skipped_and_the_run_goes_on(compose_config, tmp_path, caplog):
    """Issue 29: a 61x61 kernel on a 48 px image under boundary=valid (scikit-image's Wiener
    fails with a broadcast error there): one warning line per skipped baseline, a complete record."""
    from PIL import Image

    from bpdip.runner import run_cell

    rng = np.random.default_rng(5)
    Image.fromarray((rng.random((48, 48, 3)) * 255).astype(np.uint8)).save(tmp_path / "y.png")
    k = make_kernel("gaussian", size=61, std=3.0)
    np.save(tmp_path / "k.npy", k)
    cfg = compose_config("data=observed", f"data.path={tmp_path / 'y.png'}", "kernel=file",
                         f"kernel.path={tmp_path / 'k.npy'}", "noise.var=2", "boundary=valid", "model=slim",
                         "loss=ls", "loss.iterations=2", "log_every=1", "checkpoint_every=0", "threads=1",
                         "progress=false", "stop=fixed", "results_root=null")
    with caplog.at_level(logging.WARNING, logger="bpdip"):
        summary = run_cell(cfg, tmp_path / "job")
    entry = summary["images"]["y"]
    assert entry["status"] == "complete" and summary["run"]["status"] == "complete"
    methods = [b["method"] for b in entry["baselines"]]
    skipped = [r.getMessage() for r in caplog.records if "baseline" in r.getMessage() and "skipped" in r.getMessage()]
    assert "unsupervised_wiener" not in methods and "richardson_lucy_valid" in methods
    assert any(m.startswith("baseline unsupervised_wiener skipped on this 48x48 y") for m in skipped)
    assert len(skipped) == len({m.split()[1] for m in skipped})  # one line per skipped baseline
    assert all("\n" not in m for m in skipped)


def test_the_new_baselines_leave_the_committed_grid_run_ids_unchanged():
    """The baselines are bookkeeping for the results store (``baselines`` in BOOKKEEPING,
    computed after training): a job's ids do not depend on them, so records made with the
    old four baselines are reused, and their four stored baselines still read (the report's
    table takes any set). The committed grid's own ids are pinned by tests/test_store.py
    (while its RESULTS_VERSION is the code's)."""
    from bpdip.runner.plan import plan_cell

    folder = ROOT / "results" / "cpu_grid" / "records"
    for name in ("0-uniform-0.3-ls", "105-gaussian-4-bp_tv"):
        cfg = OmegaConf.load(folder / name / "config.yaml")
        ids = [t.run_id for t in plan_cell(cfg).tasks]
        cfg.baselines = not cfg.get("baselines", True)
        assert [t.run_id for t in plan_cell(cfg).tasks] == ids
