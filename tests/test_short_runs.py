"""Short runs tell the truth (issue 29): the last iteration is always logged, and the
stopping rules' window and patience never scale below a floor that gives a statistic."""

import pandas as pd
import pytest
import torch
from conftest import SLIM

from bpdip.data import SET14_DIR, center_crop, load_image
from bpdip.loop import LoopSettings, is_logged, restore, seeded_model
from bpdip.losses import make_loss
from bpdip.models import SkipNet
from bpdip.physics import Blur, degrade, derive_seed, make_kernel, noise_sigma
from bpdip.runner import run_cell
from bpdip.stopping import StopSettings
from bpdip.stopping.base import SCALED_FLOOR
from bpdip.store import expected_rows


def test_logged_iterations_are_every_log_every_th_and_the_last():
    logged = [it for it in range(1000) if is_logged(it, 1000, 50)]
    assert logged == [*range(0, 1000, 50), 999] and expected_rows(1000, 50) == len(logged) == 21
    assert [it for it in range(1001) if is_logged(it, 1001, 50)] == list(range(0, 1001, 50))  # 1000 is on the grid
    assert [it for it in range(7) if is_logged(it, 7, 100)] == [0, 6] and expected_rows(7, 100) == 2
    assert [it for it in range(1) if is_logged(it, 1, 100)] == [0] and expected_rows(1, 100) == 1


@pytest.fixture(scope="module")
def face():
    x = center_crop(load_image(SET14_DIR / "face.png"), 24)
    k = make_kernel("uniform")
    y = degrade(x, k, 0.3, derive_seed(0, "face", "noise"))
    t = lambda a: torch.from_numpy(a).permute(2, 0, 1)[None].float()  # noqa: E731
    return t(x), t(y), make_loss("bp", Blur(k, x.shape[:2]), t(y), noise_sigma(0.3))


def test_a_run_shorter_than_log_every_logs_its_last_iteration_and_its_peak_is_not_only_iteration_0(face):
    x, y, loss = face
    settings = LoopSettings(iterations=30, log_every=100, progress=False, input_depth=8)
    (res,) = restore(seeded_model(lambda: SkipNet(in_channels=8, **SLIM), 1), loss, y, ["face"], settings,
                     x_true=x, seed=1, device="cpu")
    assert [r["iteration"] for r in res.curve] == [0, 29]
    # the last row is the output before the last step (the loss of iteration 29), not f(z) after it
    assert res.curve[-1]["loss"] == pytest.approx(float(res.losses[29]))
    assert res.peak["iteration"] == 29 and res.peak["psnr"] > res.curve[0]["psnr"] + 1  # 30 steps gain > 1 dB


def test_scaled_parameters_never_fall_below_the_floor():
    assert SCALED_FLOOR == 10
    eff = StopSettings().effective(20)  # 20 / 5000 of the reference run: W = 0.4 and P = 4 unfloored
    assert eff["wmv"] == {"window": 10, "patience": 10} and eff["emv"]["patience"] == eff["emv"]["start"] == 10
    assert StopSettings().effective(1500)["wmv"] == {"window": 30, "patience": 300}  # above the floor: as before
    small = StopSettings(wmv={"window": 3, "patience": 6}).effective(20)  # configured below the floor: kept
    assert small["wmv"] == {"window": 3, "patience": 6}


def test_a_20_iteration_stop_early_run_does_not_restore_iteration_0(compose_config, tmp_path):
    cfg = compose_config("experiment=smoke", "data.images=[face]", "loss.iterations=20", "log_every=5",
                         "stop=wmv", "stop.early=true", "results_root=null", "baselines=false")
    entry = run_cell(cfg, tmp_path)["images"]["face"]
    wmv = entry["stopping"]["wmv"]
    # W = 10: ES-WMV's first statistic is at iteration 9, so its choice is 9 or later, never 0
    assert wmv["iteration"] >= SCALED_FLOOR - 1
    assert entry["restored_from"] is None or entry["restored_from"]["iteration"] >= SCALED_FLOOR - 1
    rows = pd.read_csv(tmp_path / "metrics.csv")
    assert list(rows.iteration) == [0, 5, 10, 15, 19]
    assert rows.wmv_var.iloc[:2].isna().all() and rows.wmv_var.iloc[2:].notna().all()
