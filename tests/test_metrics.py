"""Torch PSNR/SSIM equal scikit-image's (PROTOCOL "Optimisation and measurement")."""

import numpy as np
import pytest
import torch

from bpdip.data import SET14_DIR, center_crop, load_image
from bpdip.metrics import psnr, psnr_skimage, quality, ssim, ssim_skimage


def t(a):
    return torch.from_numpy(a).permute(2, 0, 1)


def pairs(rng):
    ref = rng.random((23, 31, 3))
    yield ref, np.clip(ref + 0.1 * rng.standard_normal(ref.shape), 0, 1)
    img = center_crop(load_image(SET14_DIR / "baboon.png"), (61, 47))
    yield img, np.clip(img + 0.03 * rng.standard_normal(img.shape), 0, 1)
    yield img, img[::-1].copy()


@pytest.mark.parametrize("data_range", [1.0, 2.0])
def test_ssim_equals_skimage(rng, data_range):
    for ref, x in pairs(rng):
        ours = float(ssim(t(x), t(ref), data_range=data_range)[0])
        assert ours == pytest.approx(ssim_skimage(x, ref, data_range), abs=1e-10)


def test_psnr_equals_skimage_and_hand_value(rng):
    for ref, x in pairs(rng):
        assert float(psnr(t(x), t(ref))[0]) == pytest.approx(psnr_skimage(x, ref), abs=1e-10)
    ref = np.zeros((8, 8, 3))
    assert float(psnr(t(ref + 0.1), t(ref))[0]) == pytest.approx(20.0)  # 10 log10(1 / 0.01)


def test_batched_metrics_and_quality_clips(rng):
    ref = rng.random((3, 16, 16))
    xs = torch.from_numpy(np.stack([ref, np.clip(ref + 0.2, 0, 1)]))
    q = quality(xs + 0.0, torch.from_numpy(ref)[None].expand(2, -1, -1, -1))
    assert q["psnr"].shape == (2,) and q["psnr"][0] == float("inf")
    assert q["ssim"][0] == pytest.approx(1.0) and q["ssim"][1] < 1.0
    # clipping: an output above 1 scores like its clipped version
    over = torch.from_numpy(ref)[None] + 5.0
    assert float(quality(over, torch.from_numpy(ref)[None])["psnr"][0]) == pytest.approx(
        float(psnr(torch.ones_like(over), torch.from_numpy(ref)[None])[0]))
    with pytest.raises(ValueError, match="at least 7x7"):
        ssim(torch.rand(3, 5, 9), torch.rand(3, 5, 9))


def test_quality_ssim_dr2_is_skimage_with_data_range_2(rng):
    """Table I's SSIM (PROTOCOL: the paper's old scikit-image used data_range = 2 for float
    images) is quality()["ssim_dr2"]; scikit-image itself is the reference, and the data
    range 1 value differs from it, so the two cannot be swapped unnoticed."""
    from skimage.metrics import structural_similarity

    for ref, x in pairs(rng):
        q = quality(t(x), t(ref))
        want = structural_similarity(ref, x, channel_axis=-1, data_range=2.0)
        assert float(q["ssim_dr2"][0]) == pytest.approx(want, abs=1e-10)
        assert float(q["ssim"][0]) == pytest.approx(structural_similarity(ref, x, channel_axis=-1, data_range=1.0),
                                                    abs=1e-10)
        assert abs(float(q["ssim_dr2"][0]) - float(q["ssim"][0])) > 1e-4


def test_quality_shares_the_ssim_statistics_and_gives_ssims_numbers():
    """quality() pools the SSIM statistics once for both data ranges (the output streams
    measure three images per log): bit for bit what ssim() gives for each range."""
    g = torch.Generator().manual_seed(3)
    x, ref = torch.rand(2, 3, 17, 23, generator=g) * 1.2 - 0.1, torch.rand(2, 3, 17, 23, generator=g).double()
    q = quality(x, ref)
    assert torch.equal(q["ssim"], ssim(x.clamp(0, 1), ref, 1.0))
    assert torch.equal(q["ssim_dr2"], ssim(x.clamp(0, 1), ref, 2.0))
    assert not torch.equal(q["ssim"], q["ssim_dr2"])
