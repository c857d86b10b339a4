"""Circular blur A x = h (*) x computed with FFTs, and the degradation y = A x + e.

PROTOCOL "Degradation": circular (periodic) convolution; the optical transfer function
(OTF) H is the kernel zero-padded to the image size, rolled by -(k // 2) on both axes, then
the unnormalised 2-D FFT, so H(0) = sum(h) = 1. Because A is circulant it is diagonal in
the Fourier basis: A = F^-1 diag(H) F and its adjoint A^T = F^-1 diag(conj H) F.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import torch

from bpdip.physics.operator import Operator


def otf(kernel: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Full complex OTF of ``kernel`` for an image of ``shape`` (PROTOCOL "Degradation")."""
    kh, kw = kernel.shape
    h, w = shape
    if kh > h or kw > w:
        raise ValueError(f"the {kh}x{kw} kernel is larger than the {h}x{w} image; use a larger image")
    padded = np.zeros(shape, dtype=np.float64)
    padded[:kh, :kw] = kernel
    padded = np.roll(padded, (-(kh // 2), -(kw // 2)), axis=(0, 1))
    return np.fft.fft2(padded)


class Blur(Operator):
    """Circular convolution with a kernel on images of one size, batched as (B, C, H, W):
    the first :class:`~bpdip.physics.operator.Operator`, with ``in_shape == out_shape``.

    ``A(x) = irfft2(H * rfft2(x))``; ``A_adjoint(x) = irfft2(conj(H) * rfft2(x))``;
    ``A A^T = F^-1 diag(|H|^2) F``, so ``gram_spectrum() = |H|^2``.
    The half-spectrum (``rfft2``) is exact for real images and halves the cost.
    """

    def __init__(self, kernel: np.ndarray, shape: tuple[int, int], device="cpu"):
        self.kernel = np.asarray(kernel, dtype=np.float64)
        self.shape = tuple(shape)
        self.in_shape = self.out_shape = self.shape
        self.H_full = otf(self.kernel, self.shape)  # float64/complex128, numpy, for reference work
        half = self.H_full[:, : self.shape[1] // 2 + 1]
        self.H = torch.from_numpy(half).to(device=device, dtype=torch.complex64)

    def to(self, device) -> "Blur":
        self.H = self.H.to(device)
        return self

    def apply_spectrum(self, x: torch.Tensor, spectrum: torch.Tensor) -> torch.Tensor:
        """irfft2(spectrum * rfft2(x)) over the last two axes.

        FFTs run in float32 (float64 if x is float64): cuFFT has no bf16 transform, and a
        loss in reduced precision would change results.
        """
        X = torch.fft.rfft2(x if x.dtype == torch.float64 else x.float())
        return torch.fft.irfft2(X * spectrum.to(X.dtype), s=self.shape)

    def A(self, x: torch.Tensor) -> torch.Tensor:
        return self.apply_spectrum(x, self.H)

    def A_adjoint(self, x: torch.Tensor) -> torch.Tensor:
        return self.apply_spectrum(x, self.H.conj())

    def gram_spectrum(self) -> torch.Tensor:
        return self.H.abs().square()

    def apply_filter(self, r: torch.Tensor, filt: torch.Tensor) -> torch.Tensor:
        return self.apply_spectrum(r, filt.to(self.H.dtype))

    def filtered_residual(self, y: torch.Tensor, filt: torch.Tensor | None = None):
        """``x -> G (y - A x)`` fused: ``G y`` once, then one FFT pair per call with ``G H``."""
        if filt is None:
            target = y.float()
            return lambda x: target - self.apply_spectrum(x, self.H)
        target, spectrum = self.apply_filter(y, filt), self.H * filt
        return lambda x: target - self.apply_spectrum(x, spectrum)


def noise_sigma(var: float) -> float:
    """PROTOCOL "Degradation": var is on the 0..255 scale; sigma = sqrt(var) / 255 on [0, 1]."""
    if var is None or not math.isfinite(var) or var < 0:
        raise ValueError(f"noise.var must be a finite number >= 0 (a variance on the 0..255 scale), got {var}")
    return math.sqrt(var) / 255.0


def derive_seed(*parts) -> int:
    """A stable 63-bit seed from any parts (run seed, image name, purpose).

    Hash-based, so an image's noise and initialisation do not depend on which images ran
    before it or in which process (PROTOCOL "Degradation": y reproducible per image).
    """
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def degrade(x: np.ndarray, kernel: np.ndarray, noise_var: float, seed: int) -> np.ndarray:
    """y = h (*) x + e (paper eq. 1) for an (H, W, C) image in [0, 1], float64.

    e is i.i.d. Gaussian with sigma = sqrt(var) / 255 per pixel and channel, drawn from a
    generator seeded with ``seed``; y is neither clipped nor quantised (PROTOCOL).
    """
    sigma = noise_sigma(noise_var)
    H = otf(kernel, x.shape[:2])
    blurred = np.real(np.fft.ifft2(np.fft.fft2(x, axes=(0, 1)) * H[..., None], axes=(0, 1)))
    rng = np.random.default_rng(seed)
    return blurred + sigma * rng.standard_normal(x.shape)
