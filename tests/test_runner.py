"""The runner end to end: a real Hydra multirun, per-run records checked against
independent computations, seeds per image, failures, and the demo."""

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio

from conftest import SLIM
from bpdip.data import SET14_DIR, center_crop, load_image
from bpdip.loggers import format_summary
from bpdip.loop import Callback, seeded_model
from bpdip.losses import make_loss
from bpdip.models import SkipNet
from bpdip.physics import Blur, derive_seed, make_kernel
from bpdip.records import CURVE_COLUMNS, read_summary
from bpdip import provenance
from bpdip.runner import degraded, plan_cell, run_cell
from bpdip.runner.demo import loss_config, run_demo

ROOT = Path(__file__).resolve().parents[1]


def assert_same_curve(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Bit-for-bit equal curves (CPU runs are deterministic); the seconds column is not compared."""
    pd.testing.assert_frame_equal(a, b, check_exact=True)


def head_commit() -> str | None:
    """``git rev-parse HEAD`` of this checkout, None without git or outside a checkout."""
    if shutil.which("git") is None:
        return None
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    return out.stdout.strip() if out.returncode == 0 else None


TV = {("uniform", "bp"): 0.0, ("radial", "bp"): 0.0, ("gaussian", "bp"): 0.0,
      ("uniform", "bp_tv"): 1e-3, ("radial", "bp_tv"): 1e-3, ("gaussian", "bp_tv"): 1e-3}


@pytest.fixture(scope="module")
def hydra_conf(compose_config):
    return compose_config


@pytest.fixture(scope="module")
def cfg_of(hydra_conf):
    return lambda *o: hydra_conf("experiment=smoke", "results_root=null", *o)


def check_job_dir(job: Path, images: list[str], crop: int, iterations: int, log_every: int,
                  commits: set = frozenset()) -> dict:
    """Validate one job directory's records against each other and against the images;
    ``commits``: the HEADs the job may have run at (none given: not checked)."""
    summary = read_summary(job / "summary.json")
    frame = pd.read_csv(job / "metrics.csv")
    # the fixed columns, then the stopping rules' statistics (each rule declares its own)
    assert tuple(frame.columns[:len(CURVE_COLUMNS)]) == CURVE_COLUMNS
    assert {"fidelity", "average_wmv_var"} <= set(frame.columns[len(CURVE_COLUMNS):])
    assert summary["run"]["status"] == "complete"
    assert summary["run"]["torch_version"] == torch.__version__
    if commits:
        assert summary["run"]["git_commit"] in commits
    assert isinstance(summary["run"]["git_dirty"], bool) or not commits
    assert list(summary["images"]) == images
    for name in images:
        curve = frame[frame.image == name]
        # every log_every-th iteration and the last (issue 29)
        assert list(curve.iteration) == sorted({*range(0, iterations, log_every), iterations - 1})
        entry = summary["images"][name]
        best = curve.loc[curve.psnr.idxmax()]
        assert entry["status"] == "complete" and entry["iterations"] == iterations
        assert entry["peak_psnr"] == pytest.approx(best.psnr, rel=1e-12)
        assert entry["peak_iteration"] == best.iteration
        assert entry["peak_ssim_dr2"] == pytest.approx(best.ssim_dr2, rel=1e-12)
        # the PNG is the final image at 16 bits: its PSNR (scikit-image) is the record's
        restored = load_image(job / "restored" / f"{name}.png")
        truth = center_crop(load_image(SET14_DIR / f"{name}.png"), crop)
        assert restored.shape == truth.shape
        assert peak_signal_noise_ratio(truth, restored, data_range=1.0) == pytest.approx(entry["final_psnr"], abs=2e-3)
    return summary


def test_multirun_exactly_as_typed(tmp_path):
    """`python run.py -m kernel=uniform,radial,gaussian loss=bp,bp_tv` with the smoke preset."""
    cmd = [sys.executable, str(ROOT / "run.py"), "-m", "kernel=uniform,radial,gaussian", "loss=bp,bp_tv",
           "experiment=smoke", f"hydra.sweep.dir={tmp_path / 'sweep'}", f"results_root={tmp_path / 'store'}"]
    before = head_commit()
    out = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    commits = {c for c in (before, head_commit()) if c}  # another commit may land meanwhile
    jobs = sorted(p for p in (tmp_path / "sweep").iterdir() if p.is_dir() and p.name != "report")
    expected = [f"{n}-{k}-0.3-{loss}" for n, (k, loss) in enumerate(
        [(k, loss) for k in ("uniform", "radial", "gaussian") for loss in ("bp", "bp_tv")])]
    assert sorted(j.name for j in jobs) == sorted(expected)
    hashes = set()
    for job in jobs:
        _, kernel, var, loss = job.name.split("-")
        summary = check_job_dir(job, ["face", "comic"], 40, 6, 2, commits)
        assert summary["run"]["cell"] == {"kernel": kernel, "noise_var": 0.3, "loss": loss}
        assert summary["run"]["engine"] == "fp32"  # engine "auto" as it ran on this CPU
        resolved = (job / "config.yaml").read_text()
        assert f"tv_weight: {TV[(kernel, loss)]}" in resolved
        hashes.add(summary["run"]["config_hash"])
        assert "summary of" in out.stderr + out.stdout  # the end-of-job table
    assert len(hashes) == 6  # every cell has its own config hash
    assert len(list((tmp_path / "store").iterdir())) == 12  # one store record per (cell, image)
    # the sweep ended with its report (hydra.callbacks.report): the six cells, each from its job
    table = pd.read_csv(tmp_path / "sweep" / "report" / "table1.csv")
    done = table[table["status"] == "complete"]
    assert len(done) == 6 and set(done["loss"]) == {"bp", "bp_tv"}
    for _, cell in done.iterrows():
        job = next(j for j in jobs if j.name.endswith(f"-{cell['kernel']}-0.3-{cell['loss']}"))
        curve = pd.read_csv(job / "metrics.csv").groupby("iteration").psnr.mean()
        assert cell["peak_psnr"] == pytest.approx(curve.max(), abs=1e-6)  # the peak of the mean curve
    assert (tmp_path / "sweep" / "report" / "fig1.png").stat().st_size > 0


def test_a_failing_sweep_report_only_warns(tmp_path, caplog):
    from omegaconf import OmegaConf

    from bpdip.report.sweep import ReportAtSweepEnd

    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path / "no-such-sweep")}}})
    ReportAtSweepEnd().on_multirun_end(config)  # no exception: the jobs' records stand
    assert "build it with: python -m bpdip.report" in caplog.text


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
    assert list(rows[rows.image == "comic"].iteration) == [0, 2, 4, 6, 7]
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
        assert f"{label:<14} PSNR {entry['final_psnr']:6.2f} dB: restored image = the averaged output" in printed
        assert out["summaries"][key]["run"]["cell"]["loss"] == key
        # every stream's peak with its iteration, from the record
        s = entry["streams"]
        want = ", ".join(f"{n} {s[n]['peak_psnr']:.2f} dB at iteration {s[n]['peak_iteration']}"
                         for n in ("perturbed", "clean", "average"))
        assert f"best logged PSNR per stream (ground truth): {want}" in printed


def test_records_name_the_checked_out_commit(cfg_of, tmp_path):
    """summary.json's git_commit is this checkout's HEAD (not "unknown"), git_dirty a bool."""
    before = head_commit()
    if before is None:
        pytest.skip("git is not installed or this is not a git checkout: the commit cannot be checked")
    provenance.git_commit.cache_clear()  # read HEAD for this job, not when an earlier test ran
    provenance.git_dirty.cache_clear()
    run = run_cell(cfg_of("data.images=[face]", "loss.iterations=2"), tmp_path)["run"]
    assert run["git_commit"] in {before, head_commit()}  # another helper may commit meanwhile
    assert isinstance(run["git_dirty"], bool)
    assert read_summary(tmp_path / "summary.json")["run"]["git_commit"] == run["git_commit"]


def test_the_report_header_names_the_short_commit(monkeypatch):
    """The report's 'code commit' is the commit's first 7 digits, '+dirty' where tracked
    files differ, 'unknown' outside git (bpdip.provenance.short_commit)."""
    monkeypatch.setattr(provenance, "git_commit", lambda: "0123456789abcdef")
    monkeypatch.setattr(provenance, "git_dirty", lambda: True)
    assert provenance.short_commit() == "0123456+dirty"
    monkeypatch.setattr(provenance, "git_dirty", lambda: False)
    assert provenance.short_commit() == "0123456"
    monkeypatch.setattr(provenance, "git_commit", lambda: "unknown")
    assert provenance.short_commit() == "unknown"


# The smoke preset's network: conf/model/slim.yaml (8 input channels, conftest.SLIM's widths).
SMOKE_NET = dict(in_channels=8, **SLIM)
# PROTOCOL "Optimisation": Adam lr 0.01, z ~ U[0, 0.1), z + 0.03 N(0, 1) at each step.
OPTIM = dict(lr=0.01, reg_noise_std=0.03, input_scale=0.1)
# cell -> (overrides, its loss from PROTOCOL "Losses" and paper Sec. IV: kernel, noise
# variance, fidelity, TV weight (eq. 11), fidelity parameters (BP, eq. 10: eps1, eps2))
CELLS = {
    "bp_tv-uniform-2": (("loss=bp_tv", "kernel=uniform", "noise.var=2"),
                        dict(kernel=("uniform", {"size": 9}), var=2.0, fidelity="bp", tv_weight=1e-3,
                             params={"eps1": 0.01, "eps2": 1e-3})),
    "ls_tv-radial-0.3": (("loss=ls_tv", "kernel=radial", "noise.var=0.3"),
                         dict(kernel=("radial", {}), var=0.3, fidelity="ls", tv_weight=1e-5, params={})),
}


def replay(image: str, y: np.ndarray, kernel: tuple, var: float, fidelity: str, tv_weight: float, params: dict,
           lr: float, reg_noise_std: float, input_scale: float, iterations: int = 6, log_every: int = 2,
           crop: int = 40, seed: int = 0) -> pd.DataFrame:
    """The smoke run of ``image`` (degraded to ``y``) re-done by hand (paper eqs. 3 and 9):
    the network and z seeded as bpdip.runner.cell.train_image seeds them (derive_seed(seed,
    image, "model" / "z")), z and then each step's N(0, 1) drawn from one generator in that
    order (bpdip.loop._Noise), plain Adam. Returns the logged iteration, loss and PSNR
    (scikit-image) of the clipped output before each step (PROTOCOL "measurement")."""
    x = center_crop(load_image(SET14_DIR / f"{image}.png"), crop)
    h, w = x.shape[:2]
    y_t = torch.from_numpy(y).permute(2, 0, 1)[None].float()
    loss = make_loss(fidelity, Blur(make_kernel(kernel[0], **kernel[1]), (h, w)), y_t, math.sqrt(var) / 255,
                     tv_weight, **params)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the smoke preset's job (threads=1): the same float reductions
    try:
        model = seeded_model(lambda: SkipNet(**SMOKE_NET), derive_seed(seed, image, "model")).train()
        gen = torch.Generator().manual_seed(derive_seed(seed, image, "z"))
        z = torch.rand((1, SMOKE_NET["in_channels"], h, w), generator=gen) * input_scale
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        rows = []
        for it in range(iterations):
            out = model(z + torch.randn(z.shape, generator=gen) * reg_noise_std)
            value = loss(out)
            if it % log_every == 0 or it == iterations - 1:  # the last iteration too (issue 29)
                shown = out.detach()[0].permute(1, 2, 0).double().clamp(0, 1).numpy()
                rows.append({"iteration": it, "loss": float(value.detach()),
                             "psnr": peak_signal_noise_ratio(x, shown, data_range=1.0)})
            opt.zero_grad()
            value.sum().backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    return pd.DataFrame(rows)


def recorded(job: Path, image: str = "face") -> pd.DataFrame:
    frame = pd.read_csv(job / "metrics.csv")
    return frame[frame.image == image][["iteration", "loss", "psnr"]].reset_index(drop=True)


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_the_runner_trains_the_configured_loss(cfg_of, tmp_path, cell):
    """The recorded losses and PSNRs are those of make_loss with PROTOCOL's values for the
    cell on an identically seeded network and input: a weight, epsilon or sigma that the
    runner dropped or altered (e.g. tv_weight passed as 0) changes them."""
    overrides, loss = CELLS[cell]
    plan = plan_cell(cfg_of("data.images=[face]", *overrides))
    run_cell(plan.config, tmp_path, plan=plan)
    _, y = degraded(plan, plan.tasks[0])
    ours, expected = recorded(tmp_path), replay("face", y, **loss, **OPTIM)
    assert list(ours.iteration) == [0, 2, 4, 5]
    np.testing.assert_allclose(ours.loss, expected.loss, rtol=1e-7)  # bit-equal here: one ulp
    np.testing.assert_allclose(ours.psnr, expected.psnr, rtol=1e-6)
    # the check can fail: without its TV term the iteration-0 loss is far outside the tolerance
    no_tv = replay("face", y, **{**loss, "tv_weight": 0.0}, **OPTIM, iterations=1)
    assert abs(no_tv.loss[0] - ours.loss[0]) > 1000 * 1e-7 * abs(ours.loss[0])


@pytest.mark.parametrize("key, value", [("lr", 0.02), ("reg_noise_std", 0.05), ("input_scale", 0.2)])
def test_the_optimiser_settings_follow_the_config(cfg_of, tmp_path, key, value):
    """optim.lr, optim.reg_noise_std and optim.input_scale reach the plan and the training:
    the curve changes, and equals the hand-made run with the new value."""
    overrides, loss = CELLS["bp_tv-uniform-2"]
    base = plan_cell(cfg_of("data.images=[face]", *overrides))
    plan = plan_cell(cfg_of("data.images=[face]", *overrides, f"optim.{key}={value}"))
    assert {k: getattr(base.settings, k) for k in OPTIM} == OPTIM  # conf/config.yaml: PROTOCOL's values
    assert {k: getattr(plan.settings, k) for k in OPTIM} == {**OPTIM, key: value}
    run_cell(base.config, tmp_path / "base", plan=base)
    run_cell(plan.config, tmp_path / "new", plan=plan)
    before, after = recorded(tmp_path / "base"), recorded(tmp_path / "new")
    assert not np.array_equal(before.loss, after.loss)
    expected = replay("face", degraded(plan, plan.tasks[0])[1], **loss, **{**OPTIM, key: value})
    np.testing.assert_allclose(after.loss, expected.loss, rtol=1e-7)
