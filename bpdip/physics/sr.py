"""Super-resolution: a circular blur on the HR grid, then decimation by s (issue 14).

An HR image ``x`` of shape (B, C, H, W) (``in_shape = (H, W)``, both multiples of s) is
measured on the LR grid ``out_shape = (h, w) = (H / s, W / s)`` as

    y = A x + e,    A = S H,

``H`` the circular convolution of :mod:`bpdip.physics.blur` (PROTOCOL "Degradation": OTF =
kernel zero-padded, rolled by -(k // 2), unnormalised FFT) and ``S`` the decimation

    (S z)[i, j] = z[s i + p, s j + p],    p = (s - 1) // 2   (the phase).

Phase: the LR pixel i sits at HR coordinate ``s i + (s - 1) / 2``, where MATLAB's imresize
and PIL's resize put it (docs/references.md: the BP authors use imresize's bicubic, DIP uses
PIL). ``(H z)[n]`` is centred at ``n`` for an odd-sized symmetric kernel and at ``n + 1/2``
for an even-sized one (its centre lies at offset -1/2 after the roll). The SR kernels of
:mod:`bpdip.physics.kernels` are odd-sized for odd s and even-sized for even s, so
``p = (s - 1) // 2`` centres them exactly: ``p = (s - 1) / 2`` for odd s, ``s / 2 - 1``
for even s. (An odd kernel with even s, e.g. the gaussian at x4, is then centred half a
pixel before imresize's centre; no integer phase can do better.)
``tests/test_sr.py`` checks this against imresize-style weights and PIL.

Adjoint: ``A^T = H^T S^T``, zero-filling upsampling (``y[i, j]`` back to
``(s i + p, s j + p)``, zeros elsewhere) then correlation (``conj(H)`` in Fourier).

Gram matrix (issue 14; docs/references.md "The BP term for super-resolution"):
``A A^T = S (H H^T) S^T`` has entries ``g[s (i - i')]`` with ``g = h (*) h(-.)``, so it is
circulant on the LR grid, and by the aliasing (Poisson) formula its eigenvalues are

    G(w) = (1 / s^2) * sum_{k, l = 0}^{s - 1} |H(w + 2 pi (k, l) / s)|^2

for the LR frequencies ``w``: the HR power spectrum ``|H|^2`` folded s x s times onto the
LR grid. BP's weight ``(A A^T + eps I)^(-1/2)`` is then one FFT filter on the LR grid
(``Operator.gram_inv_sqrt``), and the LS/BP/TV losses of :mod:`bpdip.losses` apply as for
a blur. With ``factor = 1`` the operator *is* the blur: every method delegates to
:class:`~bpdip.physics.blur.Blur`, so the losses are bit-identical to deblurring's.
"""

from __future__ import annotations

import numpy as np
import torch

from bpdip.physics.blur import Blur, noise_sigma, otf
from bpdip.physics.operator import Operator


def sr_phase(factor: int) -> int:
    """The decimation phase ``p = (s - 1) // 2`` (module docstring)."""
    return (factor - 1) // 2


def check_factor(factor) -> int:
    if isinstance(factor, bool) or not isinstance(factor, (int, np.integer)) or factor < 1:
        raise ValueError(f"sr.factor must be an integer >= 1, got {factor!r}")
    return int(factor)


def check_multiple(shape: tuple[int, int], factor: int) -> None:
    """One-line ValueError unless both sides of ``shape`` are multiples of ``factor``."""
    h, w = shape
    if h % factor or w % factor:
        raise ValueError(f"the {h}x{w} image is not a multiple of the SR factor {factor} on both sides; "
                         f"crop it first, e.g. bpdip.physics.sr.crop_to_multiple(img, {factor})")


def crop_to_multiple(img: np.ndarray, m: int) -> np.ndarray:
    """Centre crop an (H, W[, C]) array to ``(H - H % m, W - W % m)``.

    The crop starts at ``((H % m) // 2, (W % m) // 2)``, rounding down as
    ``bpdip.data.center_crop`` does; DIP's SR notebook crops its HR images this way to a
    multiple of 32 (docs/references.md). An image that already fits is returned unchanged.
    """
    m = check_factor(m)
    h, w = img.shape[:2]
    nh, nw = h - h % m, w - w % m
    if nh == 0 or nw == 0:
        raise ValueError(f"the {h}x{w} image is smaller than {m} on a side; nothing is left after cropping")
    top, left = (h - nh) // 2, (w - nw) // 2
    return np.ascontiguousarray(img[top : top + nh, left : left + nw])


class SuperResolution(Operator):
    """``A = S H`` for (B, C, H, W) HR images: blur by ``kernel``, keep every ``factor``-th
    pixel from the phase ``(factor - 1) // 2`` (the maths is in the module docstring).

    ``SuperResolution(kernel, hr_shape, factor=1)`` is exactly ``Blur(kernel, hr_shape)``.
    """

    def __init__(self, kernel: np.ndarray, hr_shape: tuple[int, int], factor: int = 1, device="cpu"):
        self.factor = s = check_factor(factor)
        self.in_shape = tuple(hr_shape)
        check_multiple(self.in_shape, s)
        self.out_shape = (self.in_shape[0] // s, self.in_shape[1] // s)
        self.phase = sr_phase(s)
        self.blur = Blur(kernel, self.in_shape, device=device)
        self.kernel = self.blur.kernel
        self._gram = self.blur.gram_spectrum() if s == 1 else self._alias_sum().to(device)

    def _alias_sum(self) -> torch.Tensor:
        """(1/s^2) sum_{k,l} |H(w + 2 pi (k, l)/s)|^2 from the full HR OTF, in float64: the HR
        frequency index ``k h + u`` is the alias k of the LR frequency u, so reshape
        (s h, s w) -> (s, h, s, w) and sum the alias axes; then the LR half-spectrum."""
        s, (h, w) = self.factor, self.out_shape
        power = np.abs(self.blur.H_full) ** 2
        folded = power.reshape(s, h, s, w).sum(axis=(0, 2)) / s**2
        return torch.from_numpy(folded[:, : w // 2 + 1].astype(np.float32))

    def to(self, device) -> "SuperResolution":
        self.blur.to(device)
        self._gram = self._gram.to(device)
        return self

    def decimate(self, z: torch.Tensor) -> torch.Tensor:
        """S z: every s-th pixel of the last two axes from the phase p."""
        p, s = self.phase, self.factor
        return z[..., p::s, p::s]

    def zero_fill(self, y: torch.Tensor) -> torch.Tensor:
        """S^T y: y on the HR grid at (s i + p, s j + p), zeros elsewhere."""
        z = y.new_zeros((*y.shape[:-2], *self.in_shape))
        p, s = self.phase, self.factor
        z[..., p::s, p::s] = y
        return z

    def A(self, x: torch.Tensor) -> torch.Tensor:
        if self.factor == 1:
            return self.blur.A(x)
        return self.decimate(self.blur.A(x))

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        if self.factor == 1:
            return self.blur.A_adjoint(y)
        return self.blur.A_adjoint(self.zero_fill(y))

    def gram_spectrum(self) -> torch.Tensor:
        return self._gram

    def apply_filter(self, r: torch.Tensor, filt: torch.Tensor) -> torch.Tensor:
        return self.blur.apply_filter(r, filt) if self.factor == 1 else super().apply_filter(r, filt)

    def filtered_residual(self, y: torch.Tensor, filt: torch.Tensor | None = None):
        """``x -> G (y - A x)``; for factor 1 the blur's fused form (bit-identical losses)."""
        if self.factor == 1:
            return self.blur.filtered_residual(y, filt)
        return super().filtered_residual(y, filt)


def degrade_sr(x: np.ndarray, kernel: np.ndarray, factor: int, noise_var: float, seed: int) -> np.ndarray:
    """y = S H x + e on the LR grid for an (H, W, C) HR image in [0, 1], float64 (issue 14).

    The blur, the phase and the noise are those of :class:`SuperResolution` and
    :func:`bpdip.physics.blur.degrade`: e is i.i.d. Gaussian with sigma = sqrt(var) / 255,
    drawn in (h, w, C) order from ``np.random.default_rng(seed)``; y is neither clipped
    nor quantised. ``factor = 1`` gives exactly ``degrade(x, kernel, noise_var, seed)``.
    """
    s = check_factor(factor)
    check_multiple(x.shape[:2], s)
    sigma = noise_sigma(noise_var)
    H = otf(kernel, x.shape[:2])
    blurred = np.real(np.fft.ifft2(np.fft.fft2(x, axes=(0, 1)) * H[..., None], axes=(0, 1)))
    p = sr_phase(s)
    low = blurred[p::s, p::s]
    rng = np.random.default_rng(seed)
    return low + sigma * rng.standard_normal(low.shape)
