"""The degradation as an interface: a linear operator ``A``, whose Gram matrix ``A A^T`` is
circulant on the measurement grid for the paper's operators (``circulant = True``).

Notation (as deepinv's ``LinearPhysics``): an image ``x`` of shape (B, C, H, W) on the
image grid ``in_shape = (H, W)`` is measured as

    y = A x + e,    y of shape (B, C, h, w) on the measurement grid ``out_shape = (h, w)``,

the same ``A`` for every channel. Everything bpdip's losses need from an operator:

``A(x)``, ``A_adjoint(y)``
    the operator and its adjoint (``<A x, y> = <x, A^T y>``).
``gram_spectrum()``
    ``A A^T`` is circulant on the measurement grid for the operators here (a circular blur:
    ``|H|^2``; blur then decimation: the alias sum of ``bpdip.physics.sr``), so it is
    ``F^-1 diag(g) F`` with a real, non-negative spectrum ``g``. Returned on the
    half-spectrum grid of ``rfft2``: shape (h, w // 2 + 1), float32.
``apply_filter(r, filt)``
    ``F^-1 diag(filt) F r`` on the measurement grid for a real, even half-spectrum ``filt``
    (a function of ``g``, such as the BP weight).
``gram_inv_sqrt(r, eps)``
    ``(A A^T + eps I)^(-1/2) r`` = ``apply_filter(r, (g + eps)^(-1/2))``: the back-projection
    weight of the paper's eqs. (8) and (10) applied to a measurement-space residual.
``filtered_residual(y, filt)``
    a function ``x -> G (y - A x)`` with ``G = apply_filter(., filt)`` (or ``G = I`` when
    ``filt`` is None): what every fidelity of ``bpdip.losses`` evaluates. The default
    computes ``G y`` once and ``G (A x)`` per call; an operator may fuse the two filters
    (``Blur`` does: one FFT pair per call).

``gram_solve(r, eps)``
    ``(A A^T + eps I)^(-1) r``: what BP needs when ``A A^T`` is not circulant (issue 19:
    r^T (A A^T + eps I)^(-1) r is BP's value). Circulant operators: the FFT filter
    ``1 / (g + eps)``. Others (``circulant = False``, e.g. the valid blur of
    :mod:`bpdip.physics.valid`): preconditioned conjugate gradients
    (:func:`bpdip.physics.cg.pcg`) on ``gram_apply`` with ``gram_precondition``, to
    ``cg_tol`` within ``cg_max_iter`` iterations, warm-started from ``x0``.

A new degradation subclasses :class:`Operator` and implements ``A``, ``A_adjoint`` and
``gram_spectrum`` (or sets ``circulant = False``: then BP solves by conjugate gradients
with ``A`` and ``A_adjoint`` alone); the LS, BP and TV losses then work for it unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from bpdip.physics.cg import CG_MAX_ITER, CG_TOL


class Operator:
    """Base class of bpdip's linear degradations (see the module docstring for the maths)."""

    in_shape: tuple[int, int]
    out_shape: tuple[int, int]
    circulant = True  # A A^T is F^-1 diag(gram_spectrum()) F on the measurement grid
    cg_tol, cg_max_iter = CG_TOL, CG_MAX_ITER  # gram_solve of a non-circulant operator (conf/boundary/)

    def A(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def gram_spectrum(self) -> torch.Tensor:
        """Real spectrum of ``A A^T`` on the measurement grid's half-spectrum, (h, w // 2 + 1)."""
        raise NotImplementedError

    def to(self, device) -> "Operator":
        return self

    @property
    def measurements(self) -> int:
        """Number of measurements per channel, h * w."""
        return self.out_shape[0] * self.out_shape[1]

    def apply_filter(self, r: torch.Tensor, filt: torch.Tensor) -> torch.Tensor:
        """irfft2(filt * rfft2(r)) over the last two axes, on the measurement grid.

        FFTs run in float32 (float64 if r is float64): cuFFT has no bf16 transform, and a
        loss in reduced precision would change results.
        """
        R = torch.fft.rfft2(r if r.dtype == torch.float64 else r.float())
        return torch.fft.irfft2(R * filt.to(R.dtype), s=self.out_shape)

    def gram_inv_sqrt(self, r: torch.Tensor, eps: float) -> torch.Tensor:
        """(A A^T + eps I)^(-1/2) r for a measurement-space ``r`` (paper eq. 8)."""
        power = self.gram_spectrum().to(torch.float64) + eps
        if bool((power <= 0).any()):
            raise ValueError("(A A^T + eps I)^(-1/2) is infinite: A A^T is singular; use eps > 0")
        return self.apply_filter(r, power.rsqrt().to(torch.float32))

    def gram_apply(self, u: torch.Tensor, eps: float) -> torch.Tensor:
        """(A A^T + eps I) u; an operator may fuse the two (``ValidBlur``: one FFT pair)."""
        return self.A(self.A_adjoint(u)) + eps * u

    def gram_precondition(self, r: torch.Tensor, eps: float) -> torch.Tensor:
        """An SPD approximation of (A A^T + eps I)^(-1) for conjugate gradients (default: I)."""
        return r

    def gram_solve(self, r: torch.Tensor, eps: float, x0: torch.Tensor | None = None, stats=None) -> torch.Tensor:
        """(A A^T + eps I)^(-1) r, float64 (module docstring). ``x0`` warm-starts and ``stats``
        (a :class:`bpdip.physics.cg.CGStats`) records a conjugate-gradient solve."""
        if self.circulant:
            power = self.gram_spectrum().to(torch.float64) + eps
            if bool((power <= 0).any()):
                raise ValueError("(A A^T + eps I)^(-1) is infinite: A A^T is singular; use eps > 0")
            return self.apply_filter(r.double(), 1.0 / power)
        return self.cg_solve(r, eps, x0, stats)

    def cg_solve(self, r: torch.Tensor, eps: float, x0: torch.Tensor | None = None, stats=None) -> torch.Tensor:
        """(A A^T + eps I)^(-1) r by preconditioned conjugate gradients, for any operator."""
        from bpdip.physics.cg import pcg

        u, its, rel, converged = pcg(lambda v: self.gram_apply(v, eps), lambda v: self.gram_precondition(v, eps),
                                     r, x0, self.cg_tol, self.cg_max_iter)
        if stats is not None:
            stats.add(its, rel, converged, self.cg_tol)
        return u

    def filtered_residual(self, y: torch.Tensor, filt: torch.Tensor | None = None) -> Callable:
        """``x -> G (y - A x)`` for the filter ``G`` of half-spectrum ``filt`` (None: G = I)."""
        if filt is None:
            target = y.float()
            return lambda x: target - self.A(x)
        target = self.apply_filter(y, filt)
        return lambda x: target - self.apply_filter(self.A(x), filt)
