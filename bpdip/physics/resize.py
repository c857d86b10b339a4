"""Resizes done by PIL, not by our operator: the SR baseline and DIP's LR images (issue 14).

``bicubic_upsample``: the "bicubic" row of an SR table, y resized to the HR size with
PIL's ``BICUBIC`` (Keys a = -0.5; the LR pixel i at HR coordinate s i + (s - 1) / 2, PIL's
half-pixel-centre convention, as imresize), as DIP's notebook makes its bicubic image
(docs/references.md "Deep Image Prior super-resolution"). Each channel goes through PIL's
32-bit float mode ("F"), so nothing is quantised to 8 bits or clipped to [0, 1] (overshoot
stays, the metrics clip); the result is float64. At the borders PIL drops the taps that
fall outside the image and renormalises (MATLAB's imresize mirrors instead); the SR
metric shaves a border.

``degrade_pil``: that LR plus the noise of :func:`bpdip.physics.sr.degrade_sr` (task=sr with
``sr.lr_source=pil``; DIP's protocol has none, noise.var = 0).

``pil_lanczos_downsample``: DIP's protocol LR, the 8-bit HR image resized with PIL's
``LANCZOS`` (DIP's ``ANTIALIAS``; PIL's Lanczos has support 3), returned as 8-bit values
/ 255 in float64.
"""

from __future__ import annotations

import numpy as np

from bpdip.physics.sr import check_factor, check_multiple


def _pil():
    from PIL import Image  # lazy, as elsewhere in bpdip.physics

    return Image


def bicubic_upsample(y: np.ndarray, factor: int) -> np.ndarray:
    """PIL bicubic upsampling of an (h, w, C) LR image to (h s, w s, C), float64, unclipped."""
    Image = _pil()
    s = check_factor(factor)
    h, w = y.shape[:2]
    channels = [
        np.asarray(Image.fromarray(np.ascontiguousarray(y[..., c], dtype=np.float32))  # mode "F"
                   .resize((w * s, h * s), Image.BICUBIC), dtype=np.float64)
        for c in range(y.shape[2])
    ]
    return np.stack(channels, axis=-1)


def pil_lanczos_downsample(x: np.ndarray, factor: int) -> np.ndarray:
    """DIP's LR for an (H, W, 3) HR image in [0, 1]: 8-bit (round(255 x)), PIL ``LANCZOS``
    resize to (H / s, W / s), back to float64 / 255. H and W must be multiples of s."""
    Image = _pil()
    s = check_factor(factor)
    check_multiple(x.shape[:2], s)
    h, w = x.shape[0] // s, x.shape[1] // s
    img = Image.fromarray(np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8))
    return np.asarray(img.resize((w, h), Image.LANCZOS), dtype=np.float64) / 255.0


def degrade_pil(x: np.ndarray, factor: int, noise_var: float, seed: int) -> np.ndarray:
    """y = PIL-Lanczos LR of x (:func:`pil_lanczos_downsample`) + e, e as in
    :func:`bpdip.physics.sr.degrade_sr` (sigma = sqrt(var) / 255, PROTOCOL "Degradation",
    drawn from ``np.random.default_rng(seed)``; nothing drawn for var = 0), unclipped."""
    from bpdip.physics.blur import noise_sigma

    sigma = noise_sigma(noise_var)
    low = pil_lanczos_downsample(x, factor)
    if sigma == 0:
        return low
    return low + sigma * np.random.default_rng(seed).standard_normal(low.shape)
