"""Preconditioned conjugate gradients for ``(A A^T + eps I) u = r``, batched and matrix-free
(issue 19; docs/references.md "Boundaries": Reeves 2005 solves the valid-blur system this way).

The system is block diagonal over the batch and the channels: every (sample, channel)
image is its own symmetric positive definite system with the same matrix, so the CG
scalars (alpha, beta, the residual norms) are kept per (sample, channel) and a converged
block stops moving (its step is masked to 0) while the others go on. Textbook PCG
(Saad, "Iterative Methods for Sparse Linear Systems", Alg. 9.1):

    res = r - M u0,  z = P res,  p = z
    repeat:  alpha = <res, z> / <p, M p>;  u += alpha p;  res -= alpha M p
             z = P res;  beta = <res_new, z_new> / <res, z>;  p = z + beta p

stopped when ||res|| <= tol ||r|| per block, or after ``max_iter`` iterations. The
convergence test reads the device every ``check_every`` iterations (the only host
synchronisation): every 4 on a GPU, every iteration on the CPU, where reading costs
nothing. A block stops moving the iteration it converges either way, so the answer does not
depend on ``check_every``; only the masked iterations run before the loop notices do.
Everything runs in float64: the BP value and gradient must be exact to the tolerance, and
float32's recursive residual stalls near 1e-6.

``CG_TOL`` and ``CG_MAX_ITER`` are the defaults everywhere a solve is set up (``Operator``,
``ValidBlur``, ``BoundarySettings``, the benchmark); ``conf/boundary/*.yaml`` repeats them
for Hydra (a test keeps the two equal). 1e-4 makes BP's value exact to ~1e-5 and its
gradient to ~3e-4 relative (``results/bench/cpu-boundary-accuracy.json``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import torch

log = logging.getLogger("bpdip")

CG_TOL = 1e-4  # relative residual ||res|| / ||r|| per block (boundary.cg_tol)
CG_MAX_ITER = 100  # per solve (boundary.cg_max_iter)


class CGStats:
    """What the solves of one loss did: iterations used per solve (per sample: the most over
    its channels) and the relative residual ``||res|| / ||r||`` reached (per sample, over
    its channels). Warns once, with the residual reached, when a solve misses ``tol``."""

    def __init__(self):
        self.calls = 0
        self.iterations_total = 0.0  # summed over solves and samples, read at the end
        self._its_sum = self._its_max = self._res_max = None  # device tensors: no sync per solve
        self.warned = False

    def add(self, iterations: torch.Tensor, residual: torch.Tensor, converged: bool, tol: float) -> None:
        its, res = iterations.double(), residual.double()
        self.calls += 1
        if self._its_sum is None:
            self._its_sum, self._its_max, self._res_max = its.clone(), its.clone(), res.clone()
        else:
            self._its_sum += its
            torch.maximum(self._its_max, its, out=self._its_max)
            torch.maximum(self._res_max, res, out=self._res_max)
        if not converged and not self.warned:
            self.warned = True
            log.warning("conjugate gradients for BP's (A A^T + eps I)^-1 stopped at the iteration limit with relative "
                        "residual %.3g > boundary.cg_tol=%g; training goes on (raise boundary.cg_max_iter to solve "
                        "exactly)", float(residual.max()), tol)

    # checkpoints (bpdip.loop): a resumed run's record covers every solve of the run (issue 29)
    _TENSORS = ("_its_sum", "_its_max", "_res_max")

    def state_dict(self) -> dict:
        return {"calls": self.calls, "iterations_total": float(self.iterations_total), "warned": bool(self.warned),
                **{k.lstrip("_"): (None if getattr(self, k) is None else getattr(self, k).detach().cpu())
                   for k in self._TENSORS}}

    def check_state(self, state, samples: int) -> None:
        """Raise ValueError unless ``state`` is a :meth:`state_dict` for ``samples`` samples."""
        keys = {"calls", "iterations_total", "warned", *(k.lstrip("_") for k in self._TENSORS)}
        if not isinstance(state, dict) or set(state) != keys:
            raise ValueError("the conjugate-gradient statistics do not fit this run")
        calls = state["calls"]
        if isinstance(calls, bool) or not isinstance(calls, int) or calls < 0 \
                or not isinstance(state["warned"], bool) or not isinstance(state["iterations_total"], float):
            raise ValueError("the conjugate-gradient statistics do not fit this run")
        for k in self._TENSORS:
            t = state[k.lstrip("_")]
            if (t is None) != (calls == 0) or t is not None and not (
                    isinstance(t, torch.Tensor) and t.dtype == torch.float64 and tuple(t.shape) == (samples,)):
                raise ValueError(f"the conjugate-gradient statistic {k.lstrip('_')!r} does not fit this run")

    def load_state_dict(self, state: dict, device) -> None:
        self.calls, self.iterations_total, self.warned = state["calls"], state["iterations_total"], state["warned"]
        for k in self._TENSORS:
            t = state[k.lstrip("_")]
            setattr(self, k, None if t is None else t.to(device).clone())

    def summary(self) -> dict | None:
        """Per sample: mean and max iterations per solve, the largest residual reached."""
        if self._its_sum is None:
            return None
        return {"solves": self.calls, "iterations_mean": (self._its_sum / self.calls).tolist(),
                "iterations_max": self._its_max.tolist(), "residual_max": self._res_max.tolist()}


def pcg(apply: Callable, precondition: Callable, b: torch.Tensor, x0: torch.Tensor | None = None,
        tol: float = CG_TOL, max_iter: int = CG_MAX_ITER, check_every: int | None = None):
    """Solve ``apply(u) = b`` for a (B, C, h, w) ``b``; ``apply`` and ``precondition`` are
    SPD maps on such tensors. Returns (u, iterations (B,), relative residual (B,), converged).

    ``x0`` warm-starts the solve. A block with ``b = 0`` is solved by ``u = 0``.
    """
    b = b.double()
    dims = (-2, -1)
    if check_every is None:
        check_every = 1 if b.device.type == "cpu" else 4

    def dot(s, t):
        return (s * t).sum(dims, keepdim=True)

    if x0 is None or x0.shape != b.shape:
        u, res = torch.zeros_like(b), b.clone()
    else:
        u = x0.double().clone()
        res = b - apply(u)
    thresh = tol**2 * dot(b, b)
    active = dot(res, res) > thresh
    z = precondition(res)
    p = z.clone()
    rz = dot(res, z)
    iterations = torch.zeros(b.shape[0], dtype=torch.int64, device=b.device)
    done = False
    for k in range(max_iter):
        if k % check_every == 0 and not bool(active.any()):
            done = True
            break
        Mp = apply(p)
        alpha = torch.where(active, rz / dot(p, Mp), torch.zeros_like(rz))
        u.add_(alpha * p)
        res.sub_(alpha * Mp)
        z = precondition(res)
        rz_new = dot(res, z)
        beta = torch.where(active, rz_new / rz, torch.zeros_like(rz))
        p = z + beta * p
        rz = torch.where(active, rz_new, rz)
        iterations += active.flatten(1).any(1)
        active = active & (dot(res, res) > thresh)
    if not done:
        done = not bool(active.any())
    bn = b.square().sum((1, 2, 3))
    rel = torch.where(bn > 0, (res.square().sum((1, 2, 3)) / bn.clamp_min(math.ulp(0.0))).sqrt(),
                      torch.zeros_like(bn))
    return u, iterations, rel, done
