"""ES-WMV: early stopping by the windowed moving variance of the outputs (Wang, Li, Zhuang,
Sun: "Early Stopping for Deep Image Prior", arXiv 2112.06074; docs/references.md).

With x_t the output at iteration t and a window of the last W outputs,

    VAR_t = (1 / N) * sum over elements j of  (1/W) sum_{w=t-W+1..t} (x_w[j] - m_t[j])^2,
    m_t[j] = (1/W) sum_w x_w[j],

the per-pixel population variance averaged over the N = C*H*W pixels and channels,
defined from iteration W - 1 on. Rule: minimum with patience P (``bpdip.stopping.base``):
the candidate is x_t (the newest iterate of the window) whenever VAR_t is a new minimum,
and the rule stops once P iterations pass with no new minimum. The reference code uses
W = 100, P = 1000 for 5,000 iterations; conf/stop/rules.yaml scales both for shorter runs.

On the device: a ring buffer of the last W outputs (float32, W*N values per sample; also in
checkpoints) and float64 running sums S1 = sum x_w, S2 = sum x_w^2 over the window, so that
VAR_t = mean(S2 / W - (S1 / W)^2) costs O(N) per iteration, not O(W N). The sums add and
later subtract the very same float32 values, so they carry only float64 rounding.
"""

from __future__ import annotations

import torch

from bpdip.stopping.base import OnlineRule, check_integer


class WMV(OnlineRule):
    name = "wmv"
    statistic_name = "wmv_var"
    PARAMS = {"window": 100, "patience": 1000}
    SCALED = ("window", "patience")
    STATE = (*OnlineRule.STATE, "buffer", "s1", "s2")

    @classmethod
    def check_params(cls, p: dict) -> None:
        check_integer("stop.wmv.window", p["window"], 1, "outputs in ES-WMV's window")
        check_integer("stop.wmv.patience", p["patience"], 1, "iterations without a new minimum before the stop")

    def __init__(self, b: int, shape: tuple, device, window: int, patience: int, first: int = 0, **_):
        if window < 1 or patience < 1:
            raise ValueError(f"stop.wmv.window and stop.wmv.patience must be >= 1, got {window}, {patience}")
        super().__init__(b, shape, device, patience, first)
        self.window = window
        self.buffer = torch.zeros((window, b, *shape), dtype=torch.float32, device=device)
        self.s1 = torch.zeros((b, *shape), dtype=torch.float64, device=device)
        self.s2 = torch.zeros_like(self.s1)

    def statistic(self, it, out, view):
        slot = torch.remainder(it, self.window).reshape(1)
        old = self.buffer.index_select(0, slot)[0].double()  # zeros until the window is full
        new = out.double()
        self.s1.add_(new - old)
        self.s2.add_(new * new - old * old)
        self.buffer.index_copy_(0, slot, out[None])
        mean = self.s1 / self.window
        var = (self.s2 / self.window - mean * mean).clamp_min(0).mean(dim=(1, 2, 3))
        valid = (it >= self.window - 1).expand(var.shape)
        return var, valid
