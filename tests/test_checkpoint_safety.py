"""A shared results store never runs code or crashes a job (issue 15): checkpoints are
loaded as data (``torch.load(weights_only=True)``), and one that does not fit is set aside
with one warning line while the image trains from iteration 0.

Each planted file is tried the way a cluster user meets it: a job killed after its first
checkpoint, the checkpoint replaced, the job relaunched.
"""

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from bpdip.loop import Callback, LoopSettings, restore, seeded_model
from bpdip.losses import make_loss
from bpdip.models import SkipNet
from bpdip.physics import Blur, make_kernel
from bpdip.records import read_summary
from bpdip.runner import plan_cell, run_cell

SMALL = ("experiment=smoke", "loss.iterations=12", "checkpoint_every=4", "data.images=[face,comic]")


class Payload:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class KillAfterFirstCheckpoint(Callback):
    def on_checkpoint(self, iteration, path):
        raise KeyboardInterrupt


class Trained(Callback):
    def __init__(self):
        self.logged = {}

    def on_log(self, result, record):
        self.logged.setdefault(result.name, []).append(record["iteration"])


@pytest.fixture(scope="module")
def cfg_of(compose_config):
    return lambda root, *o: compose_config(*SMALL, f"results_root={root}", *o)


def warnings_about(caplog, path) -> list[str]:
    return [r.getMessage() for r in caplog.records if f"ignoring checkpoint {path}" in r.getMessage()]


@pytest.mark.parametrize("stack", [1, 2], ids=["single", "group"])
def test_a_planted_reduce_checkpoint_never_runs_and_the_image_retrains(cfg_of, tmp_path, caplog, stack):
    store = tmp_path / "store"
    cfg = lambda: cfg_of(store, f"engine.stack={stack}")  # noqa: E731
    with pytest.raises(KeyboardInterrupt):
        run_cell(cfg(), tmp_path / "job1", callbacks=[KillAfterFirstCheckpoint()])
    [ckpt] = [p for p in store.rglob("*.pt")]
    assert ckpt.name == "checkpoint.pt" if stack == 1 else ckpt.name.startswith("group-")
    marker = tmp_path / "PWNED"
    state = torch.load(ckpt, weights_only=True)
    state["elapsed"] = Payload(marker)
    torch.save(state, ckpt)  # what an attacker with write access to the store can do
    with pytest.raises(Exception):  # the unsafe loader would run the payload: check the file is armed
        torch.load(ckpt, weights_only=True)
    assert not marker.exists()

    spy = Trained()
    summary = run_cell(cfg(), tmp_path / "job2", callbacks=[spy])
    assert not marker.exists(), "the payload ran"
    [line] = warnings_about(caplog, ckpt)
    assert "refused by the safe loader" in line and "training from iteration 0" in line and "\n" not in line
    assert ckpt.with_name(ckpt.name + ".rejected").is_file() and not ckpt.exists()
    # both images trained in this job, from iteration 0 (face's killed run too)
    assert {name: its[0] for name, its in spy.logged.items()} == {"face": 0, "comic": 0}
    assert all(e["status"] == "complete" and e["iterations"] == 12 for e in summary["images"].values())
    for e in summary["images"].values():
        assert read_summary(store / e["run_id"] / "summary.json")["images"]
        assert len(pd.read_csv(store / e["run_id"] / "metrics.csv")) == 7  # 0, 2, ..., 10 and 11


# ---------------------------------------------------------------- each way not to fit

def _problem():
    from bpdip.data import SET14_DIR, center_crop, load_image

    x = torch.from_numpy(center_crop(load_image(SET14_DIR / "face.png"), 24)).permute(2, 0, 1)[None]
    op = Blur(make_kernel("uniform", size=3), (24, 24))
    y = op.A(x.float())
    return x, y, make_loss("bp", op, y, 0.01)


def _net():
    return seeded_model(lambda: SkipNet(in_channels=4, channels_down=(4, 4), channels_up=(4, 4),
                                        channels_skip=(2, 2)), 1)


SETTINGS = LoopSettings(iterations=8, log_every=2, checkpoint_every=4, progress=False, input_depth=4)


@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory):
    """A real checkpoint at iteration 4 of an 8-iteration run, and the uninterrupted run."""
    x, y, loss = _problem()
    path = tmp_path_factory.mktemp("ckpt") / "good.pt"
    with pytest.raises(KeyboardInterrupt):
        restore(_net(), loss, y, ["face"], SETTINGS, x_true=x, device="cpu", checkpoint=path,
                callbacks=[KillAfterFirstCheckpoint()])
    [ref] = restore(_net(), loss, y, ["face"], SETTINGS, x_true=x, device="cpu")
    return path, torch.load(path, weights_only=True), ref


def _spoil(state, how):
    state = dict(state)
    if how == "wrong keys":
        del state["optimizer"]
    elif how == "wrong shapes":
        model = dict(state["model"])
        key = next(k for k, v in model.items() if v.ndim == 4)
        model[key] = torch.zeros(1, 1, 1, 1)
        state["model"] = model
    elif how == "iteration beyond the run":
        state["iteration"] = 80
    elif how == "generator state of the wrong size":
        state["generator"] = state["generator"][:100]
    elif how == "optimiser moments of the wrong shape":
        opt = {**state["optimizer"], "state": dict(state["optimizer"]["state"])}
        opt["state"][0] = {**opt["state"][0], "exp_avg": torch.zeros(3)}
        state["optimizer"] = opt
    elif how == "not a dict":
        state = [1, 2, 3]
    return state


@pytest.mark.parametrize("how, reason", [
    ("wrong keys", "wrong keys: ['optimizer'] missing"),
    ("wrong shapes", "wrong shapes: network parameter"),
    ("iteration beyond the run", "iteration 80 is outside 0..8"),
    ("generator state of the wrong size", "wrong generator state"),
    ("optimiser moments of the wrong shape", "wrong shapes: optimiser state exp_avg of parameter 0"),
    ("not a dict", "not a checkpoint of the training loop"),
])
def test_a_checkpoint_that_does_not_fit_is_set_aside_with_its_reason(good_checkpoint, tmp_path, caplog, how, reason):
    _, state, ref = good_checkpoint
    x, y, loss = _problem()
    path = tmp_path / "ckpt.pt"
    torch.save(_spoil(state, how), path)
    [res] = restore(_net(), loss, y, ["face"], SETTINGS, x_true=x, device="cpu", checkpoint=path)
    [line] = warnings_about(caplog, path)
    assert reason in line, line
    assert res.status == "complete" and res.iterations == 8
    # trained from iteration 0 with a clean model: exactly the uninterrupted run
    np.testing.assert_array_equal(res.losses, ref.losses)
    assert [r["psnr"] for r in res.curve] == [r["psnr"] for r in ref.curve]
    assert (tmp_path / "ckpt.pt.rejected").is_file()


def test_a_good_checkpoint_still_resumes_to_the_identical_curve(good_checkpoint, tmp_path, caplog):
    path, state, ref = good_checkpoint
    copy = tmp_path / "copy.pt"
    torch.save(state, copy)
    x, y, loss = _problem()
    [res] = restore(_net(), loss, y, ["face"], SETTINGS, x_true=x, device="cpu", checkpoint=copy)
    assert not warnings_about(caplog, copy)
    np.testing.assert_array_equal(res.losses, ref.losses)
    assert [r["psnr"] for r in res.curve] == [r["psnr"] for r in ref.curve]


def test_the_plan_never_imports_what_a_store_file_names(cfg_of, tmp_path):
    """Store files are data: a config.json naming an import path is never resolved."""
    store = tmp_path / "store"
    plan = plan_cell(cfg_of(store))
    run_cell(cfg_of(store), tmp_path / "job")
    d = store / plan.tasks[0].run_id
    (d / "config.json").write_text('{"loss": {"fidelity": "os.system"}, "kernel": {"name": "evil.module.f"}}')
    again = run_cell(cfg_of(store), tmp_path / "job2")
    assert again["images"]["face"]["reused"] is True


# ------------------------------------- the loss's own state (issue 29: BP's CG warm start)

def _valid_problem():
    from bpdip.data import SET14_DIR, center_crop, load_image
    from bpdip.physics import ValidBlur

    op = ValidBlur(make_kernel("uniform", size=3), (22, 22))
    x = torch.from_numpy(center_crop(load_image(SET14_DIR / "face.png"), 24)).permute(2, 0, 1)[None]
    y = op.A(x.float())
    return x[..., 1:23, 1:23], y, lambda: make_loss("bp", op, y, 0.01), op.frame


@pytest.fixture(scope="module")
def valid_checkpoint(tmp_path_factory):
    x, y, loss, frame = _valid_problem()
    path = tmp_path_factory.mktemp("ckpt") / "valid.pt"
    kw = dict(x_true=x, device="cpu", image_shape=(24, 24), frame=frame)
    with pytest.raises(KeyboardInterrupt):
        restore(_net(), loss(), y, ["face"], SETTINGS, checkpoint=path, callbacks=[KillAfterFirstCheckpoint()], **kw)
    ref_loss = loss()
    [ref] = restore(_net(), ref_loss, y, ["face"], SETTINGS, **kw)
    return torch.load(path, weights_only=True), ref, ref_loss, kw


@pytest.mark.parametrize("how, reason", [
    ("missing", "wrong keys: ['loss'] missing"),
    ("warm start of the wrong shape", "the BP warm start has shape (1, 3, 5, 5)"),
    ("statistics of the wrong size", "the conjugate-gradient statistic 'its_sum' does not fit"),
    ("an FFT loss's state", "BP by conjugate gradients vs by FFT"),
])
def test_a_loss_state_that_does_not_fit_is_set_aside(valid_checkpoint, tmp_path, caplog, how, reason):
    state, ref, _, kw = valid_checkpoint
    x, y, loss, _ = _valid_problem()
    state = dict(state)
    assert state["loss"]["u"].shape == (1, 3, 22, 22) and state["loss"]["cg"]["calls"] == 4
    if how == "missing":
        del state["loss"]
    elif how == "warm start of the wrong shape":
        state["loss"] = {**state["loss"], "u": torch.zeros(1, 3, 5, 5, dtype=torch.float64)}
    elif how == "statistics of the wrong size":
        state["loss"] = {**state["loss"], "cg": {**state["loss"]["cg"], "its_sum": torch.zeros(3, dtype=torch.float64)}}
    else:
        state["loss"] = {}
    path = tmp_path / "ckpt.pt"
    torch.save(state, path)
    [res] = restore(_net(), loss(), y, ["face"], SETTINGS, checkpoint=path, **kw)
    [line] = warnings_about(caplog, path)
    assert reason in line, line
    np.testing.assert_array_equal(res.losses, ref.losses)  # trained from 0: the uninterrupted run


def test_a_valid_checkpoint_resumes_with_its_warm_start_and_statistics(valid_checkpoint, tmp_path, caplog):
    state, ref, ref_loss, kw = valid_checkpoint
    x, y, loss, _ = _valid_problem()
    path = tmp_path / "ckpt.pt"
    torch.save(state, path)
    resumed_loss = loss()
    [res] = restore(_net(), resumed_loss, y, ["face"], SETTINGS, checkpoint=path, **kw)
    assert not warnings_about(caplog, path)
    np.testing.assert_array_equal(res.losses, ref.losses)
    # the statistics cover the 8 solves of the run, not only the 4 after the restart
    assert resumed_loss.fidelity.cg.summary() == ref_loss.fidelity.cg.summary()
    assert resumed_loss.fidelity.cg.calls == 8
