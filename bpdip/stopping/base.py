"""What every on-device stopping rule shares: a per-sample state of tensors, updated once per
iteration without a host synchronisation, and the minimum-with-patience bookkeeping.

A rule watches one statistic ``s_t`` per sample (a window variance, an exponential moving
variance, a residual...). Its state, all tensors on the training device, shape (B,) or
(B, C, H, W):

``best``       the smallest statistic so far (``inf`` before the first valid one)
``best_it``    the iteration where it was reached (-1: none yet)
``wait``       iterations since the last new minimum
``stopped``    whether the rule has stopped; ``stop_it`` the iteration it stopped at (-1: not)
``candidate``  the output at ``best_it``: the image the rule would return

Minimum with patience P (ES-WMV, Wang et al. 2021, docs/references.md): at iteration t, if the
statistic is valid and ``s_t < best``, then best = s_t, best_it = t, candidate = x_t and
wait = 0; otherwise wait += 1; the rule stops at the first t with wait >= P. Once stopped,
the state is frozen, so the choice does not depend on how long training goes on after it
(``stop.early`` only saves the iterations after the stop).

Warm-up guard (issue 32; REFERENCES.md "Early minima of the window variance"): no rule
takes a candidate or stops before iteration ``first`` = :func:`warmup_start` (a share of
the run with a floor), because a noise-fitting network's outputs can look stable in its
first iterations and a rule would stop there, far below the blurred input.

A rule declares itself: ``name``, ``statistic_name`` (its metrics.csv column), ``PARAMS``
(its ``stop.<name>.*`` parameters and defaults), ``SCALED`` (those given for
``stop.reference_iterations`` and scaled for shorter runs) and ``check_params`` (one
ValueError line per bad value); ``bpdip.stopping.StopSettings`` and the records derive from
these. A class that sets its own ``name`` registers itself (:data:`REGISTRY`), and
``bpdip.stopping`` imports every module of its package, so adding a rule is one module and
``conf/stop/<name>.yaml`` (docs/stopping.md "Adding a rule").

Everything is a tensor operation on fixed shapes, the iteration counter included, so an
update can be captured in the same CUDA graph as the training step.
"""

from __future__ import annotations

import math

import torch


# The least a window, patience or start is scaled down to (issue 29): ES-WMV's variance needs
# several outputs in its window, and ES-EMV's moving variance remembers ~1 / alpha = 10 steps,
# so fewer than 10 iterations is no statistic (a window of 1 has variance 0 and picks
# iteration 0's output). A configured value below the floor is kept as it is.
SCALED_FLOOR = 10


def scaled(value: int, iterations: int, reference: int) -> int:
    """``value`` scaled for a run shorter than the rule's reference run length:
    max(1, min(value, SCALED_FLOOR), round(value * min(1, iterations / reference)))
    (conf/stop/rules.yaml)."""
    return max(1, min(value, SCALED_FLOOR), int(round(value * min(1.0, iterations / reference))))


def warmup_start(iterations: int, fraction: float, floor: int) -> int:
    """The first iteration at which a rule may choose: max(floor, ceil(fraction * T)),
    at most T - 1 (REFERENCES.md "Early minima of the window variance")."""
    return max(0, min(int(iterations) - 1, max(int(floor), int(math.ceil(fraction * iterations)))))


def number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_integer(key: str, value, low: int, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{key} must be an integer >= {low} ({what}), got {value!r}")


# name -> online rule class, every subclass that sets its own ``name`` (a shared base such as
# discrepancy.FirstCrossing does not); bpdip.stopping.ONLINE orders them
REGISTRY: dict[str, type] = {}


class OnlineRule:
    """Base of the rules evaluated on the device at every iteration (module docstring)."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            return
        known = REGISTRY.get(cls.name)
        if known is not None and (known.__module__, known.__qualname__) != (cls.__module__, cls.__qualname__):
            raise TypeError(f"two stopping rules are named {cls.name!r}: {known.__module__}.{known.__qualname__} "
                            f"and {cls.__module__}.{cls.__qualname__}; rename one")
        REGISTRY[cls.name] = cls

    name = "rule"
    statistic_name = "statistic"  # the metrics.csv column of the watched statistic
    PARAMS: dict = {}  # stop.<name>.* and their defaults (conf/stop/rules.yaml)
    SCALED: tuple = ()  # the PARAMS given for stop.reference_iterations, scaled for shorter runs

    @classmethod
    def check_params(cls, params: dict) -> None:
        """Raise one ValueError line for a bad ``stop.<name>.*`` value."""

    def __init__(self, b: int, shape: tuple, device, patience: int | None = None, first: int = 0):
        self.patience = patience
        self.first = int(first)  # the warm-up guard: no candidate and no stop before it
        self.best = torch.full((b,), math.inf, dtype=torch.float64, device=device)
        self.best_it = torch.full((b,), -1, dtype=torch.int64, device=device)
        self.wait = torch.zeros(b, dtype=torch.int64, device=device)
        self.stopped = torch.zeros(b, dtype=torch.bool, device=device)
        self.stop_it = torch.full((b,), -1, dtype=torch.int64, device=device)
        self.candidate = torch.zeros((b, *shape), dtype=torch.float32, device=device)
        self.value = torch.full((b,), math.nan, dtype=torch.float64, device=device)  # the last statistic

    # tensors saved in checkpoints; subclasses add theirs
    STATE = ("best", "best_it", "wait", "stopped", "stop_it", "candidate", "value")

    def update(self, it: torch.Tensor, out: torch.Tensor, view) -> None:
        """One iteration: ``it`` (0-d int64 tensor), the output ``out`` (B, C, H, W) float32,
        and ``view`` (shared quantities of this step, see :class:`bpdip.stopping.Stopping`)."""
        value, valid = self.statistic(it, out, view)
        self.value.copy_(torch.where(valid, value, torch.full_like(value, math.nan)))
        self.track_minimum(it, out, value, valid)

    def statistic(self, it, out, view) -> tuple[torch.Tensor, torch.Tensor]:
        """(statistic (B,) float64, valid (B,) bool) at this iteration."""
        raise NotImplementedError

    def track_minimum(self, it, out, value, valid) -> None:
        live = valid & ~self.stopped & (it >= self.first)
        improved = live & (value < self.best)
        self.best.copy_(torch.where(improved, value, self.best))
        self.best_it.copy_(torch.where(improved, it, self.best_it))
        self.candidate.copy_(torch.where(improved[:, None, None, None], out, self.candidate))
        self.wait.copy_(torch.where(improved, torch.zeros_like(self.wait), self.wait + live.long()))
        newly = live & (self.wait >= self.patience)
        self.stop_it.copy_(torch.where(newly, it, self.stop_it))
        self.stopped.copy_(self.stopped | newly)

    def state_dict(self) -> dict:
        return {k: getattr(self, k).detach().cpu() for k in self.STATE}

    def check_state(self, state) -> None:
        """Raise ValueError unless ``state`` is a state of this rule for this run."""
        if not isinstance(state, dict):
            raise ValueError(f"stopping rule {self.name}: its state is not a mapping")
        for k in self.STATE:
            mine, theirs = getattr(self, k), state.get(k)
            if not isinstance(theirs, torch.Tensor) or theirs.shape != mine.shape or theirs.dtype != mine.dtype:
                raise ValueError(f"stopping rule {self.name}: state {k!r} does not fit this run")

    def load_state_dict(self, state: dict) -> None:
        self.check_state(state)
        for k in self.STATE:
            getattr(self, k).copy_(state[k])

    def choice(self, iterations: int) -> list[dict]:
        """Per sample: the chosen iteration, whether the rule stopped, and whether its
        candidate image is the choice (True) or the run's final image is (False)."""
        best_it, stopped, stop_it = (t.cpu().tolist() for t in (self.best_it, self.stopped, self.stop_it))
        return [{"iteration": b if b >= 0 else iterations, "stopped": s, "stop_iteration": e if s else None,
                 "candidate": b >= 0} for b, s, e in zip(best_it, stopped, stop_it)]
