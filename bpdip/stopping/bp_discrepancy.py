"""A BP-native discrepancy principle: stop when the run's own fidelity term reaches its
expected value at the true image (issue 32; REFERENCES.md "A BP-weighted discrepancy").

With y = A x + n, n white with variance sigma^2 per entry, the residual at the truth is n, so

    E[n^T (A A^T + eps I)^(-1) n] = sigma^2 tr((A A^T + eps I)^(-1)).

BP's fidelity is this quadratic form in the loss's normalisation (bpdip.losses, PROTOCOL
"Losses"): F(x) = (h*w/2) / N * r^T (A A^T + eps I)^(-1) r with r = y - A x, N = C*h*w,
so at the truth

    E[F] = sigma^2 * T / 2,    T = tr((A A^T + eps I)^(-1)) per channel (the same A per channel).

LS's fidelity (h*w/2) / N * ||r||^2 has E[F] = sigma^2 * h * w / 2 (the classical level,
eps -> infinity up to scale). The rule fires at the first iteration t >= the warm-up guard
with F(x_t) <= tau * E[F] and returns x_t; if it never fires the choice is the final image.
The logged statistic is F itself (metrics.csv column ``fidelity``).

The trace T (:func:`trace_inverse_gram`):

- circulant A A^T (circular blur, SR): exact, sum over the h*w frequencies of 1/(g + eps),
  with g the spectrum of A A^T (|H|^2 for a blur);
- any other operator (the valid blur): Hutchinson's estimator, the mean over random +-1
  vectors v of v^T (A A^T + eps I)^(-1) v, each solve by the operator's conjugate gradients
  (``op.gram_solve``), with a fixed seed.

The statistic costs nothing per step on the perturbed stream: for BP solved by CG, the
loss's own solution u = (A A^T + eps I)^(-1) r of this step (``BP.u``); for BP by FFT one
FFT filter; for LS u = r. On the average stream a = sum_k w_k x_k (weights summing to 1, the
exponential average of bpdip.streams), r(a) = sum_k w_k r(x_k) and, by linearity,
(A A^T + eps I)^(-1) r(a) = sum_k w_k u_k: both are exponential averages of the per-step r
and u with the stream's weight, so the average's fidelity needs no solve either.
"""

from __future__ import annotations

import math

import torch

from bpdip.stopping.discrepancy import FirstCrossing

HUTCHINSON_PROBES = 16
HUTCHINSON_SEED = 0


def trace_inverse_gram(op, eps: float, channels: int = 1, probes: int = HUTCHINSON_PROBES,
                       seed: int = HUTCHINSON_SEED) -> float:
    """tr((A A^T + eps I)^(-1)) per channel on the measurement grid (module docstring)."""
    h, w = op.out_shape
    if op.circulant:
        power = op.gram_spectrum().to(torch.float64).cpu() + eps
        if bool((power <= 0).any()):
            raise ValueError("tr((A A^T + eps I)^(-1)) is infinite: A A^T is singular; use eps > 0")
        # a circulant M's trace is N M[0, 0], and M[0, 0] = mean over the full spectrum of
        # 1/(g + eps): irfft2 of the half-spectrum gives it at (0, 0), Hermitian parts included
        return float(h * w * torch.fft.irfft2(1.0 / power, s=(h, w))[0, 0])
    gen = torch.Generator().manual_seed(seed)
    v = (torch.randint(0, 2, (probes, channels, h, w), generator=gen, dtype=torch.float64) * 2 - 1)
    device = getattr(getattr(op, "kernel", None), "device", torch.device("cpu"))
    v = v.to(device)
    u = op.gram_solve(v.float(), eps)
    return float((u.double() * v).sum() / (probes * channels))


def expected_fidelity(fidelity, op, sigma: float, channels: int) -> float:
    """E[F] at the true image, in the loss's normalisation; NaN for a fidelity that is
    neither LS nor BP (the rule then never fires)."""
    from bpdip.losses import BP, LS

    h, w = op.out_shape
    if isinstance(fidelity, BP):
        eps = fidelity.eps1 * sigma**2 + fidelity.eps2
        return sigma**2 * trace_inverse_gram(op, eps, channels) / 2.0
    if isinstance(fidelity, LS):
        return sigma**2 * h * w / 2.0
    return math.nan


class FidelityWatch:
    """The run's fidelity F on the perturbed and the average stream at every step, from the
    loss's own BP solve (module docstring). ``fidelities``: the loss's fidelity, or one per
    stacked sample; ``ema``: the average stream's weight (output.ema)."""

    STATE = ("ema_r", "ema_u", "count")

    def __init__(self, fidelities, op, y: torch.Tensor, sigma: float, ema: float, device):
        from bpdip.losses import BP, LS

        self.fids = [f for f in (fidelities or []) if f is not None]
        first = self.fids[0] if self.fids else None
        self.kind = "bp" if isinstance(first, BP) else "ls" if isinstance(first, LS) else None
        self.solved = self.kind == "bp" and bool(first.solved)
        self.op, self.w = op, float(ema)
        b, c = y.shape[:2]
        self.eps = first.eps1 * sigma**2 + first.eps2 if self.kind == "bp" else None
        self.filt = None  # FFT BP: 1 / (g + eps) once, so that a step has no host synchronisation
        if self.kind == "bp" and not self.solved:
            self.filt = 1.0 / (op.gram_spectrum().to(torch.float64) + self.eps)
        self.scale = op.out_shape[0] * op.out_shape[1] / 2.0
        self.n = c * op.out_shape[0] * op.out_shape[1]
        level = expected_fidelity(first, op, float(sigma), c) if self.kind is not None else math.nan
        self.level = torch.full((b,), level, dtype=torch.float64, device=device)
        self.ema_r = torch.zeros((b, c, *op.out_shape), dtype=torch.float64, device=device)
        self.ema_u = torch.zeros_like(self.ema_r)
        self.count = torch.zeros((), dtype=torch.int64, device=device)
        self.values: dict[str, torch.Tensor] = {}

    def step(self, r: torch.Tensor) -> None:
        """This step's residual r = y - A x_t of the perturbed output: F on both streams."""
        r = r.double()
        first = self.count == 0
        self.ema_r.copy_(torch.where(first, r, self.w * self.ema_r + (1.0 - self.w) * r))
        self.count.add_(1)
        if self.kind is None:
            nan = torch.full(r.shape[:1], math.nan, dtype=torch.float64, device=r.device)
            self.values = {"perturbed": nan, "average": nan}
            return
        if self.kind == "ls":
            u = r
        elif self.solved:  # the loss solved it in this very step (BP.u)
            u = torch.cat([f.u for f in self.fids]).double()
        else:  # (A A^T + eps I)^(-1) r by its FFT filter, as op.gram_solve
            u = self.op.apply_filter(r, self.filt)
        self.ema_u.copy_(torch.where(first, u, self.w * self.ema_u + (1.0 - self.w) * u))
        k = self.scale / self.n
        self.values = {"perturbed": k * (u * r).sum(dim=(1, 2, 3)),
                       "average": k * (self.ema_u * self.ema_r).sum(dim=(1, 2, 3))}
        to_ls = getattr(self.fids[0], "to_ls", None)
        if to_ls is not None:  # BP's weight on its way to LS's: the same blend of the two forms
            d, c = self.fids[0].delta.double(), self.fids[0].c
            self.values["perturbed"] = (1 - d) * self.values["perturbed"] + d * c * k * r.square().sum(dim=(1, 2, 3))
            self.values["average"] = (1 - d) * self.values["average"] + \
                d * c * k * self.ema_r.square().sum(dim=(1, 2, 3))

    def average_residual_mean_square(self) -> torch.Tensor:
        """||y - A a||^2 / m of the average a (r is linear in x: the average of the residuals)."""
        return self.ema_r.square().mean(dim=(1, 2, 3))

    def state_dict(self) -> dict:
        return {k: getattr(self, k).detach().cpu() for k in self.STATE}

    def check_state(self, state) -> None:
        if not isinstance(state, dict) or any(
                not isinstance(state.get(k), torch.Tensor) or state[k].shape != getattr(self, k).shape
                or state[k].dtype != getattr(self, k).dtype for k in self.STATE):
            raise ValueError("the stopping rules' fidelity state does not fit this run")

    def load_state_dict(self, state: dict) -> None:
        self.check_state(state)
        for k in self.STATE:
            getattr(self, k).copy_(state[k])


class BPDiscrepancy(FirstCrossing):
    """Stop at the first F(x_t) <= tau * E[F] (module docstring)."""

    name = "bp_discrepancy"
    statistic_name = "fidelity"

    def __init__(self, b: int, shape: tuple, device, tau: float, first: int = 0, level=None, **_):
        super().__init__(b, shape, device, first=first)
        level = torch.as_tensor(math.nan if level is None else level, dtype=torch.float64, device=device)
        self.threshold = float(tau) * level.expand(b)  # NaN: never fires

    def statistic(self, it, out, view):
        value = view.fidelity()
        return value, torch.isfinite(value)
