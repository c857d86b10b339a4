"""The blur of a photograph: the *valid* part of a linear convolution (issue 19;
docs/references.md "Boundaries": Reeves, "Fast image restoration without boundary artifacts",
IEEE TIP 2005).

A camera's y of shape (h, w) sees scene pixels outside its frame: with a kh x kw kernel the
unknown image x is larger, ``in_shape = (h + kh - 1, w + kw - 1)``, and

    y = A x + e,    A = E^T H,    (A x)[i, j] = sum_{a, b} k[a, b] x[i + kh - 1 - a, j + kw - 1 - b],

``H`` the circular blur on x's grid (:class:`~bpdip.physics.blur.Blur`, PROTOCOL's OTF; see
"The FFT grid" below) and
``E^T`` the crop to y's frame, which starts at ``(top, left) = ((kh - 1) // 2, (kw - 1) // 2)``:
the OTF's roll by -(k // 2) puts output pixel n at ``sum_a k[a] x[n + k // 2 - a]``, so
n = i + top reads x[i .. i + kh - 1] only, never wrapping. That is exactly
``scipy.signal.convolve2d(x, k, mode="valid")`` for odd and even kernels
(``tests/test_valid.py``). ``frame = (top, left, h, w)`` is where y's pixels sit in x.

Adjoint: ``A^T = H^T E``: zero-pad y into x's grid at the frame, then correlate (conj(H)).

The FFT grid. Since no output pixel of the frame reads outside x, the circular blur may run
on any grid at least x's size, with x zero-padded at its far (bottom, right) edges: A, A^T
and ``A A^T`` are the same matrices (``H^T E y`` is zero outside x: a pixel there feeds no
frame pixel). ``fft_grid="fast"`` (the default) takes the smallest grid >= x whose sides are
products of 2, 3 and 5 (``scipy.fft.next_fast_len(n, real=True)``): x's own side can hold a large
prime (128 + 15 - 1 = 142 = 2 * 71), where a float64 FFT pair is 14x slower than at 144
(``scripts/bench.py --boundary``). ``fft_grid="x"`` keeps x's grid (issue 19's first
version). Only the preconditioner below depends on the grid (it is the principal block of
the inverse circulant of that grid), so the two differ in CG's iterations, not its answer.

Gram matrix: ``A A^T = E^T (H H^T) E``, the principal block of the circulant ``H H^T`` on
the frame, which is not circulant, so BP's (A A^T + eps I)^(-1) has no FFT formula; it is
solved by conjugate gradients (``Operator.gram_solve``, ``circulant = False``) with

- ``gram_apply(u) = E^T F^-1 diag(|H|^2) F E u + eps u`` (one FFT pair per product);
- ``gram_precondition(r) = E^T F^-1 diag(1 / (|H|^2 + eps)) F E r``: the principal block
  of the inverse of the circulant ``H H^T + eps I`` of the FFT grid (the FFT weight bpdip
  has for the circular model). A principal block of an SPD matrix is SPD, so PCG applies.
"""

from __future__ import annotations

import numpy as np
import torch

from bpdip.physics.blur import Blur
from bpdip.physics.cg import CG_MAX_ITER, CG_TOL
from bpdip.physics.operator import Operator


def valid_frame(kernel_shape: tuple[int, int], out_shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """(top, left, h, w) of y's frame inside x's grid for a kernel of ``kernel_shape``."""
    kh, kw = kernel_shape
    return (kh - 1) // 2, (kw - 1) // 2, int(out_shape[0]), int(out_shape[1])


def valid_in_shape(kernel_shape: tuple[int, int], out_shape: tuple[int, int]) -> tuple[int, int]:
    kh, kw = kernel_shape
    return out_shape[0] + kh - 1, out_shape[1] + kw - 1


FFT_GRIDS = ("fast", "x")


def fft_grid_shape(in_shape: tuple[int, int], fft_grid: str = "fast") -> tuple[int, int]:
    """The grid the valid blur's FFTs run on: x's own (``"x"``) or the smallest FFT-friendly
    one that holds it (``"fast"``, module docstring)."""
    if fft_grid == "x":
        return tuple(in_shape)
    if fft_grid != "fast":
        raise ValueError(f"fft_grid={fft_grid!r}: use one of {FFT_GRIDS}")
    from scipy.fft import next_fast_len

    return tuple(next_fast_len(int(n), real=True) for n in in_shape)


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
    (the maths is in the module docstring); the FFTs run on ``grid`` (``fft_grid``)."""

    circulant = False

    def __init__(self, kernel: np.ndarray, shape: tuple[int, int], device="cpu", cg_tol: float = CG_TOL,
                 cg_max_iter: int = CG_MAX_ITER, fft_grid: str = "fast"):
        kernel = np.asarray(kernel, dtype=np.float64)
        self.out_shape = (int(shape[0]), int(shape[1]))
        self.in_shape = valid_in_shape(kernel.shape, self.out_shape)
        self.frame = valid_frame(kernel.shape, self.out_shape)
        self.grid = fft_grid_shape(self.in_shape, fft_grid)
        self.blur = Blur(kernel, self.grid, device=device)
        self.kernel = self.blur.kernel
        self.cg_tol, self.cg_max_iter = float(cg_tol), int(cg_max_iter)
        # |H|^2 of the same complex64 OTF that A and A^T use, so that gram_apply is A A^T
        self._power = self.blur.gram_spectrum().double()
        self._spectra = {}  # eps -> (|H|^2, 1 / (|H|^2 + eps)), real, with a trailing axis for view_as_real
        self._buffer = None  # the FFT grid's zero frame for gram_apply/gram_precondition (border stays 0)

    def _spectrum(self, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
        if eps not in self._spectra:
            self._spectra[eps] = (self._power[..., None], (1.0 / (self._power + eps))[..., None])
        return self._spectra[eps]

    def _frame_filter(self, v: torch.Tensor, spectrum: torch.Tensor) -> torch.Tensor:
        """E^T F^-1 diag(s) F E v for a real spectrum s (the CG products, float64).

        Writes v into a reused zero buffer's frame (its border is never written), and scales
        the spectrum's real and imaginary parts in place: the same numbers as multiplying by
        the complex s + 0i, without a complex product per call.
        """
        shape = (*v.shape[:-2], *self.grid)
        if self._buffer is None or self._buffer.shape != shape or self._buffer.device != v.device:
            self._buffer = torch.zeros(shape, dtype=torch.float64, device=v.device)
        top, left, h, w = self.frame
        self._buffer[..., top : top + h, left : left + w] = v
        X = torch.fft.rfft2(self._buffer)
        torch.view_as_real(X).mul_(spectrum)
        return crop(torch.fft.irfft2(X, s=self.grid), self.frame)

    def to(self, device) -> "ValidBlur":
        self.blur.to(device)
        self._power = self._power.to(device)
        self._spectra, self._buffer = {}, None
        return self

    def pad(self, y: torch.Tensor) -> torch.Tensor:
        """E y: y on the FFT grid at the frame, zeros elsewhere."""
        top, left, h, w = self.frame
        z = y.new_zeros((*y.shape[:-2], *self.grid))
        z[..., top : top + h, left : left + w] = y
        return z

    def _to_grid(self, x: torch.Tensor) -> torch.Tensor:
        """x zero-padded at its far edges to the FFT grid (a no-op when they agree)."""
        dh, dw = self.grid[0] - self.in_shape[0], self.grid[1] - self.in_shape[1]
        return x if dh == dw == 0 else torch.nn.functional.pad(x, (0, dw, 0, dh))

    def A(self, x: torch.Tensor) -> torch.Tensor:
        return crop(self.blur.A(self._to_grid(x)), self.frame)

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return crop(self.blur.A_adjoint(self.pad(y)), (0, 0, *self.in_shape))

    def gram_spectrum(self) -> torch.Tensor:
        raise NotImplementedError("A A^T of the valid blur is not circulant; use gram_solve (conjugate gradients)")

    def gram_apply(self, u: torch.Tensor, eps: float) -> torch.Tensor:
        return self._frame_filter(u.double(), self._spectrum(eps)[0]).add_(u, alpha=eps)

    def gram_precondition(self, r: torch.Tensor, eps: float) -> torch.Tensor:
        return self._frame_filter(r.double(), self._spectrum(eps)[1])
