"""The optimisation loop end to end on a small crop with a slim network (CPU)."""

import numpy as np
import pytest
import torch
from conftest import SLIM
from skimage.metrics import structural_similarity

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
    # every 50th and the last iteration (issue 29), each measured before its step
    assert [r["iteration"] for r in res.curve] == [0, 50, 100, 150, 200, 250, 299]
    assert rec.logged == [("face", i) for i in [*range(0, 300, 50), 299]] and rec.ended == ["complete"]
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
    assert "average_psnr" in resumed.curve[-1]  # the streams too: the average is in the checkpoint
    assert resumed.final == ref.final and resumed.streams == ref.streams
    np.testing.assert_array_equal(resumed.image, ref.image)
    assert resumed.stream_images.keys() == ref.stream_images.keys()
    for key in ref.stream_images:
        np.testing.assert_array_equal(resumed.stream_images[key], ref.stream_images[key])


def test_corrupt_checkpoint_is_ignored(face, tmp_path, caplog):
    x, y, loss = face
    ckpt = tmp_path / "ckpt.pt"
    ckpt.write_bytes(b"truncated")
    settings = LoopSettings(iterations=10, log_every=5, checkpoint_every=5, progress=False)
    (res,) = restore(net(), loss, y, ["face"], settings, x_true=x, checkpoint=ckpt, device="cpu")
    [line] = [r.getMessage() for r in caplog.records if "ignoring checkpoint" in r.getMessage()]
    assert str(ckpt) in line and "unreadable" in line and "\n" not in line
    assert (tmp_path / "ckpt.pt.rejected").read_bytes() == b"truncated"  # set aside, not deleted
    assert res.status == "complete" and [r["iteration"] for r in res.curve] == [0, 5, 9]


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


def hand_written_dip(factory, model_seed, seed, x, y_loss, iterations):
    """PROTOCOL "Network" and "Optimisation and measurement", written out step by step,
    independently of bpdip.loop: z = 0.1 * U[0, 1) and then one N(0, 1) draw per step from
    one generator seeded with ``seed`` (z first: the draw order bpdip.loop._Noise documents);
    the input z + 0.03 * N(0, 1), fresh each step; Adam(lr 0.01, default betas) on the
    weights; the logged numbers from that step's perturbed output, before its update; the
    final image clip(f(z)) from the unperturbed z, BatchNorm in training mode throughout."""
    gen = torch.Generator().manual_seed(seed)
    z = 0.1 * torch.rand((1, 32, *x.shape[-2:]), generator=gen)
    model = seeded_model(factory, model_seed).train()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    curve = []
    average = None
    for i in range(iterations):
        with torch.no_grad():  # issue 20's clean stream: f(z) with this step's weights
            clean = model(z).clamp(0.0, 1.0)
        out = model(z + 0.03 * torch.randn(z.shape, generator=gen))
        loss = y_loss(out)
        # DIP's code: out_avg = out_avg * 0.99 + out * 0.01, starting from the first output
        average = out.detach() if average is None else average * 0.99 + out.detach() * 0.01
        shown = out.detach().clamp(0.0, 1.0)  # PROTOCOL: metrics of the clipped output
        curve.append({"iteration": i, "psnr": float(psnr(shown, x)[0]), "loss": float(loss[0].detach()),
                      "image": shown[0].permute(1, 2, 0).numpy(), "clean_psnr": float(psnr(clean, x)[0]),
                      "average_psnr": float(psnr(average.clamp(0.0, 1.0), x)[0])})
        opt.zero_grad()
        loss.sum().backward()
        opt.step()
    with torch.no_grad():
        final = model(z).clamp(0.0, 1.0)
    return curve, final[0].permute(1, 2, 0).numpy()


def test_restore_equals_a_hand_written_protocol_loop():
    """restore() with LoopSettings' defaults (lr, input noise, z scale) is the PROTOCOL loop,
    number for number, in float64 so that any deviation (z range, missing input noise,
    metrics after the step, the final image from a perturbed input) shows."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        x_np = center_crop(load_image(SET14_DIR / "face.png"), (32, 28))
        x = torch.from_numpy(x_np).permute(2, 0, 1)[None]
        y = x.flip(-1)  # any fixed target: the loop, not the loss, is under test

        def y_loss(out):  # per-sample sum of squares, a pure function of the output
            return (out - y).square().sum(dim=(1, 2, 3))

        factory = lambda: SkipNet(**SLIM)  # noqa: E731
        n = 5
        curve, final = hand_written_dip(factory, 11, 7, x, y_loss, n)
        settings = LoopSettings(iterations=n, log_every=1, progress=False)
        (res,) = restore(seeded_model(factory, 11), y_loss, y, ["face"], settings, x_true=x, seed=7, device="cpu",
                         output={"restore": "clean"})
    finally:
        torch.set_default_dtype(before)

    assert res.status == "complete" and [r["iteration"] for r in res.curve] == list(range(n))
    for got, want in zip(res.curve, curve, strict=True):
        assert got["psnr"] == pytest.approx(want["psnr"], abs=1e-12, rel=0)
        assert got["loss"] == pytest.approx(want["loss"], abs=1e-12, rel=1e-14)
        # the other two streams (bpdip.streams) at the same iteration; the loop keeps them in
        # float32 (as the stopping rules' candidates), hence float32 rounding, ~1e-9 dB here
        assert got["clean_psnr"] == pytest.approx(want["clean_psnr"], abs=1e-6, rel=0)
        assert got["average_psnr"] == pytest.approx(want["average_psnr"], abs=1e-6, rel=0)
        # the Table I SSIM (data range 2) against scikit-image on the same clipped output
        ref = structural_similarity(x_np, want["image"], channel_axis=-1, data_range=2.0)
        assert got["ssim_dr2"] == pytest.approx(ref, abs=1e-10)
    # the loss falls within 5 Adam steps, so a loop that skipped the update would show
    assert curve[-1]["loss"] < curve[0]["loss"]
    # not vacuous: the three streams differ after a few steps
    assert len({curve[-1][k] for k in ("psnr", "clean_psnr", "average_psnr")}) == 3
    assert res.restored_stream == "clean"
    # restore() hands the final image back in float32 (output.restore=clean: the paper's f(z))
    np.testing.assert_allclose(res.image, final.astype(np.float32), rtol=0, atol=1e-12)
    assert res.final["psnr"] == pytest.approx(float(psnr(torch.from_numpy(final.astype(np.float32)).permute(2, 0, 1),
                                                         x[0])[0]), abs=1e-12)


def test_the_streams_change_nothing_the_perturbed_run_computes(face):
    """The clean forward (BatchNorm in training mode, running statistics put back) and the
    average leave the run as it is: bit-identical perturbed curve, losses and final weights
    and buffers, with and without the streams."""
    x, y, loss = face
    settings = LoopSettings(iterations=12, log_every=3, progress=False)
    runs = {}
    for on in (False, True):
        model = net(4)
        (res,) = restore(model, loss, y, ["face"], settings, x_true=x, seed=2, device="cpu", streams=on)
        runs[on] = (res, {k: v.clone() for k, v in model.state_dict().items()})
    (plain, plain_state), (full, full_state) = runs[False], runs[True]
    keys = ("iteration", "psnr", "ssim", "ssim_dr2", "loss")
    assert [[r[k] for k in keys] for r in full.curve] == [[r[k] for k in keys] for r in plain.curve]
    np.testing.assert_array_equal(full.losses, plain.losses)
    assert plain_state.keys() == full_state.keys()
    for k in plain_state:  # running_mean / running_var / num_batches_tracked included
        assert torch.equal(plain_state[k], full_state[k]), k
    assert "clean_psnr" not in plain.curve[0] and "clean_psnr" in full.curve[0]
    # the default restored image is the average (conf/output/default.yaml), measured as written
    assert full.restored_stream == "average"
    assert full.final["psnr"] == pytest.approx(full.streams["average"]["final"]["psnr"], abs=1e-12)
    assert float(psnr(torch.from_numpy(full.image).permute(2, 0, 1).double(), x[0])[0]) == pytest.approx(
        full.final["psnr"], abs=1e-4)
    # without the streams the restored image is the paper's f(z): the clean stream's final
    assert plain.final == pytest.approx(full.streams["clean"]["final"])
    assert full.streams["clean"]["final"] == pytest.approx(full.last)
    # every stream's oracle image is its own logged peak
    for s, prefix in (("perturbed", ""), ("clean", "clean_"), ("average", "average_")):
        peak = max(full.curve, key=lambda r: r[f"{prefix}psnr"])
        img = torch.from_numpy(full.stream_images[f"{s}.oracle"]).permute(2, 0, 1).double()
        assert float(psnr(img, x[0])[0]) == pytest.approx(peak[f"{prefix}psnr"], abs=1e-4)
        assert full.streams[s]["stopping"]["oracle"]["iteration"] == peak["iteration"]
    assert set(full.stream_images) == {"perturbed.oracle", "clean.oracle", "average.oracle", "average.fixed"}
