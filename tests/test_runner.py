"""The runner end to end: a real Hydra multirun, per-run records checked against
independent computations, seeds per image, failures, and the demo."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio

from bpdip.data import SET14_DIR, center_crop, load_image
from bpdip.loggers import format_summary
from bpdip.loop import Callback
from bpdip.records import CURVE_COLUMNS, read_summary
from bpdip.runner import degraded, plan_cell, run_cell
from bpdip.runner.demo import loss_config, run_demo

ROOT = Path(__file__).resolve().parents[1]


def assert_same_curve(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Bit-for-bit equal curves (CPU runs are deterministic); the seconds column is not compared."""
    pd.testing.assert_frame_equal(a, b, check_exact=True)
TV = {("uniform", "bp"): 0.0, ("radial", "bp"): 0.0, ("gaussian", "bp"): 0.0,
      ("uniform", "bp_tv"): 1e-3, ("radial", "bp_tv"): 1e-3, ("gaussian", "bp_tv"): 1e-3}


@pytest.fixture(scope="module")
def hydra_conf():
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        yield lambda *o: compose("config", overrides=list(o))


@pytest.fixture(scope="module")
def cfg_of(hydra_conf):
    return lambda *o: hydra_conf("experiment=smoke", "results_root=null", *o)


def check_job_dir(job: Path, images: list[str], crop: int, iterations: int, log_every: int) -> dict:
    """Validate one job directory's records against each other and against the images."""
    summary = read_summary(job / "summary.json")
    frame = pd.read_csv(job / "metrics.csv")
    assert tuple(frame.columns) == CURVE_COLUMNS
    assert summary["run"]["status"] == "complete"
    assert summary["run"]["torch_version"] == torch.__version__
    commit = summary["run"]["git_commit"]
    assert commit == "unknown" or (len(commit) == 40 and int(commit, 16) >= 0)
    assert list(summary["images"]) == images
    for name in images:
        curve = frame[frame.image == name]
        assert list(curve.iteration) == list(range(0, iterations, log_every))
        entry = summary["images"][name]
        best = curve.loc[curve.psnr.idxmax()]
        assert entry["status"] == "complete" and entry["iterations"] == iterations
        assert entry["peak_psnr"] == pytest.approx(best.psnr, rel=1e-12)
        assert entry["peak_iteration"] == best.iteration
        assert entry["peak_ssim_dr2"] == pytest.approx(best.ssim_dr2, rel=1e-12)
        # the PNG is the final image: its PSNR (scikit-image) matches the record up to 8-bit rounding
        restored = np.asarray(Image.open(job / "restored" / f"{name}.png"), dtype=np.float64) / 255
        truth = center_crop(load_image(SET14_DIR / f"{name}.png"), crop)
        assert restored.shape == truth.shape
        assert peak_signal_noise_ratio(truth, restored, data_range=1.0) == pytest.approx(entry["final_psnr"], abs=0.05)
    return summary


def test_multirun_exactly_as_typed(tmp_path):
    """`python run.py -m kernel=uniform,radial,gaussian loss=bp,bp_tv` with the smoke preset."""
    cmd = [sys.executable, str(ROOT / "run.py"), "-m", "kernel=uniform,radial,gaussian", "loss=bp,bp_tv",
           "experiment=smoke", f"hydra.sweep.dir={tmp_path / 'sweep'}", f"results_root={tmp_path / 'store'}"]
    out = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    jobs = sorted(p for p in (tmp_path / "sweep").iterdir() if p.is_dir())
    expected = [f"{n}-{k}-0.3-{loss}" for n, (k, loss) in enumerate(
        [(k, loss) for k in ("uniform", "radial", "gaussian") for loss in ("bp", "bp_tv")])]
    assert sorted(j.name for j in jobs) == sorted(expected)
    hashes = set()
    for job in jobs:
        _, kernel, var, loss = job.name.split("-")
        summary = check_job_dir(job, ["face", "comic"], 40, 6, 2)
        assert summary["run"]["cell"] == {"kernel": kernel, "noise_var": 0.3, "loss": loss}
        assert summary["run"]["engine"] == "fp32"  # engine "auto" as it ran on this CPU
        resolved = (job / "config.yaml").read_text()
        assert f"tv_weight: {TV[(kernel, loss)]}" in resolved
        hashes.add(summary["run"]["config_hash"])
        assert "summary of" in out.stderr + out.stdout  # the end-of-job table
    assert len(hashes) == 6  # every cell has its own config hash
    assert len(list((tmp_path / "store").iterdir())) == 12  # one store record per (cell, image)


def test_an_image_alone_gives_the_same_curve_as_in_a_set(cfg_of, tmp_path):
    both = run_cell(cfg_of("data.images=[face,comic]"), tmp_path / "both")
    alone = run_cell(cfg_of("data.images=[comic]"), tmp_path / "alone")
    frame = lambda d: pd.read_csv(d / "metrics.csv").query("image == 'comic'").drop(columns="seconds")  # noqa
    assert_same_curve(frame(tmp_path / "both").reset_index(drop=True),
                                  frame(tmp_path / "alone").reset_index(drop=True))
    assert both["images"]["comic"]["final_psnr"] == alone["images"]["comic"]["final_psnr"]
    p1, p2 = plan_cell(cfg_of("data.images=[face,comic]")), plan_cell(cfg_of("data.images=[comic]"))
    np.testing.assert_array_equal(degraded(p1, p1.tasks[1])[1], degraded(p2, p2.tasks[0])[1])
    assert p1.config_hash == p2.config_hash  # the image selection is not part of the cell's hash
    # different seeds, different noise
    p3 = plan_cell(cfg_of("data.images=[comic]", "seed=1"))
    assert not np.array_equal(degraded(p2, p2.tasks[0])[1], degraded(p3, p3.tasks[0])[1])


class ReadSummaryDuring(Callback):
    """Reads the job's summary.json while the second image trains."""

    def __init__(self, job: Path):
        self.job, self.seen = job, None

    def on_log(self, result, record):
        if result.name == "comic" and self.seen is None:
            self.seen = json.loads((self.job / "summary.json").read_text())


def test_summary_is_rewritten_after_each_image(cfg_of, tmp_path):
    spy = ReadSummaryDuring(tmp_path)
    run_cell(cfg_of(), tmp_path, callbacks=[spy])
    assert spy.seen["run"]["status"] == "running"
    assert spy.seen["images"]["face"]["status"] == "complete"
    assert spy.seen["images"]["comic"]["status"] == "running"
    assert set(pd.read_csv(tmp_path / "metrics.csv").image) == {"face", "comic"}


def test_non_finite_loss_fails_that_image_and_the_job_goes_on(cfg_of, tmp_path, monkeypatch):
    import bpdip.runner.cell as cell

    real = cell.make_loss

    def poisoned(fidelity, blur, y, *args, **kwargs):
        loss = real(fidelity, blur, y, *args, **kwargs)
        if y.shape[-1] != 40 or poisoned.done:
            return loss
        poisoned.done, calls = True, []

        def f(x):  # face: NaN from the 4th step on
            calls.append(1)
            return loss(x) * (math.nan if len(calls) > 3 else 1.0)
        return f

    poisoned.done = False
    monkeypatch.setattr(cell, "make_loss", poisoned)
    summary = run_cell(cfg_of("loss.iterations=8"), tmp_path)
    face, comic = summary["images"]["face"], summary["images"]["comic"]
    assert face["status"] == "failed" and "non-finite" in face["error"]
    assert comic["status"] == "complete"
    assert summary["run"]["status"] == "failed"
    rows = pd.read_csv(tmp_path / "metrics.csv")
    assert list(rows[rows.image == "face"].iteration) == [0, 2]  # the curve up to the failure is kept
    assert list(rows[rows.image == "comic"].iteration) == [0, 2, 4, 6]
    assert not (tmp_path / "restored" / "face.png").exists()
    text = format_summary(summary, rows.to_dict("records"))  # the end-of-job table
    assert "mean over 1/2 complete image(s)" in text
    assert [ln.split()[1] for ln in text.splitlines() if ln.startswith(("face ", "comic "))] == ["failed", "complete"]


def test_demo_writes_the_side_by_side_figure_and_prints_psnrs(hydra_conf, tmp_path, capsys):
    cfg = hydra_conf("experiment=demo", "model=slim", "data.crop=40", "demo.losses.ls.iterations=4",
                     "demo.losses.bp.iterations=4", "log_every=2", "progress=false", "threads=1")
    out = run_demo(cfg, tmp_path)
    printed = capsys.readouterr().out
    fig = Image.open(tmp_path / "demo.png")
    assert fig.size[0] > 3 * fig.size[1]  # four panels in a row
    plan = plan_cell(loss_config(cfg, "ls"))
    x, y = degraded(plan, plan.tasks[0])
    blurred = peak_signal_noise_ratio(x, np.clip(y, 0, 1), data_range=1.0)
    assert f"blurred input  PSNR {blurred:6.2f} dB" in printed
    for key, label in (("ls", "LS-DIP"), ("bp", "BP-DIP")):
        entry = read_summary(tmp_path / key / "summary.json")["images"][plan.tasks[0].name]
        assert entry["iterations"] == 4
        assert f"{label:<14} PSNR {entry['final_psnr']:6.2f} dB" in printed
        assert out["summaries"][key]["run"]["cell"]["loss"] == key
