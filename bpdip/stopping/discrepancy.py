"""Morozov's discrepancy principle: stop when the data residual reaches the noise level.

With m = C * h * w measurements, sigma the noise standard deviation the job knows
(``noise.var``, on the [0, 1] scale: sqrt(var) / 255) and x_t the output at iteration t,

    r_t = ||y - A x_t||^2,    stop at the first t with  r_t <= tau * m * sigma^2,

and return x_t (Morozov 1966; e.g. Engl, Hanke, Neubauer, "Regularization of Inverse
Problems", Sec. 4.3). The true image has E||y - A x||^2 = m sigma^2, so tau >= 1 stops
before the network starts to fit the noise; tau = 1 by default (conf/stop/rules.yaml).
``A`` is the job's operator (bpdip.physics.Operator), the same for any degradation. With
sigma = 0 the threshold is 0 and the rule never stops. The logged statistic is the mean
squared residual r_t / m (metrics.csv column ``residual``), comparable with tau * sigma^2.
If the threshold is never reached, the choice is the run's final image.
"""

from __future__ import annotations

import math

import torch

from bpdip.stopping.base import OnlineRule, number


def check_tau(key: str, tau) -> None:
    if not number(tau) or not (tau > 0 and math.isfinite(tau)):
        raise ValueError(f"{key} must be a number > 0 (the threshold in noise levels, 1.0), got {tau!r}")


class FirstCrossing(OnlineRule):
    """A rule that stops at the first iteration (from ``first`` on) whose valid statistic is
    at or below ``self.threshold``, and keeps that iterate: the discrepancy principle's form,
    shared by ``discrepancy`` and ``bp_discrepancy``. Subclasses set ``name``,
    ``statistic_name``, ``threshold`` and ``statistic``."""

    PARAMS = {"tau": 1.0}
    STATE = (*OnlineRule.STATE,)

    @classmethod
    def check_params(cls, p: dict) -> None:
        check_tau(f"stop.{cls.name}.tau", p["tau"])

    def track_minimum(self, it, out, value, valid) -> None:
        newly = ~self.stopped & valid & (value <= self.threshold) & (it >= self.first)
        self.best.copy_(torch.where(newly, value, self.best))
        self.best_it.copy_(torch.where(newly, it, self.best_it))
        self.stop_it.copy_(torch.where(newly, it, self.stop_it))
        self.candidate.copy_(torch.where(newly[:, None, None, None], out, self.candidate))
        self.stopped.copy_(self.stopped | newly)


class Discrepancy(FirstCrossing):
    name = "discrepancy"
    statistic_name = "residual"

    def __init__(self, b: int, shape: tuple, device, tau: float, sigma, first: int = 0, **_):
        if not (tau > 0 and math.isfinite(tau)):
            raise ValueError(f"stop.discrepancy.tau must be a positive number, got {tau}")
        super().__init__(b, shape, device, first=first)
        sigma = torch.as_tensor(sigma, dtype=torch.float64, device=device).expand(b)
        self.threshold = float(tau) * sigma.square()  # per measurement

    def statistic(self, it, out, view):
        return view.residual_mean_square(), torch.ones_like(self.stopped)
