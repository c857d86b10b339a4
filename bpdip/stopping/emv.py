"""ES-EMV: the O(1)-memory exponential variant of ES-WMV (Wang et al., arXiv 2112.06074,
``ES_EMV.ipynb``; docs/references.md).

With x_t the output at iteration t, an exponential moving average e and variance v:

    e_0 = x_0,  v_0 = 0;  for t >= 1:  d = x_t - e_{t-1},
    e_t = clip(e_{t-1} + alpha d, 0, 1),   v_t = (1 - alpha) (v_{t-1} + alpha ||d||^2 / N),

alpha = 0.1 in the reference code. The reference uses the full squared norm ||d||^2; we
divide by the N = C*H*W elements so that the logged value reads like ES-WMV's per-pixel
variance (a constant factor: no choice changes). Rule: minimum with patience P
(``bpdip.stopping.base``) on v_t, counted only from iteration ``start`` on (100 in the
reference, scaled like P for shorter runs by conf/stop/rules.yaml).
"""

from __future__ import annotations

import torch

from bpdip.stopping.base import OnlineRule, check_integer, number


class EMV(OnlineRule):
    name = "emv"
    statistic_name = "emv"
    PARAMS = {"alpha": 0.1, "patience": 1000, "start": 100}
    SCALED = ("patience", "start")
    STATE = (*OnlineRule.STATE, "ema", "emv")

    @classmethod
    def check_params(cls, p: dict) -> None:
        check_integer("stop.emv.patience", p["patience"], 1, "iterations without a new minimum before the stop")
        check_integer("stop.emv.start", p["start"], 0, "the first iteration ES-EMV counts")
        if not number(p["alpha"]) or not 0 < p["alpha"] <= 1:
            raise ValueError(f"stop.emv.alpha must be a number with 0 < alpha <= 1 (ES-EMV's smoothing, 0.1), "
                             f"got {p['alpha']!r}")

    def __init__(self, b: int, shape: tuple, device, alpha: float, patience: int, start: int, first: int = 0, **_):
        if not 0 < alpha <= 1 or patience < 1 or start < 0:
            raise ValueError(f"stop.emv needs 0 < alpha <= 1, patience >= 1, start >= 0; got {alpha}, {patience}, {start}")
        super().__init__(b, shape, device, patience, first)
        self.alpha, self.start = float(alpha), int(start)
        self.ema = torch.zeros((b, *shape), dtype=torch.float32, device=device)
        self.emv = torch.zeros(b, dtype=torch.float64, device=device)

    def statistic(self, it, out, view):
        first = it == 0
        delta = out - self.ema
        norm = delta.double().square().mean(dim=(1, 2, 3))
        self.ema.copy_(torch.where(first, out, (self.ema + self.alpha * delta).clamp(0.0, 1.0)))
        self.emv.copy_(torch.where(first, torch.zeros_like(self.emv), (1 - self.alpha) * (self.emv + self.alpha * norm)))
        return self.emv.clone(), (it >= max(self.start, 1)).expand(self.emv.shape)
