"""The blur of a photograph: the *valid* part of a linear convolution (issue 19;
REFERENCES.md "Boundaries": Reeves, "Fast image restoration without boundary artifacts",
IEEE TIP 2005).

A camera's y of shape (h, w) sees scene pixels outside its frame: with a kh x kw kernel the
unknown image x is larger, ``in_shape = (h + kh - 1, w + kw - 1)``, and

    y = A x + e,    A = E^T H,    (A x)[i, j] = sum_{a, b} k[a, b] x[i + kh - 1 - a, j + kw - 1 - b],

``H`` the circular blur on x's grid (:class:`~bpdip.physics.blur.Blur`, PROTOCOL's OTF) and
``E^T`` the crop to y's frame, which starts at ``(top, left) = ((kh - 1) // 2, (kw - 1) // 2)``:
the OTF's roll by -(k // 2) puts output pixel n at ``sum_a k[a] x[n + k // 2 - a]``, so
n = i + top reads x[i .. i + kh - 1] only, never wrapping. That is exactly
``scipy.signal.convolve2d(x, k, mode="valid")`` for odd and even kernels
(``tests/test_valid.py``). ``frame = (top, left, h, w)`` is where y's pixels sit in x.

Adjoint: ``A^T = H^T E``: zero-pad y into x's grid at the frame, then correlate (conj(H)).

Gram matrix: ``A A^T = E^T (H H^T) E``, the principal block of the circulant ``H H^T`` on
the frame, which is not circulant, so BP's (A A^T + eps I)^(-1) has no FFT formula; it is
solved by conjugate gradients (``Operator.gram_solve``, ``circulant = False``) with

- ``gram_apply(u) = E^T F^-1 diag(|H|^2) F E u + eps u`` (one FFT pair per product);
- ``gram_precondition(r) = E^T F^-1 diag(1 / (|H|^2 + eps)) F E r``: the principal block
  of the inverse of the circulant ``H H^T + eps I`` of x's grid (the FFT weight bpdip has
  for the circular model). A principal block of an SPD matrix is SPD, so PCG applies.
"""

from __future__ import annotations

import numpy as np
import torch

from bpdip.physics.blur import Blur
from bpdip.physics.operator import Operator


def valid_frame(kernel_shape: tuple[int, int], out_shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """(top, left, h, w) of y's frame inside x's grid for a kernel of ``kernel_shape``."""
    kh, kw = kernel_shape
    return (kh - 1) // 2, (kw - 1) // 2, int(out_shape[0]), int(out_shape[1])


def valid_in_shape(kernel_shape: tuple[int, int], out_shape: tuple[int, int]) -> tuple[int, int]:
    kh, kw = kernel_shape
    return out_shape[0] + kh - 1, out_shape[1] + kw - 1


def crop(z, frame: tuple[int, int, int, int]):
    """z[..., top:top + h, left:left + w] of a (..., H, W) tensor (arrays (H, W, C): :func:`crop_hw`)."""
    top, left, h, w = frame
    return z[..., top : top + h, left : left + w]


def crop_hw(img: np.ndarray, frame: tuple[int, int, int, int]) -> np.ndarray:
    """The frame of an (H, W[, C]) array."""
    top, left, h, w = frame
    return np.ascontiguousarray(img[top : top + h, left : left + w])


def degrade_valid(x: np.ndarray, kernel: np.ndarray, noise_var: float, seed: int) -> np.ndarray:
    """y = valid(k * x) + e for an (H, W, C) float64 image (the observation a camera makes).

    The linear convolution is scipy's (an independent computation from :class:`ValidBlur`);
    e is i.i.d. Gaussian with sigma = sqrt(var) / 255, drawn in (h, w, C) order from
    ``np.random.default_rng(seed)``, as :func:`bpdip.physics.blur.degrade` draws it. y is
    (H - kh + 1, W - kw + 1, C), neither clipped nor quantised.
    """
    from scipy.signal import fftconvolve

    from bpdip.physics.blur import noise_sigma

    sigma = noise_sigma(noise_var)
    k = np.asarray(kernel, dtype=np.float64)
    if k.shape[0] > x.shape[0] or k.shape[1] > x.shape[1]:
        raise ValueError(f"the {k.shape[0]}x{k.shape[1]} kernel is larger than the {x.shape[0]}x{x.shape[1]} image")
    blurred = fftconvolve(x, k[..., None], mode="valid", axes=(0, 1))
    rng = np.random.default_rng(seed)
    return blurred + sigma * rng.standard_normal(blurred.shape)


class ValidBlur(Operator):
    """``A = E^T H`` for (B, C, h + kh - 1, w + kw - 1) images and a y of ``shape = (h, w)``
    (the maths is in the module docstring)."""

    circulant = False

    def __init__(self, kernel: np.ndarray, shape: tuple[int, int], device="cpu", cg_tol: float = 1e-6,
                 cg_max_iter: int = 100):
        kernel = np.asarray(kernel, dtype=np.float64)
        self.out_shape = (int(shape[0]), int(shape[1]))
        self.in_shape = valid_in_shape(kernel.shape, self.out_shape)
        self.frame = valid_frame(kernel.shape, self.out_shape)
        self.blur = Blur(kernel, self.in_shape, device=device)
        self.kernel = self.blur.kernel
        self.cg_tol, self.cg_max_iter = float(cg_tol), int(cg_max_iter)
        # |H|^2 of the same complex64 OTF that A and A^T use, so that gram_apply is A A^T
        self._power = self.blur.gram_spectrum().double()

    def to(self, device) -> "ValidBlur":
        self.blur.to(device)
        self._power = self._power.to(device)
        return self

    def pad(self, y: torch.Tensor) -> torch.Tensor:
        """E y: y on x's grid at the frame, zeros elsewhere."""
        top, left, h, w = self.frame
        z = y.new_zeros((*y.shape[:-2], *self.in_shape))
        z[..., top : top + h, left : left + w] = y
        return z

    def A(self, x: torch.Tensor) -> torch.Tensor:
        return crop(self.blur.A(x), self.frame)

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self.blur.A_adjoint(self.pad(y))

    def gram_spectrum(self) -> torch.Tensor:
        raise NotImplementedError("A A^T of the valid blur is not circulant; use gram_solve (conjugate gradients)")

    def gram_apply(self, u: torch.Tensor, eps: float) -> torch.Tensor:
        return crop(self.blur.apply_spectrum(self.pad(u), self._power), self.frame) + eps * u

    def gram_precondition(self, r: torch.Tensor, eps: float) -> torch.Tensor:
        return crop(self.blur.apply_spectrum(self.pad(r), 1.0 / (self._power + eps)), self.frame)
