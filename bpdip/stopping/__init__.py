"""Stopping rules: when a run would have stopped on its own, and what that costs.

Every run evaluates every rule (``stop=`` only names the one that ``stop.early`` follows
and the reports highlight); each rule lives in its own module, with its maths:

==============  ==============================================  ==================
rule            stops / chooses                                  needs
==============  ==============================================  ==================
``oracle``      the peak of the logged PSNR curve (``oracle``)   ground truth
``fixed``       the last iterate (``fixed``)                     nothing
``wmv``         ES-WMV: windowed output variance (``wmv``)       outputs
``emv``         ES-EMV: exponential variant (``emv``)            outputs
``discrepancy`` Morozov: ||y - A x||^2 <= tau m sigma^2           y, A, sigma
==============  ==============================================  ==================

The online rules (wmv, emv, discrepancy) run on the training device inside the training
step (``bpdip.engine.step.TrainStep``'s ``after`` hook, so also inside a CUDA graph), with
no host synchronisation: the loop reads their state only at logged iterations. Their state
is part of the loop's checkpoints, so a resumed run picks the same iterations.

``frame`` (boundary=valid, issue 19): the network's output x is larger than y; the rules
watch y's frame of it (their statistics and candidates are on that crop), the discrepancy
residual uses all of x (y - A x), and ``extended[rule]`` keeps the whole x at each rule's
candidate iteration, for the extended restored image.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from bpdip.physics.valid import crop
from bpdip.stopping import fixed, oracle
from bpdip.stopping.base import OnlineRule, scaled
from bpdip.stopping.discrepancy import Discrepancy
from bpdip.stopping.emv import EMV
from bpdip.stopping.wmv import WMV

ONLINE = {"wmv": WMV, "emv": EMV, "discrepancy": Discrepancy}
POST = {"oracle": oracle, "fixed": fixed}
RULES = (*POST, *ONLINE)  # the order of records and reports
NEEDS_TRUTH = ("oracle",)


@dataclass
class StopSettings:
    """``cfg.stop`` (conf/stop/): the named rule, whether it ends training, every rule's
    parameters. Window, patience and start are given for ``reference_iterations`` and scaled
    by min(1, iterations / reference_iterations) for shorter runs (``base.scaled``)."""

    name: str = "oracle"
    early: bool = False
    reference_iterations: int = 5000
    wmv: dict = field(default_factory=lambda: {"window": 100, "patience": 1000})
    emv: dict = field(default_factory=lambda: {"alpha": 0.1, "patience": 1000, "start": 100})
    discrepancy: dict = field(default_factory=lambda: {"tau": 1.0})

    @classmethod
    def from_config(cls, cfg: Mapping | None) -> "StopSettings":
        """Checked settings: every key and value, one ValueError line saying what is allowed."""
        cfg = dict(cfg or {})
        unknown = sorted(set(cfg) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown stop.* keys {unknown}; known: {sorted(cls.__dataclass_fields__)}")
        defaults = cls()
        for rule in ONLINE:  # a partial block (stop.wmv={window: 5}) keeps the other defaults
            block = cfg.get(rule, getattr(defaults, rule))
            if not isinstance(block, Mapping):
                raise ValueError(f"stop.{rule} must be a block of {sorted(getattr(defaults, rule))}, got {block!r}")
            extra = sorted(set(block) - set(getattr(defaults, rule)))
            if extra:
                raise ValueError(f"unknown stop.{rule}.* keys {extra}; known: {sorted(getattr(defaults, rule))}")
            cfg[rule] = {**getattr(defaults, rule), **dict(block)}
        s = cls(**cfg)
        if not isinstance(s.name, str) or s.name not in RULES:
            raise ValueError(f"stop={s.name} is not a stopping rule; choose one of {list(RULES)}")
        if not isinstance(s.early, bool):
            raise ValueError(f"stop.early must be true or false, got {s.early!r}")
        if s.early and s.name in NEEDS_TRUTH:
            raise ValueError(f"stop={s.name} needs the whole ground-truth curve and cannot stop a run early; "
                             "use stop=wmv, emv or discrepancy with stop.early=true")
        _integer("stop.reference_iterations", s.reference_iterations, 1, "the run length the parameters are for")
        _integer("stop.wmv.window", s.wmv["window"], 1, "outputs in ES-WMV's window")
        _integer("stop.wmv.patience", s.wmv["patience"], 1, "iterations without a new minimum before the stop")
        _integer("stop.emv.patience", s.emv["patience"], 1, "iterations without a new minimum before the stop")
        _integer("stop.emv.start", s.emv["start"], 0, "the first iteration ES-EMV counts")
        alpha = s.emv["alpha"]
        if not _number(alpha) or not 0 < alpha <= 1:
            raise ValueError(f"stop.emv.alpha must be a number with 0 < alpha <= 1 (ES-EMV's smoothing, 0.1), "
                             f"got {alpha!r}")
        tau = s.discrepancy["tau"]
        if not _number(tau) or not (tau > 0 and math.isfinite(tau)):
            raise ValueError(f"stop.discrepancy.tau must be a number > 0 (the threshold in noise levels, 1.0), "
                             f"got {tau!r}")
        return s

    def effective(self, iterations: int) -> dict:
        """Every online rule's parameters for a run of ``iterations`` (scaled)."""
        ref = int(self.reference_iterations)
        return {
            "wmv": {"window": scaled(int(self.wmv["window"]), iterations, ref),
                    "patience": scaled(int(self.wmv["patience"]), iterations, ref)},
            "emv": {"alpha": float(self.emv["alpha"]), "patience": scaled(int(self.emv["patience"]), iterations, ref),
                    "start": scaled(int(self.emv["start"]), iterations, ref)},
            "discrepancy": {"tau": float(self.discrepancy["tau"])},
        }

    @property
    def early_rule(self) -> str | None:
        """The online rule that ends training (None: the full run)."""
        return self.name if self.early and self.name in ONLINE else None


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _integer(key: str, value, low: int, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{key} must be an integer >= {low} ({what}), got {value!r}")


class _View:
    """Quantities of one step shared by the rules, each computed once when first asked."""

    def __init__(self, stopping: "Stopping", out: torch.Tensor):
        self.stopping, self.out, self._rms = stopping, out, None  # out: all of x (the operator's input)

    def residual_mean_square(self) -> torch.Tensor:
        """||y - A x||^2 / m per sample (m = C * h * w measurements), float64."""
        if self._rms is None:
            r = self.stopping.y - self.stopping.op.A(self.out)
            self._rms = r.double().square().mean(dim=(1, 2, 3))
        return self._rms


class Stopping:
    """The online rules of one run of B samples: ``update(out)`` once per iteration."""

    def __init__(self, settings: StopSettings, iterations: int, op, y: torch.Tensor, sigma, device, frame=None):
        b, c = y.shape[:2]
        self.frame = frame
        shape = (c, *op.in_shape) if frame is None else (c, *frame[2:])
        params = settings.effective(iterations)
        self.settings, self.params = settings, params
        self.op, self.y = op, y.float()
        self.it = torch.zeros((), dtype=torch.int64, device=device)
        self.rules: dict[str, OnlineRule] = {
            "wmv": WMV(b, shape, device, **params["wmv"]),
            "emv": EMV(b, shape, device, **params["emv"]),
            "discrepancy": Discrepancy(b, shape, device, sigma=sigma, **params["discrepancy"]),
        }
        self.extended = {} if frame is None else {
            name: torch.zeros((b, c, *op.in_shape), dtype=torch.float32, device=device) for name in self.rules}

    @torch.no_grad()
    def update(self, out: torch.Tensor) -> None:
        out = out.detach().float()
        view = _View(self, out)
        framed = out if self.frame is None else crop(out, self.frame)
        for name, rule in self.rules.items():
            rule.update(self.it, framed, view)
            if self.extended:  # best_it == it: the rule took this iteration's output as candidate
                taken = (rule.best_it == self.it)[:, None, None, None]
                self.extended[name].copy_(torch.where(taken, out, self.extended[name]))
        self.it.add_(1)

    def statistics(self) -> dict[str, torch.Tensor]:
        """The watched statistics of the last iteration, (B,) each, by metrics.csv column."""
        return {rule.statistic_name: rule.value for rule in self.rules.values()}

    def all_stopped(self, name: str) -> bool:
        """Whether rule ``name`` has stopped for every sample (a host sync: call it rarely)."""
        return bool(self.rules[name].stopped.all())

    def choices(self, iterations: int) -> dict[str, list[dict]]:
        return {name: rule.choice(iterations) for name, rule in self.rules.items()}

    def state_dict(self) -> dict:
        state = {"it": self.it.cpu(), **{name: rule.state_dict() for name, rule in self.rules.items()}}
        if self.extended:
            state["extended"] = {name: t.cpu() for name, t in self.extended.items()}
        return state

    def check_state(self, state) -> None:
        """Raise ValueError unless ``state`` is a state of these rules for this run."""
        if not isinstance(state, dict) or set(state) != {"it", *self.rules, *(["extended"] if self.extended else [])}:
            raise ValueError("the stopping rules' state does not fit this run")
        ext = state.get("extended", {})
        if self.extended and not (isinstance(ext, dict) and set(ext) == set(self.extended) and all(
                isinstance(ext[n], torch.Tensor) and ext[n].shape == t.shape for n, t in self.extended.items())):
            raise ValueError("the stopping rules' extended candidates do not fit this run")
        it = state["it"]
        if not isinstance(it, torch.Tensor) or it.shape != () or it.dtype != torch.int64:
            raise ValueError("the stopping rules' iteration counter does not fit this run")
        for name, rule in self.rules.items():
            rule.check_state(state[name])

    def load_state_dict(self, state: dict) -> None:
        self.check_state(state)  # all checked before any is changed
        for name, rule in self.rules.items():
            rule.load_state_dict(state[name])
        for name, t in self.extended.items():
            t.copy_(state["extended"][name])
        self.it.copy_(state["it"])


__all__ = ["NEEDS_TRUTH", "ONLINE", "POST", "RULES", "OnlineRule", "StopSettings", "Stopping", "scaled"]
