"""The three output streams of a run (issue 20) and what the loop keeps of each.

At iteration i (0-based), with theta_i the weights before step i's update:

``perturbed``  out_i = f_theta_i(z + 0.03 n_i): the paper's output, computed by the step
               itself (PROTOCOL "Optimisation and measurement"); every older record's numbers.
``clean``      f_theta_i(z): one no-grad forward at each logged iteration, before step i
               (the same weights as out_i). BatchNorm stays in training mode (PROTOCOL
               "Network": batch statistics, as the step uses); its running statistics, which
               a training-mode forward updates, are put back, so the run's state is exactly
               that of a run without the stream (tested bit for bit).
``average``    the exponential average of DIP's code (``exp_weight = 0.99``):
               a_0 = out_0, a_i = w a_{i-1} + (1 - w) out_i, w = ``output.ema``; updated
               every step on the device, inside the training step (and its CUDA graph).

Every stream is clipped to [0, 1] only when measured or written (``bpdip.metrics.quality``).

The online stopping rules watch the perturbed stream (``bpdip.stopping``); their choice is
then evaluated on every stream:

- perturbed: the rule's own candidate, out at the rule's iteration b;
- average: a_b, copied inside the step whenever the rule takes a new candidate (exact);
- clean: f(z) exists at logged iterations only, so a rule's choice on the clean stream is
  f(z) at L(b) = the last logged iteration at or before b (b rounded down to the
  ``log_every`` grid, or the run's last iteration), and that is the iteration recorded for it. The copy is made at the
  log after the rule's new candidate (and at the end of the run), from the clean output of
  the previous log; no extra forward.

A stream's oracle is its own best logged PSNR (ground truth only): its image is kept on the
device at logged iterations. All of this state is in the loop's checkpoints.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch

# the streams' names and their records' columns live with the records' numbers (bpdip.curves)
from bpdip.curves import METRIC_KEYS, PREFIX, STREAMS, stream_peak, stream_values  # noqa: E402,F401


@dataclass(frozen=True)
class OutputSettings:
    """``cfg.output`` (conf/output/default.yaml): the stream of the restored image and the
    average's weight."""

    restore: str = "average"
    ema: float = 0.99

    def __post_init__(self):
        if self.restore not in STREAMS:
            raise ValueError(f"output.restore must be one of {', '.join(STREAMS)}, got {self.restore!r}")
        ema = self.ema
        if isinstance(ema, bool) or not isinstance(ema, (int, float)) or not (0 <= ema < 1):
            raise ValueError(f"output.ema must be a number with 0 <= ema < 1 (the average's weight, DIP's 0.99), "
                             f"got {ema!r}")

    @classmethod
    def from_config(cls, cfg: Mapping | "OutputSettings" | None) -> "OutputSettings":
        if cfg is None:
            return cls()
        if isinstance(cfg, OutputSettings):
            return cfg
        items = dict(cfg.items())
        unknown = sorted(set(items) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown output.* key(s) {unknown}; known: {sorted(cls.__dataclass_fields__)}")
        return cls(**items)


@contextlib.contextmanager
def buffers_kept(model: torch.nn.Module):
    """The model's buffers (BatchNorm running statistics and counters) as they were on entry,
    copied back in place on exit (in place: a CUDA graph holds their addresses)."""
    saved = [b.detach().clone() for b in model.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for b, s in zip(model.buffers(), saved, strict=True):
                b.copy_(s)


class Streams:
    """The device state of the clean and average streams of one run of B samples, and the
    oracle and per-rule copies of every stream (module docstring)."""

    def __init__(self, b: int, shape: tuple, device, ema: float, rules: tuple = (), truth: bool = True,
                 frame: tuple | None = None):
        # boundary=valid (issue 19): the streams live on the whole x; ``frame`` = (top, left, h,
        # w) is y's frame, on which they are measured, their oracle images kept and written
        self.frame = frame
        self.w = float(ema)
        self.rules = tuple(rules)
        img = lambda: torch.zeros((b, *shape), dtype=torch.float32, device=device)  # noqa: E731
        self.average = img()
        self.count = torch.zeros((), dtype=torch.int64, device=device)  # steps averaged
        self.last_clean = img()  # f(z) at the last logged iteration
        self.last_clean_it = torch.full((b,), -1, dtype=torch.int64, device=device)
        # per rule: the average and clean streams at the rule's candidate
        self.cand_average = {r: img() for r in self.rules}
        self.cand_clean = {r: img() for r in self.rules}
        self.cand_clean_it = {r: torch.full((b,), -1, dtype=torch.int64, device=device) for r in self.rules}
        self.seen_best = {r: torch.full((b,), -1, dtype=torch.int64, device=device) for r in self.rules}
        # per stream: the image at its best logged PSNR, that PSNR (ground truth only)
        self.truth = truth
        framed = (shape[0], *frame[2:]) if frame is not None else shape
        self.best = {s: torch.zeros((b, *framed), dtype=torch.float32, device=device) for s in STREAMS} if truth else {}
        self.best_psnr = {s: torch.full((b,), -math.inf, dtype=torch.float64, device=device)
                          for s in STREAMS} if truth else {}
        self.last_out = img()  # the perturbed stream's newest value

    # ---- every step, inside the training step ----------------------------------------
    @torch.no_grad()
    def update(self, out: torch.Tensor) -> None:
        """One step: the average and the perturbed stream's newest value (pure tensor ops)."""
        out = out.detach().float()
        first = self.count == 0
        self.average.copy_(torch.where(first, out, self.w * self.average + (1.0 - self.w) * out))
        self.last_out.copy_(out)
        self.count.add_(1)

    @torch.no_grad()
    def follow(self, stopping) -> None:
        """After the rules' update of this step: a rule that took this step's output as its
        candidate gets this step's average as its average-stream candidate."""
        now = stopping.it - 1
        for r in self.rules:
            taken = (stopping.rules[r].best_it == now)[:, None, None, None]
            self.cand_average[r].copy_(torch.where(taken, self.average, self.cand_average[r]))

    # ---- at logged iterations and at the end -------------------------------------------
    @torch.no_grad()
    def catch_up(self, stopping) -> None:
        """Rules with a candidate newer than the last check take the clean output of the last
        log (L(b), module docstring). Call before :meth:`set_clean` at each log and at the end."""
        if stopping is None:
            return
        for r in self.rules:
            best_it = stopping.rules[r].best_it
            new = (best_it != self.seen_best[r]) & (best_it >= 0)
            self.cand_clean[r].copy_(torch.where(new[:, None, None, None], self.last_clean, self.cand_clean[r]))
            self.cand_clean_it[r].copy_(torch.where(new, self.last_clean_it, self.cand_clean_it[r]))
            self.seen_best[r].copy_(best_it)

    @torch.no_grad()
    def set_clean(self, clean: torch.Tensor, it: int) -> None:
        self.last_clean.copy_(clean)
        self.last_clean_it.fill_(it)

    @torch.no_grad()
    def track_best(self, stream: str, image: torch.Tensor, psnr: torch.Tensor) -> None:
        """The stream's oracle image: kept when its logged PSNR is a new maximum (the first of
        equal maxima, as the curve's peak)."""
        better = psnr.to(self.best_psnr[stream].device) > self.best_psnr[stream]
        self.best_psnr[stream].copy_(torch.where(better, psnr, self.best_psnr[stream]))
        self.best[stream].copy_(torch.where(better[:, None, None, None], image.float(), self.best[stream]))

    def candidate(self, stream: str, rule: str, stopping) -> torch.Tensor:
        """The stream's image at the rule's choice, on y's frame (the rules' own candidates are)."""
        if stream == "perturbed":
            return stopping.rules[rule].candidate
        return self._framed((self.cand_clean if stream == "clean" else self.cand_average)[rule])

    def whole_candidate(self, stream: str, rule: str, stopping) -> torch.Tensor:
        """The same on the whole x (boundary=valid's extended image)."""
        if stream == "perturbed":
            return stopping.extended[rule] if getattr(stopping, "extended", None) else stopping.rules[rule].candidate
        return (self.cand_clean if stream == "clean" else self.cand_average)[rule]

    def _framed(self, t: torch.Tensor) -> torch.Tensor:
        from bpdip.physics.valid import crop

        return t if self.frame is None else crop(t, self.frame)

    # ---- checkpoints --------------------------------------------------------------------
    def _tensors(self) -> dict[str, torch.Tensor]:
        t = {"average": self.average, "count": self.count, "last_clean": self.last_clean,
             "last_clean_it": self.last_clean_it, "last_out": self.last_out}
        for r in self.rules:
            t.update({f"cand_average.{r}": self.cand_average[r], f"cand_clean.{r}": self.cand_clean[r],
                      f"cand_clean_it.{r}": self.cand_clean_it[r], f"seen_best.{r}": self.seen_best[r]})
        for s in self.best:
            t.update({f"best.{s}": self.best[s], f"best_psnr.{s}": self.best_psnr[s]})
        return t

    def state_dict(self) -> dict:
        return {k: v.detach().cpu() for k, v in self._tensors().items()}

    def check_state(self, state) -> None:
        """Raise ValueError unless ``state`` is a state of these streams for this run."""
        mine = self._tensors()
        if not isinstance(state, dict) or set(state) != set(mine):
            raise ValueError("the output streams' state does not fit this run")
        for k, v in mine.items():
            s = state[k]
            if not isinstance(s, torch.Tensor) or s.shape != v.shape or s.dtype != v.dtype:
                raise ValueError(f"the output streams' state {k!r} does not fit this run")

    def load_state_dict(self, state: dict) -> None:
        self.check_state(state)
        for k, v in self._tensors().items():
            v.copy_(state[k])
