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
``bp_discrepancy`` the run's own fidelity <= tau E[fidelity at x]  y, A, sigma, loss
==============  ==============================================  ==================

Streams (issue 32): every online rule runs on each stream of ``stop.streams`` (the perturbed
output, the paper's, and the average that bpdip returns by default), as separate rules with
separate records: summary.json ``choices.<stream>.<rule>`` (bpdip.records). ``stop.stream``
names the stream whose rule ``stop.early`` follows. A warm-up guard (``stop.warmup``:
base.warmup_start) keeps every rule from choosing in the first iterations of a run.

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

import importlib
import math
import pkgutil
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from bpdip.curves import PREFIX
from bpdip.physics.valid import crop
from bpdip.stopping import fixed, oracle
from bpdip.stopping.base import REGISTRY, OnlineRule, check_integer, number, scaled, warmup_start
from bpdip.stopping.bp_discrepancy import FidelityWatch

# The online rules: every module of this package is imported and each rule class registers
# itself (base.REGISTRY), so a new rule is its module and conf/stop/<name>.yaml. Records and
# reports keep this order: the first four rules, then any other by name.
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
FIRST = ("wmv", "emv", "discrepancy", "bp_discrepancy")
ONLINE = {name: REGISTRY[name] for name in sorted(REGISTRY, key=lambda n: (FIRST.index(n) if n in FIRST else
                                                                          len(FIRST), n))}
POST = {"oracle": oracle, "fixed": fixed}
RULES = (*POST, *ONLINE)  # the order of records and reports
NEEDS_TRUTH = ("oracle",)
# the streams an online rule can watch at every iteration (bpdip.streams: the clean stream
# exists at logged iterations only); "perturbed" is the paper's and every older record's
WATCHABLE = ("perturbed", "average")
STAT_PREFIX = {s: PREFIX[s] for s in WATCHABLE}  # metrics.csv column of a watched statistic: the stream's prefix
WARMUP = {"fraction": 0.1, "floor": 50}


def statistic_columns() -> tuple[str, ...]:
    """Every watched statistic's metrics.csv column: each rule's on each watchable stream."""
    return tuple(f"{STAT_PREFIX[s]}{cls.statistic_name}" for s in WATCHABLE for cls in ONLINE.values())


def rule_key(stream: str, rule: str) -> str:
    """The id of ``rule`` watching ``stream``: the rule's name on the perturbed stream (as in
    every older record), ``<stream>.<rule>`` on another."""
    return rule if stream == "perturbed" else f"{stream}.{rule}"


class StopSettings:
    """``cfg.stop`` (conf/stop/): the named rule, the stream it watches for ``stop.early``,
    whether it ends training, the watched streams, the warm-up guard and every rule's
    parameters (each rule class's ``PARAMS``). Parameters in a rule's ``SCALED`` are given
    for ``reference_iterations`` and scaled by min(1, iterations / reference_iterations) for
    shorter runs (``base.scaled``)."""

    FIELDS = ("name", "early", "stream", "streams", "reference_iterations", "warmup")

    def __init__(self, name: str = "oracle", early: bool = False, stream: str = "perturbed",
                 streams=WATCHABLE, reference_iterations: int = 5000, warmup=None, **rules):
        unknown = sorted(set(rules) - set(ONLINE))
        if unknown:
            raise TypeError(f"unknown stop.* keys {unknown}; known: {sorted((*self.FIELDS, *ONLINE))}")
        self.name, self.early, self.stream, self.streams = name, early, stream, streams
        self.reference_iterations = reference_iterations
        self.warmup = dict(WARMUP if warmup is None else warmup)
        self.params = {r: {**cls.PARAMS, **dict(rules.get(r) or {})} for r, cls in ONLINE.items()}

    def __getattr__(self, rule: str) -> dict:  # settings.wmv: that rule's parameters
        params = self.__dict__.get("params")
        if params is not None and rule in params:
            return params[rule]
        raise AttributeError(rule)

    def __eq__(self, other) -> bool:
        return isinstance(other, StopSettings) and vars(self) == vars(other)

    def __repr__(self) -> str:
        return f"StopSettings({', '.join(f'{k}={v!r}' for k, v in vars(self).items())})"

    @classmethod
    def from_config(cls, cfg: Mapping | None) -> "StopSettings":
        """Checked settings: every key and value, one ValueError line saying what is allowed."""
        cfg = dict(cfg or {})
        known = (*cls.FIELDS, *ONLINE)
        unknown = sorted(set(cfg) - set(known))
        if unknown:
            raise ValueError(f"unknown stop.* keys {unknown}; known: {sorted(known)}")
        for rule, klass in ONLINE.items():  # a partial block (stop.wmv={window: 5}) keeps the other defaults
            block = cfg.get(rule, klass.PARAMS)
            if not isinstance(block, Mapping):
                raise ValueError(f"stop.{rule} must be a block of {sorted(klass.PARAMS)}, got {block!r}")
            extra = sorted(set(block) - set(klass.PARAMS))
            if extra:
                raise ValueError(f"unknown stop.{rule}.* keys {extra}; known: {sorted(klass.PARAMS)}")
        warmup = cfg.get("warmup", WARMUP)
        if not isinstance(warmup, Mapping) or set(warmup) - set(WARMUP):
            raise ValueError(f"stop.warmup must be a block of {sorted(WARMUP)}, got {warmup!r}")
        cfg["warmup"] = {**WARMUP, **dict(warmup)}
        streams = cfg.get("streams", WATCHABLE)
        if isinstance(streams, str) or not isinstance(streams, (list, tuple)) or not streams \
                or not set(streams) <= set(WATCHABLE) or len(set(streams)) < len(streams):
            raise ValueError(f"stop.streams must be a list of distinct streams among {list(WATCHABLE)} "
                             f"(those the online rules watch), got {streams!r}")
        cfg["streams"] = tuple(s for s in WATCHABLE if s in streams)
        s = cls(**cfg)
        if not isinstance(s.name, str) or s.name not in RULES:
            raise ValueError(f"stop={s.name} is not a stopping rule; choose one of {list(RULES)}")
        if not isinstance(s.early, bool):
            raise ValueError(f"stop.early must be true or false, got {s.early!r}")
        if s.early and s.name in NEEDS_TRUTH:
            raise ValueError(f"stop={s.name} needs the whole ground-truth curve and cannot stop a run early; "
                             "use stop=wmv, emv, discrepancy or bp_discrepancy with stop.early=true")
        if s.stream not in WATCHABLE:
            raise ValueError(f"stop.stream must be one of {list(WATCHABLE)} (the stream whose rule stop.early "
                             f"follows), got {s.stream!r}")
        if s.early and s.name in ONLINE and s.stream not in s.streams:
            raise ValueError(f"stop.stream={s.stream} is not among stop.streams {list(s.streams)}; add it")
        check_integer("stop.reference_iterations", s.reference_iterations, 1, "the run length the parameters are for")
        fraction, floor = s.warmup["fraction"], s.warmup["floor"]
        if not number(fraction) or not 0 <= fraction < 1:
            raise ValueError(f"stop.warmup.fraction must be a number with 0 <= fraction < 1 (the share of the run "
                             f"in which no rule chooses, 0.1), got {fraction!r}")
        check_integer("stop.warmup.floor", floor, 0, "the fewest first iterations in which no rule chooses")
        for rule, klass in ONLINE.items():
            klass.check_params(s.params[rule])
        return s

    def first(self, iterations: int) -> int:
        """The warm-up guard: the first iteration at which any rule may choose."""
        return warmup_start(iterations, float(self.warmup["fraction"]), int(self.warmup["floor"]))

    def effective(self, iterations: int) -> dict:
        """Every online rule's parameters for a run of ``iterations`` (scaled)."""
        ref = int(self.reference_iterations)
        return {rule: {k: (scaled(int(v), iterations, ref) if k in klass.SCALED else v)
                       for k, v in self.params[rule].items()} for rule, klass in ONLINE.items()}

    @property
    def early_rule(self) -> str | None:
        """The id (:func:`rule_key`) of the online rule that ends training (None: the full run)."""
        return rule_key(self.stream, self.name) if self.early and self.name in ONLINE else None


class _View:
    """Quantities of one step shared by the rules watching one stream, each computed once
    when first asked. The residuals of every stream come from the perturbed one's (r is
    linear in x: the average's residual is the average of the residuals)."""

    def __init__(self, stopping: "Stopping", stream: str, out: torch.Tensor):
        self.stopping, self.stream, self.out = stopping, stream, out  # out: all of x (the operator's input)

    def residual_mean_square(self) -> torch.Tensor:
        """||y - A x||^2 / m per sample (m = C * h * w measurements), float64."""
        watch = self.stopping.watch
        if self.stream == "perturbed":
            return self.stopping._r.double().square().mean(dim=(1, 2, 3))
        return watch.average_residual_mean_square()

    def fidelity(self) -> torch.Tensor:
        """The run's fidelity term of this stream's x, in the loss's normalisation (bp_discrepancy)."""
        return self.stopping.watch.values[self.stream]


class Stopping:
    """The online rules of one run of B samples, on each watched stream (``settings.streams``):
    ``update(out)`` once per iteration with the perturbed output; the average stream is kept
    here with the streams' recursion (bpdip.streams: a_0 = x_0, a_t = w a_(t-1) + (1 - w) x_t).

    ``rules`` are the perturbed stream's rules by name (as in every older record; the
    streams follow their candidates, bpdip.streams); ``watching[stream]`` every watched
    stream's rules. ``fidelity``: the loss's fidelity (or a list, one per stacked sample),
    for bp_discrepancy's statistic and level; ``ema``: output.ema."""

    def __init__(self, settings: StopSettings, iterations: int, op, y: torch.Tensor, sigma, device, frame=None,
                 fidelity=None, ema: float = 0.99):
        b, c = y.shape[:2]
        self.frame = frame
        shape = (c, *op.in_shape) if frame is None else (c, *frame[2:])
        params = settings.effective(iterations)
        self.settings, self.params = settings, params
        self.first = settings.first(iterations)
        self.op, self.y = op, y.float()
        self.w = float(ema)
        self.it = torch.zeros((), dtype=torch.int64, device=device)
        fids = fidelity if isinstance(fidelity, (list, tuple)) else [fidelity]
        self.watch = FidelityWatch(fids, op, self.y, float(torch.as_tensor(sigma).reshape(-1)[0]), ema, device)
        level = self.watch.level
        self.watching: dict[str, dict[str, OnlineRule]] = {
            stream: {name: klass(b, shape, device, first=self.first, sigma=sigma, level=level, **params[name])
                     for name, klass in ONLINE.items()}
            for stream in settings.streams}
        self.rules = self.watching.get("perturbed", {})
        self.average = torch.zeros((b, c, *op.in_shape), dtype=torch.float32, device=device) \
            if "average" in self.watching else None
        # boundary=valid: the whole x of each rule's candidate, per watched stream
        self.extended_by = {} if frame is None else {
            stream: {name: torch.zeros((b, c, *op.in_shape), dtype=torch.float32, device=device) for name in rules}
            for stream, rules in self.watching.items()}
        self.extended = self.extended_by.get("perturbed", {})
        self._r = None

    def rule(self, key: str) -> OnlineRule:
        """The rule of id ``key`` (:func:`rule_key`: ``wmv``, ``average.wmv``...)."""
        stream, _, name = key.rpartition(".")
        return self.watching[stream or "perturbed"][name]

    def keys(self) -> list[str]:
        return [rule_key(s, n) for s, rules in self.watching.items() for n in rules]

    @torch.no_grad()
    def update(self, out: torch.Tensor) -> None:
        out = out.detach().float()
        self._r = self.y - self.op.A(out)
        self.watch.step(self._r)
        images = {"perturbed": out}
        if self.average is not None:
            first = self.it == 0
            self.average.copy_(torch.where(first, out, self.w * self.average + (1.0 - self.w) * out))
            images["average"] = self.average
        for stream, rules in self.watching.items():
            whole = images[stream]
            view = _View(self, stream, whole)
            framed = whole if self.frame is None else crop(whole, self.frame)
            for name, rule in rules.items():
                rule.update(self.it, framed, view)
                if self.extended_by:  # best_it == it: the rule took this iteration's output as candidate
                    taken = (rule.best_it == self.it)[:, None, None, None]
                    ext = self.extended_by[stream][name]
                    ext.copy_(torch.where(taken, whole, ext))
        self._r = None
        self.it.add_(1)

    def statistics(self) -> dict[str, torch.Tensor]:
        """The watched statistics of the last iteration, (B,) each, by metrics.csv column."""
        return {f"{STAT_PREFIX[s]}{rule.statistic_name}": rule.value
                for s, rules in self.watching.items() for rule in rules.values()}

    def all_stopped(self, key: str) -> bool:
        """Whether rule ``key`` has stopped for every sample (a host sync: call it rarely)."""
        return bool(self.rule(key).stopped.all())

    def choices(self, iterations: int) -> dict[str, list[dict]]:
        """The perturbed stream's rules' choices, by rule name."""
        return {name: rule.choice(iterations) for name, rule in self.rules.items()}

    def watched_choices(self, iterations: int) -> dict[str, dict[str, list[dict]]]:
        """Every watched stream's rules' choices: {stream: {rule: per sample}}."""
        return {s: {n: r.choice(iterations) for n, r in rules.items()} for s, rules in self.watching.items()}

    def _parts(self) -> dict:
        parts = {rule_key(s, n): r for s, rules in self.watching.items() for n, r in rules.items()}
        parts["watch"] = self.watch
        return parts

    def state_dict(self) -> dict:
        state = {"it": self.it.cpu(), **{k: p.state_dict() for k, p in self._parts().items()}}
        if self.average is not None:
            state["average"] = self.average.cpu()
        if self.extended_by:
            state["extended"] = {rule_key(s, n): t.cpu() for s, d in self.extended_by.items() for n, t in d.items()}
        return state

    def check_state(self, state) -> None:
        """Raise ValueError unless ``state`` is a state of these rules for this run."""
        want = {"it", *self._parts(), *(["average"] if self.average is not None else []),
                *(["extended"] if self.extended_by else [])}
        if not isinstance(state, dict) or set(state) != want:
            raise ValueError("the stopping rules' state does not fit this run")
        mine = {rule_key(s, n): t for s, d in self.extended_by.items() for n, t in d.items()}
        ext = state.get("extended", {})
        if mine and not (isinstance(ext, dict) and set(ext) == set(mine) and all(
                isinstance(ext[n], torch.Tensor) and ext[n].shape == t.shape for n, t in mine.items())):
            raise ValueError("the stopping rules' extended candidates do not fit this run")
        it = state["it"]
        if not isinstance(it, torch.Tensor) or it.shape != () or it.dtype != torch.int64:
            raise ValueError("the stopping rules' iteration counter does not fit this run")
        if self.average is not None and (not isinstance(state["average"], torch.Tensor)
                                         or state["average"].shape != self.average.shape):
            raise ValueError("the stopping rules' average does not fit this run")
        for key, part in self._parts().items():
            part.check_state(state[key])

    def load_state_dict(self, state: dict) -> None:
        self.check_state(state)  # all checked before any is changed
        for key, part in self._parts().items():
            part.load_state_dict(state[key])
        for s, d in self.extended_by.items():
            for n, t in d.items():
                t.copy_(state["extended"][rule_key(s, n)])
        if self.average is not None:
            self.average.copy_(state["average"])
        self.it.copy_(state["it"])


__all__ = ["NEEDS_TRUTH", "ONLINE", "POST", "RULES", "WATCHABLE", "OnlineRule", "StopSettings", "Stopping", "rule_key",
           "scaled", "statistic_columns"]
