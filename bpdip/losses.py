"""Losses of BP-DIP: a data-fidelity term (LS or BP) plus a weighted TV prior.

Every loss returns one value per sample of the batch (shape (B,)), so K runs stacked in
one batch keep separate objectives; the optimisation loop sums them.

Normalisation (PROTOCOL "Losses"): with R = FFT(y) - H * FFT(x), unnormalised 2-D FFT,
a fidelity is the mean over (channel, frequency, real/imaginary part) of the squared
components of G * R, where G = 1 for LS and G = W for BP. By Parseval's theorem this
equals (H * W / 2) * mean over pixels of (F^-1(G * R))^2, which is what we compute, with
half-spectrum FFTs (exact for real signals; G is real and even, so G * R stays Hermitian).

BP for an operator whose A A^T is not circulant (``op.circulant`` False, e.g. the valid
blur; issue 19, docs/references.md "Boundaries"): the same value in its matrix form,
(h*w/2) * mean |(A A^T + eps I)^(-1/2) r|^2 = (h*w/2) / N * r^T (A A^T + eps I)^(-1) r with
r = y - A x and N = C*h*w, computed from u = (A A^T + eps I)^(-1) r (``op.gram_solve``:
conjugate gradients, warm-started from the previous step's u) by :class:`_SolvedBP`.
"""

from __future__ import annotations

import torch

from bpdip.physics import Operator
from bpdip.physics.cg import CGStats
from bpdip.registry import resolve


class Fidelity:
    """(h*w/2) * mean |G (y - A x)|^2 for a fixed real, even filter G on the measurement grid.

    ``op`` is any :class:`bpdip.physics.Operator` (``Blur``, ``SuperResolution``...); ``filt``
    is G's half-spectrum on the measurement grid (None: G = I). (h, w) is the measurement
    grid, so for deblurring the scale is PROTOCOL's H*W/2. The operator evaluates
    ``G (y - A x)`` (``op.filtered_residual``; one FFT pair per call for a blur).
    """

    name = "fidelity"

    def __init__(self, op: Operator, y: torch.Tensor, filt: torch.Tensor | None = None):
        self.op = op
        self.scale = op.out_shape[0] * op.out_shape[1] / 2.0
        self.residual = op.filtered_residual(y, filt)  # x -> G (y - A x), in pixel space

    @property
    def blur(self) -> Operator:  # the name of bpdip <= 0.1 for the operator
        return self.op

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * self.residual(x).square().mean(dim=(-3, -2, -1))


class LS(Fidelity):
    """Least squares, paper eq. (4)/(5): ||y - A x||^2, normalised as (H*W/2) * pixel MSE."""

    name = "ls"

    def __init__(self, op: Operator, y: torch.Tensor, sigma: float = 0.0):
        super().__init__(op, y, None)


class BP(Fidelity):
    """Back-projection, paper eq. (10): ||W (FFT(y) - H FFT(x))||^2 with

    W = 1 / sqrt(|H|^2 + eps1 * sigma^2 + eps2)   (sigma on the [0, 1] scale),

    for any operator: W = (g + eps1 sigma^2 + eps2)^(-1/2) with g the spectrum of A A^T
    (``op.gram_spectrum()``; |H|^2 for a blur), i.e. the fidelity is
    ||(A A^T + eps I)^(-1/2) (y - A x)||^2 with eps = eps1 sigma^2 + eps2 (eq. 8).
    With eps1 = eps2 = 0 this is ||(A A^T)^(-1/2) (y - A x)||^2 = ||A^+ (y - A x)||^2
    (eqs. 7-9), up to the constant normalisation 1 / (2 C) of PROTOCOL "Losses".
    Defaults eps1 = 0.01, eps2 = 1e-3 are the paper's (Sec. IV).

    ``to_ls = [start, end]`` (issue 32; DDPG, Garber and Tirer, CVPR 2024, REFERENCES.md "BP's
    weight and noise"): the weight moves from BP's towards LS's over the run,
    W_t = (1 - d_t) (A A^T + eps I)^(-1) + d_t c I, i.e. the fidelity is
    (1 - d_t) BP(x) + d_t c LS(x), with d_t rising linearly from 0 at the share ``start`` of the
    run to 1 at ``end`` (``at_iteration``), and c = tr((A A^T + eps I)^(-1)) / (h w), so that
    both terms have the same expectation at the truth (bpdip.stopping.bp_discrepancy). None
    (the default, the paper's): BP throughout.
    """

    name = "bp"

    def __init__(self, op: Operator, y: torch.Tensor, sigma: float, eps1: float = 0.01, eps2: float = 1e-3,
                 solver: str = "auto", to_ls=None):
        if eps1 < 0 or eps2 < 0:
            raise ValueError(f"loss.eps1 and loss.eps2 must be >= 0, got {eps1}, {eps2}")
        if to_ls is not None and not (isinstance(to_ls, (list, tuple)) and len(to_ls) == 2
                                      and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in to_ls)
                                      and 0 <= to_ls[0] < to_ls[1] <= 1):
            raise ValueError(f"loss.to_ls must be null or [start, end] with 0 <= start < end <= 1 (shares of the run "
                             f"over which BP's weight turns into LS's), got {to_ls!r}")
        self.to_ls = None if to_ls is None else (float(to_ls[0]), float(to_ls[1]))
        if self.to_ls is not None:
            from bpdip.stopping.bp_discrepancy import trace_inverse_gram

            eps = eps1 * sigma**2 + eps2
            self.delta = torch.zeros((), dtype=torch.float32, device=y.device)  # d_t, set by at_iteration
            self.ls = LS(op, y)
            self.c = trace_inverse_gram(op, eps, y.shape[1]) / (op.out_shape[0] * op.out_shape[1])
        if solver not in ("auto", "fft", "cg"):
            raise ValueError(f"loss.solver must be auto, fft or cg, got {solver!r}")
        if solver == "fft" and not op.circulant:
            raise ValueError("loss.solver=fft needs an operator whose A A^T is circulant (boundary=circular)")
        self.eps1, self.eps2 = eps1, eps2
        self.solved = solver == "cg" or not op.circulant
        if self.solved:  # no FFT weight: r^T (A A^T + eps I)^(-1) r by op.gram_solve
            self.op, self.y, self.eps = op, y.float(), eps1 * sigma**2 + eps2
            if self.eps <= 0:
                raise ValueError("BP's (A A^T + eps I)^(-1) needs eps > 0; set loss.eps2 > 0")
            self.scale = op.out_shape[0] * op.out_shape[1] / 2.0
            self.cg = CGStats()
            self.u = None  # the last solution, the next solve's warm start
            return
        power = op.gram_spectrum().to(torch.float64) + eps1 * sigma**2 + eps2
        if bool((power <= 0).any()):
            raise ValueError("BP weight is infinite: the kernel's OTF has zeros; set loss.eps2 > 0")
        super().__init__(op, y, power.rsqrt().to(torch.float32))

    def solve(self, r: torch.Tensor) -> torch.Tensor:
        """u = (A A^T + eps I)^(-1) r (float64), warm-started from the previous solve."""
        warm = self.u if self.u is not None and self.u.shape == r.shape else None
        # loss.solver=cg on a circulant operator: conjugate gradients all the same (tests)
        solve = self.op.gram_solve if not self.op.circulant else self.op.cg_solve
        self.u = solve(r, self.eps, x0=warm, stats=self.cg)
        return self.u

    def at_iteration(self, it: int, iterations: int) -> None:
        """d_t of ``to_ls`` for iteration ``it`` of ``iterations`` (the loop calls it before each step)."""
        if self.to_ls is not None:
            start, end = self.to_ls
            self.delta.fill_(min(1.0, max(0.0, (it / iterations - start) / (end - start))))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        value = super().__call__(x) if not self.solved else _SolvedBP.apply(x, self)
        if self.to_ls is None:
            return value
        return (1 - self.delta) * value + (self.delta * self.c) * self.ls(x)

    # checkpoints (bpdip.loop): the next solve reads the last u (its warm start), and the
    # record's ``cg`` covers every solve, so both go into a checkpoint (issue 29)
    def state_dict(self) -> dict:
        if not self.solved:
            return {}
        return {"u": None if self.u is None else self.u.detach().cpu(), "cg": self.cg.state_dict()}

    def check_state(self, state) -> None:
        """Raise ValueError unless ``state`` is a :meth:`state_dict` of this loss."""
        if not self.solved:
            if state != {}:
                raise ValueError("the loss state does not fit this run (BP by conjugate gradients vs by FFT)")
            return
        if not isinstance(state, dict) or set(state) != {"u", "cg"}:
            raise ValueError("the loss state does not fit this run (BP by conjugate gradients vs by FFT)")
        u = state["u"]
        if u is not None and not (isinstance(u, torch.Tensor) and u.dtype == torch.float64
                                  and u.shape == self.y.shape):
            raise ValueError(f"the BP warm start has shape {tuple(getattr(u, 'shape', ()))}, expected "
                             f"{tuple(self.y.shape)}")
        self.cg.check_state(state["cg"], self.y.shape[0])

    def load_state_dict(self, state: dict) -> None:
        self.check_state(state)
        if self.solved:
            self.u = None if state["u"] is None else state["u"].to(self.y.device).clone()
            self.cg.load_state_dict(state["cg"], self.y.device)


class _SolvedBP(torch.autograd.Function):
    """BP's value (h*w/2) / N * <u, r> per sample with u = (A A^T + eps I)^(-1) r, r = y - A x,
    and its gradient -2 (h*w/2) / N * A^T u (d/dx r^T M r = -2 A^T M r for a symmetric M):
    the solve runs without a graph, so autograd never goes through the CG iterations."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, bp: BP) -> torch.Tensor:
        r = bp.y - bp.op.A(x)
        u = bp.solve(r)
        n = r[0].numel()
        ctx.bp, ctx.n = bp, n
        ctx.save_for_backward(u)
        return (bp.scale / n * (u * r.double()).sum(dim=(-3, -2, -1))).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (u,) = ctx.saved_tensors
        bp = ctx.bp
        g = (-2.0 * bp.scale / ctx.n) * grad.double()[:, None, None, None] * u
        return bp.op.A_adjoint(g.to(grad.dtype)), None


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

    def at_iteration(self, it: int, iterations: int) -> None:
        """Tell a scheduled fidelity (BP's ``to_ls``) the iteration; others ignore it."""
        if hasattr(self.fidelity, "at_iteration"):
            self.fidelity.at_iteration(it, iterations)

    # checkpoints (bpdip.loop): the fidelity's state (BP's warm start), {} for a stateless one
    def state_dict(self) -> dict:
        return self.fidelity.state_dict() if hasattr(self.fidelity, "state_dict") else {}

    def check_state(self, state) -> None:
        if hasattr(self.fidelity, "check_state"):
            self.fidelity.check_state(state)
        elif state != {}:
            raise ValueError("the loss state does not fit this run")

    def load_state_dict(self, state: dict) -> None:
        self.check_state(state)
        if hasattr(self.fidelity, "load_state_dict"):
            self.fidelity.load_state_dict(state)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        value = self.fidelity(x)
        if self.tv_weight:
            value = value + self.tv_weight * tv(x)
        return value


def make_loss(
    fidelity: str,
    op: Operator,
    y: torch.Tensor,
    sigma: float,
    tv_weight: float = 0.0,
    **params,
) -> Loss:
    """Build a loss from config values, e.g. ``make_loss("bp", blur, y, sigma, 1e-3, eps1=0.01)``.

    ``op`` is the degradation (:class:`bpdip.physics.Operator`). ``fidelity`` is a name of
    :data:`FIDELITIES` or the import path of your own class, called as
    ``cls(op, y, sigma, **params)`` (subclass :class:`Fidelity` for the usual
    ``||G (y - A x)||^2`` form; docs/extending.md)."""
    return Loss(resolve(FIDELITIES, fidelity, "loss.fidelity")(op, y, sigma, **params), tv_weight)
