"""PSNR and SSIM as PROTOCOL "Optimisation and measurement" defines them.

PSNR: RGB, [0, 1], data range 1, no border crop, no Y channel.
(Super-resolution adds ``psnr_y``, SR papers' Y-channel PSNR with a shaved border, issue 14.)
SSIM: scikit-image's ``structural_similarity`` defaults over RGB (7x7 uniform window,
sample covariance, K1 = 0.01, K2 = 0.03). The paper's old scikit-image used
data_range = 2 for float images; we report both that variant and data_range = 1.

``psnr``/``ssim`` here are torch ports that run on the training device (no copy to the
CPU), in float64. scikit-image filters with a reflect-padded uniform filter and then
drops a (win_size - 1) // 2 border before averaging; a valid-only 7x7 average pooling
computes the same numbers. ``tests/test_metrics.py`` checks them against scikit-image.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

WIN_SIZE = 7
K1, K2 = 0.01, 0.03


def _as_batch(x: torch.Tensor) -> torch.Tensor:
    x = torch.as_tensor(x)
    return (x[None] if x.ndim == 3 else x).to(torch.float64)


def psnr(x: torch.Tensor, ref: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """10 log10(R^2 / MSE) per sample, for (B, C, H, W) or (C, H, W) tensors."""
    x, ref = _as_batch(x), _as_batch(ref)
    mse = (x - ref).square().mean(dim=(-3, -2, -1))
    return 10.0 * torch.log10(data_range**2 / mse)


def _ssim_stats(x: torch.Tensor, ref: torch.Tensor) -> tuple:
    """The windowed means and (sample) covariances SSIM needs, for any data range."""
    x, ref = _as_batch(x), _as_batch(ref)
    b, c, h, w = x.shape
    if min(h, w) < WIN_SIZE:
        raise ValueError(f"SSIM needs images of at least {WIN_SIZE}x{WIN_SIZE}, got {h}x{w}")
    x, ref = x.reshape(b * c, 1, h, w), ref.expand(b, c, h, w).reshape(b * c, 1, h, w)
    stats = F.avg_pool2d(torch.cat([x, ref, x * x, ref * ref, x * ref], dim=1), WIN_SIZE, stride=1)
    ux, uy, uxx, uyy, uxy = stats.unbind(dim=1)
    cov_norm = WIN_SIZE**2 / (WIN_SIZE**2 - 1)  # sample covariance, skimage's default
    vx, vy, vxy = cov_norm * (uxx - ux * ux), cov_norm * (uyy - uy * uy), cov_norm * (uxy - ux * uy)
    return b, c, ux, uy, vx, vy, vxy


def _ssim_of(stats: tuple, data_range: float) -> torch.Tensor:
    b, c, ux, uy, vx, vy, vxy = stats
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.reshape(b, c, -1).mean(dim=(1, 2))


def ssim(x: torch.Tensor, ref: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Mean SSIM per sample, averaged over channels, equal to scikit-image's defaults."""
    return _ssim_of(_ssim_stats(x, ref), data_range)


def quality(x: torch.Tensor, ref: torch.Tensor, shave: int | None = None) -> dict[str, torch.Tensor]:
    """The three numbers logged along a run, for the clipped output ``x``; with ``shave``
    (super-resolution) also ``psnr_y``, the Y-channel PSNR with that border shaved."""
    x = x.clamp(0.0, 1.0)
    stats = _ssim_stats(x, ref)  # shared by both data ranges: the same numbers as ssim() twice
    out = {
        "psnr": psnr(x, ref),
        "ssim": _ssim_of(stats, 1.0),
        "ssim_dr2": _ssim_of(stats, 2.0),
    }
    if shave is not None:
        out["psnr_y"] = psnr_y(x, ref, shave)
    return out


def chosen_values(record: dict) -> dict:
    """The quality numbers of a logged record (a curve row, ``Result.last``, a peak) that a
    stopping rule's choice carries: the three of :func:`quality` (None where absent) and,
    where the run logged it (super-resolution), ``psnr_y``."""
    values = {k: record.get(k) for k in ("psnr", "ssim", "ssim_dr2")}
    if "psnr_y" in record:
        values["psnr_y"] = record["psnr_y"]
    return values


def psnr_skimage(x: np.ndarray, ref: np.ndarray) -> float:
    """Reference PSNR on (H, W, C) arrays through scikit-image."""
    from skimage.metrics import peak_signal_noise_ratio  # lazy: ~1 s of scipy imports

    return float(peak_signal_noise_ratio(ref, x, data_range=1.0))


def ssim_skimage(x: np.ndarray, ref: np.ndarray, data_range: float = 1.0) -> float:
    """Reference SSIM on (H, W, C) arrays through scikit-image (its defaults)."""
    from skimage.metrics import structural_similarity

    return float(structural_similarity(ref, x, channel_axis=-1, data_range=data_range))


# Y-channel PSNR of super-resolution papers (issue 14; docs/references.md "Deep Image Prior
# super-resolution": DIP's eval script, rgb2ycbcr's Y minus a 4-pixel border).
RGB_TO_Y = (65.481, 128.553, 24.966)  # MATLAB rgb2ycbcr, for R, G, B in [0, 1]


def rgb_to_y(x: torch.Tensor) -> torch.Tensor:
    """MATLAB's ``rgb2ycbcr`` luma on the 0..255 scale (scikit-image's ``rgb2ycbcr`` Y):
    Y = 16 + 65.481 R + 128.553 G + 24.966 B for (..., 3, H, W) in [0, 1]; float64."""
    x = torch.as_tensor(x).to(torch.float64)
    r, g, b = x.unbind(dim=-3)
    return 16.0 + RGB_TO_Y[0] * r + RGB_TO_Y[1] * g + RGB_TO_Y[2] * b


def psnr_y(x: torch.Tensor, ref: torch.Tensor, shave: int = 4) -> torch.Tensor:
    """Y-channel PSNR per sample for (B, 3, H, W) or (3, H, W) tensors in [0, 1].

    Y as :func:`rgb_to_y` (0..255 scale, not quantised), ``shave`` pixels dropped on each
    side (DIP's eval script: 4), then 10 log10(255^2 / MSE): data range 255. In float64 on
    the tensors' device; clip ``x`` to [0, 1] first, as ``quality`` does.
    """
    x, ref = _as_batch(x), _as_batch(ref)
    h, w = x.shape[-2:]
    if shave < 0 or 2 * shave >= min(h, w):
        raise ValueError(f"shave={shave} leaves nothing of a {h}x{w} image; use 0 <= shave < {(min(h, w) + 1) // 2}")
    crop = (..., slice(shave, h - shave), slice(shave, w - shave))
    mse = (rgb_to_y(x)[crop] - rgb_to_y(ref)[crop]).square().mean(dim=(-2, -1))
    return 10.0 * torch.log10(255.0**2 / mse)
