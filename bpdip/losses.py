"""Losses of BP-DIP: a data-fidelity term (LS or BP) plus a weighted TV prior.

Every loss returns one value per sample of the batch (shape (B,)), so K runs stacked in
one batch keep separate objectives; the optimisation loop sums them.

Normalisation (PROTOCOL "Losses"): with R = FFT(y) - H * FFT(x), unnormalised 2-D FFT,
a fidelity is the mean over (channel, frequency, real/imaginary part) of the squared
components of G * R, where G = 1 for LS and G = W for BP. By Parseval's theorem this
equals (H * W / 2) * mean over pixels of (F^-1(G * R))^2, which is what we compute, with
half-spectrum FFTs (exact for real signals; G is real and even, so G * R stays Hermitian).
"""

from __future__ import annotations

import torch

from bpdip.physics import Blur
from bpdip.registry import resolve


class Fidelity:
    """(H*W/2) * mean |G (y - A x)|^2 for a fixed real, even spectral filter G.

    ``G y`` and ``G H`` are precomputed, so one call costs one rfft2 and one irfft2.
    """

    name = "fidelity"

    def __init__(self, blur: Blur, y: torch.Tensor, filt: torch.Tensor | None = None):
        self.blur = blur
        self.scale = blur.shape[0] * blur.shape[1] / 2.0
        self.spectrum = blur.H if filt is None else blur.H * filt
        self.target = y.float() if filt is None else blur.apply_spectrum(y, filt.to(blur.H.dtype))

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """G (y - A x), in pixel space."""
        return self.target - self.blur.apply_spectrum(x, self.spectrum)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * self.residual(x).square().mean(dim=(-3, -2, -1))


class LS(Fidelity):
    """Least squares, paper eq. (4)/(5): ||y - A x||^2, normalised as (H*W/2) * pixel MSE."""

    name = "ls"

    def __init__(self, blur: Blur, y: torch.Tensor, sigma: float = 0.0):
        super().__init__(blur, y, None)


class BP(Fidelity):
    """Back-projection, paper eq. (10): ||W (FFT(y) - H FFT(x))||^2 with

    W = 1 / sqrt(|H|^2 + eps1 * sigma^2 + eps2)   (sigma on the [0, 1] scale).

    With eps1 = eps2 = 0 this is ||(A A^T)^(-1/2) (y - A x)||^2 = ||A^+ (y - A x)||^2
    (eqs. 7-9), up to the constant normalisation 1 / (2 C) of PROTOCOL "Losses".
    Defaults eps1 = 0.01, eps2 = 1e-3 are the paper's (Sec. IV).
    """

    name = "bp"

    def __init__(self, blur: Blur, y: torch.Tensor, sigma: float, eps1: float = 0.01, eps2: float = 1e-3):
        if eps1 < 0 or eps2 < 0:
            raise ValueError(f"loss.eps1 and loss.eps2 must be >= 0, got {eps1}, {eps2}")
        self.eps1, self.eps2 = eps1, eps2
        power = blur.H.abs().square().to(torch.float64) + eps1 * sigma**2 + eps2
        if bool((power <= 0).any()):
            raise ValueError("BP weight is infinite: the kernel's OTF has zeros; set loss.eps2 > 0")
        super().__init__(blur, y, power.rsqrt().to(torch.float32))


FIDELITIES = {"ls": LS, "bp": BP}


def tv(x: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation, paper eq. (11), per sample:

    sum over channels and pixels of |x[i+1, j] - x[i, j]| + |x[i, j+1] - x[i, j]|
    (differences taken inside the image only; no wrap-around).
    """
    dv = (x[..., 1:, :] - x[..., :-1, :]).abs().sum(dim=(-3, -2, -1))
    dh = (x[..., :, 1:] - x[..., :, :-1]).abs().sum(dim=(-3, -2, -1))
    return dv + dh


class Loss:
    """Paper eq. (2) with DIP's prior: fidelity(x) + tv_weight * TV(x), per sample."""

    def __init__(self, fidelity: Fidelity, tv_weight: float = 0.0):
        if tv_weight < 0:
            raise ValueError(f"loss.tv_weight must be >= 0, got {tv_weight}")
        self.fidelity = fidelity
        self.tv_weight = float(tv_weight)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        value = self.fidelity(x)
        if self.tv_weight:
            value = value + self.tv_weight * tv(x)
        return value


def make_loss(
    fidelity: str,
    blur: Blur,
    y: torch.Tensor,
    sigma: float,
    tv_weight: float = 0.0,
    **params,
) -> Loss:
    """Build a loss from config values, e.g. ``make_loss("bp", blur, y, sigma, 1e-3, eps1=0.01)``.

    ``fidelity`` is a name of :data:`FIDELITIES` or the import path of your own class,
    called as ``cls(blur, y, sigma, **params)`` (subclass :class:`Fidelity` for the usual
    ``||G (y - A x)||^2`` form; README "Extend it")."""
    return Loss(resolve(FIDELITIES, fidelity, "loss.fidelity")(blur, y, sigma, **params), tv_weight)
