"""The baselines (bpdip/baselines.py) against scikit-image called directly, and the report's
Baselines table (bpdip/report/baselines.py) from hand-made records."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from skimage import restoration
from skimage.metrics import peak_signal_noise_ratio

from bpdip.baselines import BALANCES, RL_COUNTS, RL_FIXED, run_baselines
from bpdip.physics import degrade, make_kernel
from bpdip.records import curve_rows, write_json, write_metrics_csv
from bpdip.report import build_report, load_local, write_report
from bpdip.report.build import markdown


@pytest.fixture(scope="module")
def observation():
    rng = np.random.default_rng(3)
    truth = np.clip(rng.random((23, 29, 3)).cumsum(axis=1) / 15 % 1.0, 0, 1)  # odd size, some structure
    k = make_kernel("gaussian", size=5, std=1.2)
    return truth, k, degrade(truth, k, 2.0, seed=1)


def _psnr(a, b):
    return peak_signal_noise_ratio(b, a, data_range=1.0)


def test_baselines_are_scikit_images_own_at_the_best_parameters(observation):
    truth, k, y = observation
    records, images = run_baselines(y, k, truth)
    by = {r["method"]: r for r in records}
    assert list(by) == ["wiener_oracle", "unsupervised_wiener", "richardson_lucy_oracle", "richardson_lucy"]
    # Wiener: scikit-image per channel at every balance of the grid, the best by PSNR
    def wiener(b):
        return np.clip(np.stack([restoration.wiener(y[..., c], k, b, clip=False) for c in range(3)], -1), 0, 1)
    psnrs = {b: _psnr(wiener(b), truth) for b in BALANCES}
    best = max(psnrs, key=psnrs.get)
    assert by["wiener_oracle"]["params"]["balance"] == best
    assert by["wiener_oracle"]["psnr"] == pytest.approx(psnrs[best], abs=1e-9)
    np.testing.assert_allclose(images["wiener_oracle"], wiener(best))
    # Richardson-Lucy at the fixed count, and the best of the grid
    def rl(n):
        return np.clip(np.stack([restoration.richardson_lucy(np.clip(y[..., c], 0, 1), k, num_iter=n, clip=False)
                                 for c in range(3)], -1), 0, 1)
    np.testing.assert_allclose(images["richardson_lucy"], rl(RL_FIXED))
    assert by["richardson_lucy"]["psnr"] == pytest.approx(_psnr(rl(RL_FIXED), truth), abs=1e-9)
    rl_best = max(RL_COUNTS, key=lambda n: _psnr(rl(n), truth))
    assert by["richardson_lucy_oracle"]["params"]["iterations"] == rl_best
    assert by["richardson_lucy_oracle"]["psnr"] >= by["richardson_lucy"]["psnr"] - 1e-12
    # every image in [0, 1]; the blurred input is beaten by the tuned Wiener here
    assert all(0 <= im.min() and im.max() <= 1 and im.shape == truth.shape for im in images.values())
    assert by["wiener_oracle"]["psnr"] > _psnr(np.clip(y, 0, 1), truth)
    for r in records:
        assert set(r) == {"method", "psnr", "ssim", "ssim_dr2", "params"} and 0 < r["ssim"] <= 1


def test_without_truth_only_the_fixed_methods_run(observation):
    _, k, y = observation
    records, images = run_baselines(y, k)
    assert [r["method"] for r in records] == ["unsupervised_wiener", "richardson_lucy"]
    assert all(r["psnr"] is None for r in records) and set(images) == {"unsupervised_wiener", "richardson_lucy"}
    # seeded: the same call gives the same image
    np.testing.assert_array_equal(run_baselines(y, k)[1]["unsupervised_wiener"], images["unsupervised_wiener"])


def _job(root, loss, var, baselines: dict[str, list[tuple]]):
    """``baselines``: image -> [(method, psnr, ssim_dr2)]."""
    root.mkdir(parents=True, exist_ok=True)
    rows, entries = [], {}
    for name, bases in baselines.items():
        rows += curve_rows(name, [{"iteration": 0, "psnr": 20.0, "ssim": 0.5, "ssim_dr2": 0.6, "loss": 1.0,
                                   "seconds": 0.1}])
        entries[name] = {"status": "complete", "peak_psnr": 20.0, "peak_iteration": 0, "peak_ssim": 0.5,
                         "peak_ssim_dr2": 0.6, "final_psnr": 20.0, "final_ssim": 0.5, "final_ssim_dr2": 0.6,
                         "runtime_s": 1.0, "iterations": 1, "error": None, "stopping": {}, "stopped_early": False,
                         "baselines": [{"method": m, "psnr": p, "ssim": s - 0.1, "ssim_dr2": s, "params": {}}
                                       for m, p, s in bases]}
    run = {"cell": {"kernel": "gaussian", "noise_var": var, "loss": loss}, "config_hash": f"h-{loss}-{var}",
           "protocol_hash": f"p-{loss}-{var}", "seed": 0, "iterations": 1, "log_every": 1, "status": "complete"}
    write_metrics_csv(root / "metrics.csv", rows)
    write_json(root / "summary.json", {"schema": 2, "run": run, "images": entries})


def test_the_baselines_table_averages_each_image_once(tmp_path):
    two = {"face": [("wiener_oracle", 24.0, 0.7), ("richardson_lucy", 20.0, 0.5)],
           "zebra": [("wiener_oracle", 22.0, 0.6), ("richardson_lucy", 21.0, 0.4)]}
    _job(tmp_path / "bp", "bp", 2, two)
    _job(tmp_path / "ls", "ls", 2, two)  # the same y for another loss: not counted twice
    _job(tmp_path / "bp4", "bp", 4, {"face": [("wiener_oracle", 19.0, 0.3)]})
    report = build_report(load_local([str(tmp_path)]))
    md = markdown(report)
    assert "## Baselines" in md
    line = next(ln for ln in md.splitlines() if ln.startswith("| Wiener (balance tuned with truth)"))
    assert "23.00 / 0.65 (n=2)" in line and "19.00 / 0.30 (n=1)" in line
    rl = next(ln for ln in md.splitlines() if ln.startswith("| Richardson–Lucy (30 its)"))
    assert "20.50 / 0.45 (n=2)" in rl and rl.rstrip().endswith("| – |")  # no RL at var 4
    write_report(report, tmp_path / "out", figure=False)
    frame = pd.read_csv(tmp_path / "out" / "baselines.csv")
    row = frame[(frame.method == "wiener_oracle") & (frame.noise_var == 2)].iloc[0]
    assert row.n == 2 and row.psnr == pytest.approx(23.0) and row.ssim == pytest.approx(0.55)


def test_old_and_new_baselines_read_together_each_with_its_boundary_model(tmp_path):
    """A reused record from before issue 30 holds the four scikit-image baselines only; a new
    one adds BM3D: the table takes both (n says how many images each row has)."""
    _job(tmp_path / "old", "bp", 2, {"face": [("wiener_oracle", 24.0, 0.7)]})
    _job(tmp_path / "new", "ls", 2, {"zebra": [("wiener_oracle", 22.0, 0.6), ("bm3d", 25.0, 0.8)]})
    md = markdown(build_report(load_local([str(tmp_path)])))
    wiener = next(ln for ln in md.splitlines() if ln.startswith("| Wiener (balance tuned with truth)"))
    bm3d = next(ln for ln in md.splitlines() if ln.startswith("| BM3D-DEB"))
    assert "| circular |" in wiener and "23.00 / 0.65 (n=2)" in wiener
    assert "| circular |" in bm3d and "25.00 / 0.80 (n=1)" in bm3d
    assert "its boundary model" in md and "non-commercial" in md


def test_records_without_baselines_leave_the_section_out(tmp_path):
    _job(tmp_path / "bp", "bp", 2, {"face": []})
    report = build_report(load_local([str(tmp_path)]))
    assert "## Baselines" not in markdown(report)
