"""The optimisation loop end to end on a small crop with a slim network (CPU)."""

import numpy as np
import pytest
import torch

from bpdip.data import SET14_DIR, center_crop, load_image
from bpdip.losses import make_loss
from bpdip.loop import Callback, LoopSettings, restore, seeded_model
from bpdip.metrics import psnr
from bpdip.models import SkipNet
from bpdip.physics import Blur, degrade, derive_seed, make_kernel, noise_sigma

NET = dict(channels_down=(16, 16, 16), channels_up=(16, 16, 16), channels_skip=(4, 4, 4))


def tensor(a):
    return torch.from_numpy(a).permute(2, 0, 1)[None].float()


@pytest.fixture(scope="module")
def face():
    x = center_crop(load_image(SET14_DIR / "face.png"), 64)
    k = make_kernel("gaussian")
    y = degrade(x, k, 0.3, derive_seed(0, "face", "noise"))
    blur = Blur(k, x.shape[:2])
    return tensor(x), tensor(y), make_loss("bp", blur, tensor(y), noise_sigma(0.3))


def net(seed=1, **kw):
    return seeded_model(lambda: SkipNet(**(kw or NET)), seed)


class Recorder(Callback):
    def __init__(self):
        self.logged, self.ended, self.checkpoints = [], [], []

    def on_log(self, result, record):
        self.logged.append((result.name, record["iteration"]))

    def on_checkpoint(self, iteration, path):
        self.checkpoints.append(iteration)

    def on_end(self, result):
        self.ended.append(result.status)


def test_bp_dip_deblurs_a_small_crop(face):
    x, y, loss = face
    blurred = float(psnr(y.clamp(0, 1), x)[0])
    rec = Recorder()
    settings = LoopSettings(iterations=300, log_every=50, progress=False)
    (res,) = restore(net(), loss, y, ["face"], settings, x_true=x, seed=1, device="cpu", callbacks=[rec])
    assert res.status == "complete" and res.iterations == 300
    assert [r["iteration"] for r in res.curve] == [0, 50, 100, 150, 200, 250]
    assert rec.logged == [("face", i) for i in range(0, 300, 50)] and rec.ended == ["complete"]
    # stated margin: BP-DIP gains at least 1 dB over the blurred input within 300 steps
    assert res.final["psnr"] > blurred + 1.0
    assert res.peak["psnr"] > blurred + 1.0
    # the final image is the clipped output of the unperturbed z, and its PSNR is the record's
    assert res.image.shape == (64, 64, 3) and 0 <= res.image.min() and res.image.max() <= 1
    assert float(psnr(torch.from_numpy(res.image).permute(2, 0, 1).double(), x[0])[0]) == pytest.approx(
        res.final["psnr"], abs=1e-4)
    assert all(np.isfinite(r["loss"]) and r["seconds"] >= 0 for r in res.curve)
    assert res.curve[-1]["loss"] < res.curve[0]["loss"]
    # loss and time of every iteration; the logged losses are the same numbers
    assert res.losses.shape == (300,)
    assert [float(res.losses[r["iteration"]]) for r in res.curve] == pytest.approx([r["loss"] for r in res.curve])
    assert res.seconds_per_iteration == pytest.approx(res.runtime_s / 300)


class NaNAfter:
    """Wraps a loss; returns NaN from call ``k`` on (a diverging run)."""

    def __init__(self, loss, k):
        self.loss, self.k, self.calls = loss, k, 0

    def __call__(self, out):
        value = self.loss(out)
        self.calls += 1
        return value * float("nan") if self.calls > self.k else value


def test_non_finite_loss_fails_the_image_and_keeps_the_curve(face):
    x, y, loss = face
    settings = LoopSettings(iterations=100, log_every=10, progress=False)
    (res,) = restore(net(), NaNAfter(loss, 25), y, ["face"], settings, x_true=x, seed=1, device="cpu")
    assert res.status == "failed" and "non-finite" in res.error
    assert [r["iteration"] for r in res.curve] == [0, 10, 20]
    # the failure is seen at the log of iteration 30, after that step: 31 steps ran, the loss
    # of each kept, non-finite from the 26th call on
    assert res.image is None and res.iterations == 31 and len(res.losses) == 31
    assert np.isfinite(res.losses[:25]).all() and np.isnan(res.losses[25:]).all()


class Kill(Callback):
    def __init__(self, at):
        self.at = at

    def on_log(self, result, record):
        if record["iteration"] == self.at:
            raise KeyboardInterrupt("injected")


def test_checkpoint_resume_reproduces_uninterrupted_curve(face, tmp_path):
    x, y, loss = face
    settings = LoopSettings(iterations=60, log_every=10, checkpoint_every=20, progress=False)
    kw = dict(x_true=x, seed=3, device="cpu")
    (ref,) = restore(net(2), loss, y, ["face"], settings, **kw)
    ckpt = tmp_path / "ckpt.pt"
    rec = Recorder()
    with pytest.raises(KeyboardInterrupt):
        restore(net(2), loss, y, ["face"], settings, callbacks=[rec, Kill(50)], checkpoint=ckpt, **kw)
    assert rec.checkpoints == [20, 40] and ckpt.is_file()
    (resumed,) = restore(net(2), loss, y, ["face"], settings, checkpoint=ckpt, **kw)
    strip = lambda curve: [{k: v for k, v in r.items() if k != "seconds"} for r in curve]  # noqa: E731
    assert strip(resumed.curve) == strip(ref.curve)
    assert resumed.final == ref.final
    np.testing.assert_array_equal(resumed.image, ref.image)


def test_corrupt_checkpoint_is_ignored(face, tmp_path):
    x, y, loss = face
    ckpt = tmp_path / "ckpt.pt"
    ckpt.write_bytes(b"truncated")
    settings = LoopSettings(iterations=10, log_every=5, checkpoint_every=5, progress=False)
    with pytest.warns(UserWarning, match="ignoring unreadable checkpoint"):
        (res,) = restore(net(), loss, y, ["face"], settings, x_true=x, checkpoint=ckpt, device="cpu")
    assert res.status == "complete" and [r["iteration"] for r in res.curve] == [0, 5]


def test_same_seed_same_run_other_seed_differs(face):
    x, y, loss = face
    settings = LoopSettings(iterations=5, log_every=1, progress=False)
    run = lambda s: restore(net(s), loss, y, ["f"], settings, x_true=x, seed=s, device="cpu")[0]  # noqa: E731
    a, b, c = run(1), run(1), run(2)
    assert [r["psnr"] for r in a.curve] == [r["psnr"] for r in b.curve]
    assert [r["psnr"] for r in a.curve] != [r["psnr"] for r in c.curve]


def test_bad_settings_and_small_image(face):
    x, y, loss = face
    with pytest.raises(ValueError, match="iterations and log_every"):
        LoopSettings(iterations=0)
    deep = SkipNet(channels_down=(4,) * 7, channels_up=(4,) * 7, channels_skip=(4,) * 7)  # >= 129 px
    with pytest.raises(ValueError, match="too small"):
        restore(deep, loss, y, ["face"], LoopSettings(iterations=1, progress=False), device="cpu")
    with pytest.raises(RuntimeError, match="no CUDA GPU"):
        restore(net(), loss, y, ["face"], LoopSettings(iterations=1, progress=False), device="cuda")
