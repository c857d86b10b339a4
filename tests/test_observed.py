"""``data=observed``: a real blurred photograph, no ground truth (issue 10). The shipped
example (data/observed/) is restored with a stopping rule; no PSNR is computed anywhere."""

import math

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bpdip.data import DATA_ROOT, load_image
from bpdip.runner import UserError, plan_cell, run_cell

EXAMPLE = DATA_ROOT / "observed"
TINY = ("model=slim", "loss.iterations=40", "log_every=5", "checkpoint_every=0", "threads=1", "progress=false")


@pytest.fixture(scope="module")
def cfg_of(compose_config):
    def make(*overrides, path=EXAMPLE / "chelsea_blurred.png"):
        return compose_config("data=observed", f"data.path={path}", "kernel=file",
                              f"kernel.path={EXAMPLE / 'gaussian_kernel.npy'}", "noise.var=2", *TINY, *overrides)
    return make


def test_the_shipped_example_is_an_8_bit_observation_of_a_non_set14_image():
    img = Image.open(EXAMPLE / "chelsea_blurred.png")
    assert img.mode == "RGB" and img.size == (96, 96)
    k = np.load(EXAMPLE / "gaussian_kernel.npy", allow_pickle=False)
    assert k.shape == (15, 15) and k.sum() == pytest.approx(1.0)


def test_observed_run_restores_without_any_psnr(cfg_of, tmp_path):
    store = tmp_path / "store"
    cfg = cfg_of("stop=wmv", "stop.early=true", "stop.reference_iterations=40", "stop.wmv.window=3",
                 "stop.wmv.patience=6", "stop.warmup.floor=0", f"results_root={store}")
    summary = run_cell(cfg, tmp_path / "job")
    entry = summary["images"]["chelsea_blurred"]
    assert entry["status"] == "complete"
    assert all(entry[k] is None for k in ("peak_psnr", "final_psnr", "final_ssim", "last_psnr"))
    assert "oracle" not in entry["stopping"]  # it needs ground truth
    for rule, choice in entry["stopping"].items():
        assert "psnr" not in choice or choice["psnr"] is None, rule
    wmv = entry["stopping"]["wmv"]
    assert wmv["stopped"] and entry["stopped_early"] and entry["iterations"] < 40
    assert entry["restored_from"] == {"rule": "wmv", "iteration": wmv["iteration"]}
    frame = pd.read_csv(tmp_path / "job" / "metrics.csv")
    assert frame[["psnr", "ssim", "ssim_dr2"]].isna().all().all()  # no PSNR anywhere
    assert frame["residual"].notna().all() and frame["wmv_var"].notna().any()
    restored = Image.open(tmp_path / "job" / "restored" / "chelsea_blurred.png")
    assert restored.size == (96, 96)
    # data=observed defaults to boundary=valid: x is larger by the kernel's reach, kept too
    assert Image.open(tmp_path / "job" / "restored" / "chelsea_blurred.extended.png").size == (110, 110)
    # no truth: the fixed-parameter baselines' images beside the restored one, no numbers
    # (BM3D with the run's noise level, and the border-aware ones of boundary=valid: issue 30)
    fixed = ["unsupervised_wiener", "richardson_lucy", "bm3d", "unsupervised_wiener_extended", "bm3d_extended",
             "richardson_lucy_valid"]
    assert [b["method"] for b in entry["baselines"]] == fixed
    assert all(b["psnr"] is None for b in entry["baselines"])
    for method in fixed:
        assert Image.open(tmp_path / "job" / "restored" / f"chelsea_blurred.{method}.png").size == (96, 96)
    # the report takes it: no PSNR, the rules' iterations, no corrupt-record flag
    from bpdip.report import build_report, load_local
    from bpdip.report.build import markdown

    rep = build_report(load_local([str(tmp_path / "job")]))
    [cell] = [c for c in rep.cells if c.cell.kernel == "file-valid"]  # data=observed: boundary=valid
    assert cell.no_truth and cell.flags == [] and cell.peak is None
    rows = rep.stopping.set_index("rule")
    assert rows.loc["wmv", "iteration"] == wmv["iteration"] and math.isnan(rows.loc["wmv", "mean_psnr"])
    assert "no ground truth" in markdown(rep)
    # the store takes a ground-truth-free record: a relaunch reuses it
    again = run_cell(cfg, tmp_path / "job2")
    assert again["images"]["chelsea_blurred"]["reused"] is True


def test_the_default_choice_and_a_truth_for_measurement_only(cfg_of, tmp_path):
    """Without a stop key, data=observed picks conf/stop/observed.yaml (issue 32's measured
    choice); data.truth only measures: the run trains exactly as without it."""
    plan = plan_cell(cfg_of())
    assert (plan.stop.name, plan.stop.stream, plan.stop.early) == ("emv", "average", True)
    assert plan.stop.early_rule == "average.emv" and plan.output.restore == "average"
    plain = run_cell(cfg_of("stop.early=false"), tmp_path / "plain")["images"]["chelsea_blurred"]
    job = tmp_path / "truth"
    measured = run_cell(cfg_of("stop.early=false", f"data.truth={EXAMPLE / 'chelsea_truth.png'}"), job)
    entry = measured["images"]["chelsea_blurred"]
    assert plain["peak_psnr"] is None and entry["peak_psnr"] is not None
    for stream in ("perturbed", "average"):
        for rule in ("fixed", "wmv", "emv", "bp_discrepancy"):
            assert entry["choices"][stream][rule]["iteration"] == plain["choices"][stream][rule]["iteration"]
    frame = pd.read_csv(job / "metrics.csv")
    np.testing.assert_array_equal(frame["loss"], pd.read_csv(tmp_path / "plain" / "metrics.csv")["loss"])
    truth = np.asarray(Image.open(EXAMPLE / "chelsea_truth.png"), dtype=np.float64) / 255
    restored = load_image(job / "restored" / "chelsea_blurred.png")  # 16-bit: the record's PSNR
    assert entry["final_psnr"] == pytest.approx(10 * np.log10(1 / np.mean((restored - truth) ** 2)), abs=2e-3)
    # the input's record: y and the truth on one frame, and the input's PSNR against that truth
    y = np.load(job / entry["input"]["y"])
    assert np.asarray(Image.open(job / entry["input"]["truth"])).shape == y.shape == truth.shape
    assert entry["input"]["psnr"] == pytest.approx(10 * np.log10(1 / np.mean((np.clip(y, 0, 1) - truth) ** 2)), abs=1e-6)
    with pytest.raises(UserError, match="data.truth gives 2 image"):
        plan_cell(cfg_of(f"data.truth=[{EXAMPLE / 'chelsea_truth.png'},{EXAMPLE / 'chelsea_truth.png'}]"))


def test_the_same_file_as_observation_and_as_ground_truth_are_different_runs(cfg_of, compose_config):
    observed = plan_cell(cfg_of())
    folder = plan_cell(compose_config("data=folder", f"data.folder={EXAMPLE}", "data.images=[chelsea_blurred]",
                                      "kernel=file", f"kernel.path={EXAMPLE / 'gaussian_kernel.npy'}",
                                      "noise.var=2", *TINY))
    assert observed.observed and not folder.observed
    assert observed.tasks[0].sha256 == folder.tasks[0].sha256
    assert observed.tasks[0].run_id != folder.tasks[0].run_id


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "nosuch.png", "image not found"),
    (lambda d: ((d / "bad.png").write_bytes(b"not a png"), d / "bad.png")[1], "cannot read image"),
    (lambda d: (Image.new("RGBA", (32, 32)).save(d / "alpha.png"), d / "alpha.png")[1], "alpha channel"),
])
def test_bad_observation_files_get_one_clear_line(cfg_of, tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(UserError, match=message) as err:
        plan_cell(cfg_of(path=path))
    assert "\n" not in str(err.value)


def test_observed_needs_a_path(compose_config):
    with pytest.raises(UserError, match="data.path"):
        plan_cell(compose_config("data=observed", *TINY))


def test_stop_oracle_cannot_stop_early(cfg_of):
    with pytest.raises(UserError, match="cannot stop a run early"):
        plan_cell(cfg_of("stop=oracle", "stop.early=true"))
    assert math.isfinite(plan_cell(cfg_of()).sigma)
