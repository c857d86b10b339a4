"""The DIP optimisation loop (paper eqs. 3 and 9; PROTOCOL "Network" and "Optimisation").

One call, ``restore(model, loss, data, spec)`` (:class:`Data`: what to restore; :class:`RunSpec`:
how), trains one network per sample of the batch: B = 1 for the plain skip net, or
B = K runs of the same image size when the model stacks K independent networks. Each
sample has its own y, ground truth, loss and record.

Per iteration i (0-based):
    out = f(z + reg_noise_std * N(0, 1))              fresh noise each step
    loss = sum over samples of loss_b(out_b);  Adam step on the network weights only.
    if i % log_every == 0 or i is the last iteration (``is_logged``): PSNR/SSIM of clip(out)
        vs x_true are logged; ``out`` is the output computed from the perturbed input at
        iteration i, i.e. before that iteration's update (PROTOCOL "Optimisation and
        measurement"). So a run of N iterations always logs N - 1, measured before the last
        step, whatever log_every (issue 29: a short run's curve ends where the run ends).
After the last step the paper's final image is f(z), with no perturbation, clipped to [0, 1]
(summary.json's ``final_*``; the state after the last step is measured there, not in the curve).

Three output streams (bpdip.streams, issue 20): ``perturbed`` (out, above), ``clean`` (f(z)
at logged iterations, same weights as out) and ``average`` (the exponential average of out,
every step, inside the step). Each is logged (``clean_psnr``, ``average_psnr``...); the
restored image is the stream ``output.restore`` at the end, or at stop.early's choice.

Seeds: ``RunSpec.seed = s`` draws z and every perturbation of the whole batch from one generator;
``[s_1, ..., s_B]`` gives sample b its own generator, so sample b of a stacked run
sees exactly the z and noise of a separate B = 1 run with ``seed=s_b`` (the engine's
K-run stacking relies on it).

``RunSpec.engine`` (``bpdip.engine.EngineSettings`` or a ``cfg.engine`` mapping) picks precision,
CUDA graphs, torch.compile...; None runs the plain eager step with torch's flags as they
are. Nothing here knows about W&B or files: callbacks receive the records.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from bpdip.engine.precision import autocast, backend_flags
from bpdip.engine.settings import EngineSettings, network_parameters
from bpdip.engine.step import TrainStep, make_optimizer
from bpdip.metrics import chosen_values, quality
from bpdip.models import seeded_model  # noqa: F401  (its home is bpdip.models; tests import it from here)
from bpdip.streams import PREFIX, STREAMS, OutputSettings, Streams, buffers_kept, stream_peak, stream_values

log = logging.getLogger("bpdip")


# engine=None: the plain eager step, no autocast, torch's backend flags left as they are
_EAGER = EngineSettings(precision="fp32", cuda_graphs=False, channels_last=False)


@dataclass
class LoopSettings:
    """Optimisation settings; the defaults are PROTOCOL's (Adam lr 0.01, noise 0.03...)."""

    iterations: int = 7000
    lr: float = 0.01
    reg_noise_std: float = 0.03
    input_depth: int = 32
    input_scale: float = 0.1  # z ~ U[0, 0.1)
    log_every: int = 100
    checkpoint_every: int = 0  # 0: no checkpoints
    progress: bool = True

    def __post_init__(self):
        if self.iterations < 1 or self.log_every < 1:
            raise ValueError("iterations and log_every must be >= 1")
        if self.lr <= 0 or self.reg_noise_std < 0:
            raise ValueError("lr must be > 0 and reg_noise_std >= 0")


@dataclass
class Result:
    """What one sample's run produced. ``curve`` holds the logged records in order."""

    name: str
    status: str = "running"  # running | complete | failed
    curve: list[dict] = field(default_factory=list)
    final: dict = field(default_factory=dict)  # psnr, ssim, ssim_dr2 of the restored image
    last: dict = field(default_factory=dict)  # the same for the last iterate (== final unless stop.early)
    image: np.ndarray | None = None  # (H, W, 3) float32 in [0, 1]: the restored image
    iterations: int = 0
    runtime_s: float = 0.0
    losses: np.ndarray | None = None  # the loss of every iteration run, float32
    error: str | None = None
    # every stopping rule's choice (bpdip.stopping): iteration, stopped, stop_iteration and,
    # with ground truth, psnr/ssim/ssim_dr2 of the image it chose
    stopping: dict = field(default_factory=dict)
    restored_from: dict | None = None  # {"rule", "iteration"} when stop.early returned a candidate
    stopped_early: bool = False  # training ended at the rule's stop, before settings.iterations
    extended: np.ndarray | None = None  # Data.frame set: all of x for the restored image (image: y's frame)
    cg: dict | None = None  # BP by conjugate gradients: its solves' iterations and residuals (the runner's)
    restored_stream: str | None = None  # output.restore: the stream of ``image`` (None: streams off)
    # issue 32: every rule's choice on each stream, the rule watching that stream ({stream: {rule:
    # {iteration, stopped, stop_iteration, psnr...}}}), and which of them the restored image is
    choices: dict = field(default_factory=dict)
    restored: dict | None = None  # {"stream", "rule", "iteration"}
    # per stream (bpdip.streams): {"final": {psnr, ...}, "stopping": {rule: {iteration, psnr, ...}}}
    streams: dict = field(default_factory=dict)
    # "<stream>.<rule>" -> (H, W, 3) float32 image in [0, 1]: every stream's oracle (ground
    # truth only) and, for the restored stream, every online rule with a candidate and fixed
    stream_images: dict = field(default_factory=dict)

    @property
    def seconds_per_iteration(self) -> float | None:
        return self.runtime_s / self.iterations if self.iterations else None

    @property
    def peak(self) -> dict | None:
        """The logged record with the highest PSNR (ground-truth early stopping)."""
        from bpdip.curves import best

        return best(self.curve, "psnr")


class Callback:
    """Hooks of the loop; subclass and override what you need."""

    def on_log(self, result: Result, record: dict) -> None:
        """After a record (iteration, psnr, ssim, ssim_dr2, loss, seconds) is appended."""

    def on_checkpoint(self, iteration: int, path: Path) -> None:
        """After the checkpoint for ``iteration`` is written."""

    def on_end(self, result: Result) -> None:
        """After a sample finished (complete or failed)."""


def is_logged(it: int, iterations: int, log_every: int) -> bool:
    """Whether iteration ``it`` (0-based) of a run of ``iterations`` is logged: every
    ``log_every``-th and the last (``bpdip.store.expected_rows`` counts them)."""
    return it % log_every == 0 or it == iterations - 1


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device=cuda asked for, but no CUDA GPU is visible; use device=auto or cpu")
    return device


def atomic_save(obj, path: Path) -> None:
    """torch.save to a temporary file, then rename: a kill never leaves half a file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


class UnfitCheckpoint(ValueError):
    """A checkpoint that cannot be resumed from (the run then starts from iteration 0)."""


def load_checkpoint(path: Path | None) -> dict | None:
    """The checkpoint at ``path`` as plain data, or None if absent.

    Loaded with ``weights_only=True``: tensors, dicts, lists, strings and numbers only, so a
    file planted in a shared results store can never run code (docs/store.md, "Trust"). Raises
    :class:`UnfitCheckpoint` when the file is unreadable or refused by the safe loader.
    """
    if path is None or not Path(path).is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, corrupt, or refused (pickled objects): start over
        raise UnfitCheckpoint(f"unreadable or refused by the safe loader: {type(exc).__name__}: "
                              f"{str(exc).splitlines()[0][:160] if str(exc) else ''}") from None
    if not isinstance(state, dict):
        raise UnfitCheckpoint(f"not a checkpoint of the training loop (a {type(state).__name__})")
    return state


def set_aside(path: Path, reason: str) -> None:
    """Move an unfit checkpoint out of the way (``<name>.rejected``) with one warning line."""
    path = Path(path)
    aside = path.with_name(path.name + ".rejected")
    try:
        os.replace(path, aside)
        where = f"moved to {aside.name}"
    except OSError:
        where = "left in place"
    log.warning("ignoring checkpoint %s (%s; %s); training from iteration 0", path, reason, where)


CHECKPOINT_KEYS = {"iteration", "elapsed", "model", "optimizer", "z", "generator", "losses", "curves", "status"}


def _loss_state(loss):
    """The loss's checkpoint state (BP's CG warm start and statistics, issue 29), or None for a
    loss without one (a plain callable: it must then be stateless for an exact resume)."""
    return loss.state_dict() if hasattr(loss, "state_dict") else None


@dataclass
class Data:
    """What one call restores: B samples of one size. ``y`` (B, 3, h, w), what the loss
    sees; ``names`` one per sample; ``x_true`` (B, 3, H, W) the ground truth the metrics use
    (None: no metrics); ``image_shape`` (H, W) the network's output and z, by default y's
    (deblurring; super-resolution measures a smaller y); ``frame`` = (top, left, h, w)
    (boundary=valid: x is larger than y) the crop of the output the metrics, the restored
    image and every stream's images are on (``x_true`` is on it too); ``shave``
    (super-resolution): also log ``psnr_y``, the Y-channel PSNR with ``shave`` border pixels
    dropped (bpdip.metrics.psnr_y); None (deblurring) logs exactly the three PROTOCOL metrics."""

    y: torch.Tensor
    names: list[str]
    x_true: torch.Tensor | None = None
    image_shape: tuple[int, int] | None = None
    frame: tuple[int, int, int, int] | None = None
    shave: int | None = None


@dataclass
class RunSpec:
    """How one call runs. ``settings`` the optimisation (:class:`LoopSettings`); ``seed`` one
    int for the batch or one per sample (module docstring); ``device``; ``engine``
    (:class:`bpdip.engine.EngineSettings` or a ``cfg.engine`` mapping; None: the plain eager
    step); ``stopping`` (a :class:`bpdip.stopping.Stopping` on ``device``, built with the
    data's frame) evaluates the online rules at every iteration; ``stop_early`` names the rule
    whose stop ends training (checked at logged iterations), whose candidate is then the
    restored image; ``output`` (:class:`bpdip.streams.OutputSettings` or a ``cfg.output``
    mapping; None: its defaults) picks the restored image's stream and the average's weight;
    ``streams=False`` runs without the clean and average streams (the benchmark's baseline);
    ``checkpoint`` the file saved every ``settings.checkpoint_every`` iterations and resumed
    from; ``callbacks`` hear of every record, checkpoint and end."""

    settings: LoopSettings = field(default_factory=LoopSettings)
    seed: int | Sequence[int] = 0
    device: str | torch.device = "auto"
    engine: EngineSettings | Mapping | None = None
    stopping: object = None
    stop_early: str | None = None
    output: OutputSettings | Mapping | None = None
    streams: bool = True
    checkpoint: str | Path | None = None
    callbacks: Sequence[Callback] = ()


class _Run:
    """The state of one call of :func:`restore`: the network and its optimiser, z and the
    random numbers, the loss and every iteration's loss value, the stopping rules, the
    streams (``sts``) and the Results. Its methods log a record, save a checkpoint and
    resume from one."""

    def __init__(self, model, loss, data: Data, spec: RunSpec, device: torch.device, eng):
        settings = spec.settings
        b = data.y.shape[0]
        h, w = data.image_shape or tuple(data.y.shape[-2:])
        self.device, self.loss, self.callbacks = device, loss, list(spec.callbacks)
        self.frame, self.shave, self.stopping = data.frame, data.shave, spec.stopping
        self.n_iter, self.log_every = settings.iterations, settings.log_every
        self.model = model.to(device).train()  # BatchNorm stays in training mode (PROTOCOL)
        self.x_ref = data.x_true.to(device) if data.x_true is not None else None
        self.noise = _Noise(spec.seed, b, device)
        self.z = self.noise.initial((b, settings.input_depth, h, w)) * settings.input_scale
        self.opt = make_optimizer(self.model.parameters(), settings.lr, eng, device)
        self.results = [Result(n) for n in data.names]
        self.loss_buf = torch.zeros(self.n_iter, b, device=device)
        self.output = OutputSettings.from_config(spec.output)
        rule_names = tuple(spec.stopping.rules) if spec.stopping is not None else ()
        self.sts = Streams(b, (data.y.shape[1], h, w), device, self.output.ema, rule_names,
                           truth=self.x_ref is not None, frame=data.frame) if spec.streams else None
        self.bar = None  # the progress bar, once training starts

    def resume(self, checkpoint) -> tuple[int, float]:
        """Continue from the checkpoint file if there is one that fits: (first iteration,
        elapsed seconds); (0, 0.0) without one, or after setting an unfit one aside."""
        try:
            state = load_checkpoint(checkpoint)
            if state is not None:
                start, elapsed, z_saved = self.load(state)
                self.z = z_saved.to(device=self.device, dtype=self.z.dtype)
                self.loss_buf[:start] = state["losses"].to(self.device)
                return start, elapsed
        except UnfitCheckpoint as exc:
            set_aside(Path(checkpoint), str(exc))
            for r in self.results:
                r.curve, r.status = [], "running"
        return 0, 0.0

    def load(self, state: dict) -> tuple[int, float, torch.Tensor]:
        """Apply a checkpoint's state, or raise :class:`UnfitCheckpoint` having changed nothing.

        Checks everything first (keys, the iteration within 0..iterations, shapes of z, losses,
        model and optimiser state, the generators, curves, the stopping rules', streams' and
        loss's state), then loads; a failure while loading puts everything back."""
        model, opt, z, noise, n_iter = self.model, self.opt, self.z, self.noise, self.n_iter
        results, stopping, streams, loss_fn = self.results, self.stopping, self.sts, self.loss
        b = len(results)
        stateful = _loss_state(loss_fn) is not None
        missing = sorted((CHECKPOINT_KEYS | ({"stopping"} if stopping is not None else set())
                          | ({"streams"} if streams is not None else set())
                          | ({"loss"} if stateful else set())) - set(state))
        if missing:
            raise UnfitCheckpoint(f"wrong keys: {missing} missing")
        it = state["iteration"]
        if not isinstance(it, int) or isinstance(it, bool) or not 0 <= it <= n_iter:
            raise UnfitCheckpoint(f"iteration {it!r} is outside 0..{n_iter}")
        if not isinstance(state["z"], torch.Tensor) or tuple(state["z"].shape) != tuple(z.shape):
            raise UnfitCheckpoint(f"wrong shapes: z {tuple(getattr(state['z'], 'shape', ()))}, expected {tuple(z.shape)}")
        losses = state["losses"]
        if not isinstance(losses, torch.Tensor) or tuple(losses.shape) != (it, b):
            raise UnfitCheckpoint(f"wrong shapes: losses {tuple(getattr(losses, 'shape', ()))}, expected {(it, b)}")
        mine = model.state_dict()
        theirs = state["model"]
        if not isinstance(theirs, dict) or set(theirs) != set(mine):
            raise UnfitCheckpoint("wrong keys: the network's parameters differ")
        bad = [k for k, v in theirs.items() if not isinstance(v, torch.Tensor) or v.shape != mine[k].shape]
        if bad:
            raise UnfitCheckpoint(f"wrong shapes: network parameter {bad[0]}")
        params = list(model.parameters())
        opt_state = state["optimizer"]
        if not (isinstance(opt_state, dict) and isinstance(opt_state.get("state"), dict)
                and isinstance(opt_state.get("param_groups"), list)):
            raise UnfitCheckpoint("wrong keys: not an optimiser state")
        for idx, entry in opt_state["state"].items():
            if not (isinstance(idx, int) and 0 <= idx < len(params) and isinstance(entry, dict)):
                raise UnfitCheckpoint("wrong keys: the optimiser state names other parameters")
            for name, value in entry.items():
                if name != "step" and (not isinstance(value, torch.Tensor) or value.shape != params[idx].shape):
                    raise UnfitCheckpoint(f"wrong shapes: optimiser state {name} of parameter {idx}")
        curves, status = state["curves"], state["status"]
        if not (isinstance(curves, list) and len(curves) == b and all(isinstance(c, list) for c in curves)
                and isinstance(status, list) and len(status) == b and set(status) <= {"running", "complete", "failed"}):
            raise UnfitCheckpoint(f"curves or status not for {b} run(s)")
        if not isinstance(state["elapsed"], (int, float)):
            raise UnfitCheckpoint("elapsed time is not a number")
        if not all(isinstance(rec, dict) and isinstance(rec.get("iteration"), int) and 0 <= rec["iteration"] < max(it, 1)
                   for curve in curves for rec in curve):
            raise UnfitCheckpoint("curves hold records that are not logged iterations of this run")
        try:
            noise.check_state(state["generator"])
            if stopping is not None:
                stopping.check_state(state["stopping"])
                stopping_before = stopping.state_dict()
            if streams is not None:
                streams.check_state(state["streams"])
                streams_before = streams.state_dict()
            if stateful:
                loss_fn.check_state(state["loss"])
                loss_before = loss_fn.state_dict()
        except ValueError as exc:
            raise UnfitCheckpoint(str(exc)) from None
        model_before = {k: v.clone() for k, v in mine.items()}
        opt_before = opt.state_dict()
        generators_before = noise.get_state()
        try:
            model.load_state_dict(theirs)
            opt.load_state_dict(state["optimizer"])
            noise.set_state(state["generator"])
            if stopping is not None:
                stopping.load_state_dict(state["stopping"])
            if streams is not None:
                streams.load_state_dict(state["streams"])  # checked above: cannot fail half-way
            if stateful:
                loss_fn.load_state_dict(state["loss"])
        except Exception as exc:
            model.load_state_dict(model_before)
            opt.load_state_dict(opt_before)
            noise.set_state(generators_before)
            if stopping is not None:
                stopping.load_state_dict(stopping_before)
            if streams is not None:
                streams.load_state_dict(streams_before)
            if stateful:
                loss_fn.load_state_dict(loss_before)
            raise UnfitCheckpoint(f"does not load into this run: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}") \
                from None
        for r, curve, st in zip(results, curves, status):
            r.curve, r.status = curve, st
        return it, float(state["elapsed"]), state["z"]

    def log(self, images: dict, stats: dict, failed: torch.Tensor, it: int, seconds: float) -> None:
        """One record per sample: every stream's metrics (``clean_psnr``...), the rules'
        statistics, the loss; each stream's oracle image is kept on the device (``sts``)."""
        values = {}
        with torch.no_grad():
            if self.x_ref is not None:
                for s, image in images.items():
                    metrics = quality(image.detach(), self.x_ref, self.shave)
                    if self.sts is not None:
                        self.sts.track_best(s, image.detach(), metrics["psnr"])
                    values.update({f"{PREFIX[s]}{k}": v.cpu().tolist() for k, v in metrics.items()})
            values.update({k: v.cpu().tolist() for k, v in stats.items()})  # the stopping rules' statistics
        loss_values = self.loss_buf[it].cpu().tolist()
        failed = failed.cpu().tolist()
        for i, r in enumerate(self.results):
            if r.status == "failed":
                continue
            if failed[i]:
                r.status, r.error = "failed", f"loss became non-finite before iteration {it}"
                continue
            record = {"iteration": it, **{k: v[i] for k, v in values.items()}, "loss": loss_values[i],
                      "seconds": seconds}
            r.curve.append(record)
            for cb in self.callbacks:
                cb.on_log(r, record)
        if "psnr" in values:
            self.bar.set_postfix(psnr=" ".join(f"{p:.2f}" for p in values["psnr"]), refresh=False)

    def save(self, path, iteration: int, elapsed: float) -> None:
        """The checkpoint after ``iteration`` iterations (what :meth:`load` checks and applies)."""
        state = {
            "iteration": iteration,
            "elapsed": elapsed,
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "z": self.z.cpu(),
            "generator": self.noise.get_state(),
            "losses": self.loss_buf[:iteration].cpu(),
            "curves": [r.curve for r in self.results],
            "status": [r.status for r in self.results],
        }
        if self.stopping is not None:
            state["stopping"] = self.stopping.state_dict()
        if self.sts is not None:
            state["streams"] = self.sts.state_dict()
        loss_state = _loss_state(self.loss)
        if loss_state is not None:
            state["loss"] = loss_state
        atomic_save(state, Path(path))
        for cb in self.callbacks:
            cb.on_checkpoint(iteration, Path(path))


_DATA_KEYS = ("x_true", "image_shape", "frame", "shave")


def _legacy(y, names, settings, **kw) -> tuple[Data, RunSpec]:
    """The call before issue 28, ``restore(model, loss, y, names, settings, x_true=..., seed=...,
    device=..., ...)``, as (:class:`Data`, :class:`RunSpec`)."""
    unknown = sorted(set(kw) - set(_DATA_KEYS) - set(RunSpec.__dataclass_fields__))
    if unknown:
        raise TypeError(f"restore() got unexpected keyword arguments {unknown}")
    data = Data(y, names, **{k: kw.pop(k) for k in _DATA_KEYS if k in kw})
    return data, RunSpec(settings, **kw)


def restore(model: torch.nn.Module, loss, data: Data, spec: RunSpec | None = None, *legacy, **legacy_kw
            ) -> list[Result]:
    """Train ``model`` so that each sample of f(z) explains its y; return one Result each.

    ``loss`` maps a (B, 3, H, W) output to B loss values; ``data`` (:class:`Data`) holds y,
    the names, the ground truth and the output's geometry; ``spec`` (:class:`RunSpec`; None:
    its defaults) says how to run: settings, seeds, device, engine, stopping, output stream,
    checkpoint, callbacks. The model is seeded by its builder, see :func:`seeded_model`. A
    run with ``spec.checkpoint`` set saves there every ``settings.checkpoint_every``
    iterations and continues from it when restarted; a checkpoint that does not fit this run
    is set aside with one warning line and the run starts from iteration 0.

    The restored image is the stream ``spec.output.restore`` at the end, or at stop.early's
    choice; with ``data.frame``, ``Result.extended`` keeps the whole restored x.
    The form before issue 28, ``restore(model, loss, y, names, settings, x_true=..., ...)``,
    still works (its keywords are :class:`Data`'s and :class:`RunSpec`'s fields).
    """
    if not isinstance(data, Data):
        data, spec = _legacy(data, spec, *legacy, **legacy_kw)
    elif legacy or legacy_kw:
        raise TypeError("restore(model, loss, data, spec) takes no more arguments: put them in Data or RunSpec")
    spec = spec if spec is not None else RunSpec()
    settings, stopping, stop_early, frame = spec.settings, spec.stopping, spec.stop_early, data.frame
    device = resolve_device(spec.device)
    b = data.y.shape[0]
    h, w = data.image_shape or tuple(data.y.shape[-2:])
    if len(data.names) != b:
        raise ValueError(f"{len(data.names)} names for a batch of {b}")
    if stop_early is not None and (stopping is None or stop_early not in stopping.keys()):
        raise ValueError(f"stop_early={stop_early!r} needs a Stopping with that rule")
    early_stream, _, early_name = (stop_early or "").rpartition(".")
    early_stream = early_stream or "perturbed"
    if hasattr(model, "check_size"):
        model.check_size(h, w)
    requested = EngineSettings.from_config(spec.engine) if spec.engine is not None else None
    # the CPU rule of bpdip.engine.settings reads the network's size
    eng = requested.resolve(device, network_parameters(model)) if requested is not None else None
    run = _Run(model, loss, data, spec, device, eng)
    model, results, sts, out_settings, x_ref = run.model, run.results, run.sts, run.output, run.x_ref
    n_iter, callbacks, checkpoint, shave = settings.iterations, run.callbacks, spec.checkpoint, data.shave
    if stop_early is not None and early_stream != "perturbed" and (sts is None or out_settings.restore != early_stream):
        raise ValueError(f"stop.early on the {early_stream} stream's rule returns that stream's image: "
                         f"set output.restore={early_stream} (or stop.stream=perturbed)")

    start, elapsed0 = run.resume(checkpoint)
    z = run.z
    failed = torch.tensor([r.status == "failed" for r in results], device=device)

    flags = backend_flags(eng) if eng is not None else contextlib.nullcontext()
    def after(out):  # per-step work on the output, inside the step (and its CUDA graph)
        if sts is not None:
            sts.update(out)
        if stopping is not None:
            stopping.update(out)
            if sts is not None:
                sts.follow(stopping)

    step = TrainStep(model, loss, z, settings.reg_noise_std, run.opt, eng or _EAGER, device,
                     graph_fallback=requested is not None and requested.cuda_graphs == "auto",
                     after=after if (stopping is not None or sts is not None) else None)
    t0 = time.perf_counter() - elapsed0
    bar = run.bar = tqdm(total=n_iter, initial=start, desc=",".join(data.names)[:40], disable=not settings.progress,
                         dynamic_ncols=True, leave=False)
    done = start  # iterations run so far
    stopped_early = False
    try:
        with bar, flags:
            for it in range(start, n_iter):
                run.noise.draw(step.noise)  # N(0, 1); the step scales it by reg_noise_std
                logged = is_logged(it, n_iter, settings.log_every)
                clean = None
                if logged and sts is not None:
                    # f(z) with the weights out is computed with, i.e. before this step
                    sts.catch_up(stopping)
                    clean = _clean_forward(model, z, step.engine, device)
                    sts.set_clean(clean, it)
                if hasattr(loss, "at_iteration"):  # a scheduled loss (BP's to_ls) learns the iteration
                    loss.at_iteration(it, n_iter)
                out, per_sample = step()
                run.loss_buf[it] = per_sample
                done = it + 1
                if logged:
                    failed |= ~torch.isfinite(run.loss_buf[max(0, it - settings.log_every + 1) : it + 1]).all(0)
                    stats = stopping.statistics() if stopping is not None else {}
                    images = {"perturbed": out} if sts is None else \
                        {"perturbed": out, "clean": clean, "average": sts.average}
                    run.log({k: _framed(v, frame) for k, v in images.items()}, stats, failed, it, _seconds(t0, device))
                    if all(r.status == "failed" for r in results):
                        break
                    if stop_early is not None and stopping.all_stopped(stop_early):
                        stopped_early = done < n_iter
                        break
                bar.update(1)
                if checkpoint is not None and settings.checkpoint_every and done % settings.checkpoint_every == 0 \
                        and done < n_iter:
                    run.save(checkpoint, done, time.perf_counter() - t0)
            failed |= ~torch.isfinite(run.loss_buf[:done]).all(0)
            step.close()

            runtime = _seconds(t0, device)
            with torch.no_grad(), autocast(step.engine, device):
                # the uncompiled module: a no-grad forward would make torch.compile recompile
                extended = model(z).float().clamp(0.0, 1.0)
            last = _framed(extended, frame)
            choices = stopping.choices(done) if stopping is not None else {}
            watched = stopping.watched_choices(done) if stopping is not None else {}
            if sts is not None:
                sts.catch_up(stopping)  # candidates taken after the last log
                # the streams' whole x (boundary=valid) and y's frame of it
                wholes = {"perturbed": sts.last_out.clamp(0, 1), "clean": extended, "average": sts.average.clamp(0, 1)}
                kept = out_settings.restore
            else:
                wholes, kept = {"clean": extended}, "clean"
            finals = {k: _framed(v, frame) for k, v in wholes.items()}
            final, extended = finals[kept], wholes[kept]
            candidate = (lambda rule: sts.candidate(kept, rule, stopping)) if sts is not None else \
                (lambda rule: stopping.rules[rule].candidate)
            if stop_early is not None:
                use = torch.tensor([c["candidate"] for c in watched[early_stream][early_name]], device=device)
                own = early_stream != "perturbed"  # a rule watching the restored stream: its own candidate
                chosen_image = stopping.rule(stop_early).candidate if own else candidate(early_name)
                final = torch.where(use[:, None, None, None], chosen_image.clamp(0, 1), final)
                if frame is not None:
                    whole = stopping.extended_by[early_stream][early_name] if own else \
                        sts.whole_candidate(kept, early_name, stopping) if sts is not None else \
                        stopping.extended[early_name]
                    extended = torch.where(use[:, None, None, None], whole.clamp(0, 1), extended)
            with torch.no_grad():
                metrics = quality(final, x_ref, shave) if x_ref is not None else None
                last_metrics = quality(last, x_ref, shave) if x_ref is not None else None
                rule_metrics = {name: quality(stopping.rules[name].candidate, x_ref, shave)
                                if x_ref is not None else None for name in choices}
                per_stream = _stream_records(sts, stopping, choices, finals, x_ref, shave, kept) \
                    if sts is not None else None
                watched_metrics = {s: {n: quality(stopping.watching[s][n].candidate, x_ref, shave)
                                       if x_ref is not None else None for n in rules}
                                   for s, rules in watched.items() if s != "perturbed"}
    finally:
        step.close()
    for i, r in enumerate(results):
        r.iterations, r.runtime_s = done, runtime
        r.losses = run.loss_buf[:done, i].float().cpu().numpy()
        if bool(failed[i]) or r.status == "failed":
            r.status = "failed"
            r.error = r.error or "loss became non-finite; curve kept up to the failure"
        else:
            r.status = "complete"
            r.image = final[i].permute(1, 2, 0).float().cpu().numpy()
            if frame is not None:
                r.extended = extended[i].permute(1, 2, 0).float().cpu().numpy()
            r.stopped_early = stopped_early
            if metrics is not None:
                r.final = {k: float(v[i]) for k, v in metrics.items()}
                r.last = {k: float(v[i]) for k, v in last_metrics.items()}
            r.stopping = _rule_choices(r, i, choices, rule_metrics)
            if per_stream is not None:
                r.restored_stream = kept
                r.streams, r.stream_images = _stream_result(r, i, per_stream, done)
            early = stop_early is not None and watched[early_stream][early_name][i]["candidate"]
            if early:
                chosen = watched[early_stream][early_name][i]["iteration"] if early_stream != "perturbed" else \
                    r.streams[kept]["stopping"][early_name]["iteration"] if r.streams else \
                    choices[early_name][i]["iteration"]
                r.restored_from = {"rule": early_name, "iteration": chosen}
            if per_stream is not None:
                r.choices = _watched_result(r, i, watched, watched_metrics)
                r.restored = {"stream": kept, "rule": early_name if early else "fixed",
                              "iteration": r.restored_from["iteration"] if early else done}
        for cb in callbacks:
            cb.on_end(r)
    return results


def _clean_forward(model, z, engine, device) -> torch.Tensor:
    """f(z), no grad, BatchNorm in training mode (PROTOCOL), its running statistics put back:
    the clean stream leaves the run's state exactly as it was (bpdip.streams)."""
    with torch.no_grad(), autocast(engine, device), buffers_kept(model):
        # the uncompiled module: a no-grad forward would make torch.compile recompile
        return model(z).float()


def _stream_records(sts, stopping, choices, finals, x_ref, shave, kept) -> dict:
    """On the device, for every stream: its final metrics, each online rule's candidate metrics
    and the images to write (bpdip.streams; moved to the host per sample by _stream_result)."""
    out = {}
    for s in STREAMS:
        final = finals[s]
        cands = {rule: sts.candidate(s, rule, stopping) for rule in choices}
        its = {rule: (sts.cand_clean_it[rule] if s == "clean" else stopping.rules[rule].best_it).cpu().tolist()
               for rule in choices}
        images = {}
        if sts.truth:
            images[f"{s}.oracle"] = sts.best[s]
        if s == kept:
            images.update({f"{s}.{rule}": cands[rule] for rule in choices})
            images[f"{s}.fixed"] = final
        out[s] = {
            "final": quality(final, x_ref, shave) if x_ref is not None else None,
            "rules": {rule: quality(c, x_ref, shave) if x_ref is not None else None for rule, c in cands.items()},
            "its": its, "images": images,
        }
    return out


def _stream_result(r: Result, i: int, per_stream: dict, done: int) -> tuple[dict, dict]:
    """Sample ``i``'s per-stream choices (summary.json ``streams``, rules in RULES order: the
    oracle is the stream's own logged peak, fixed its final value, an online rule without a
    candidate the final value too) and its images ("<stream>.<rule>" -> (H, W, 3))."""
    from bpdip.stopping import RULES

    streams, images = {}, {}
    for s, rec in per_stream.items():
        final = {k: float(v[i]) for k, v in rec["final"].items()} if rec["final"] is not None else {}
        choice = {}
        for rule in RULES:
            if rule == "oracle":
                peak = stream_peak(r.curve, s)
                if peak is not None:
                    choice[rule] = {"iteration": peak["iteration"], **stream_values(peak, s)}
            elif rule == "fixed":
                choice[rule] = {"iteration": done, **final}
            elif rule in rec["rules"]:
                it = rec["its"][rule][i]
                if it >= 0:
                    m = rec["rules"][rule]
                    choice[rule] = {"iteration": it, **({k: float(v[i]) for k, v in m.items()} if m else {})}
                else:
                    choice[rule] = {"iteration": done, **final}
        streams[s] = {"final": final, "stopping": choice}
        for key, img in rec["images"].items():
            rule = key.split(".", 1)[1]
            if rule in rec["its"] and rec["its"][rule][i] < 0:
                continue  # an online rule without a candidate chose the final image: no copy
            images[key] = img[i].clamp(0, 1).permute(1, 2, 0).float().cpu().numpy()
    return streams, images


def _watched_result(r: Result, i: int, watched: dict, watched_metrics: dict) -> dict:
    """Sample ``i``'s ``choices`` (issue 32): per stream, its oracle and fixed (from ``streams``)
    and every online rule that watched that stream, with the stream's image at the rule's
    choice (an online rule without a candidate: the stream's final image)."""
    from bpdip.stopping import RULES

    out = {}
    for s, rec in r.streams.items():
        choice = {}
        for rule in RULES:
            if rule in ("oracle", "fixed"):
                if rule in rec["stopping"]:
                    choice[rule] = {"iteration": rec["stopping"][rule]["iteration"], "stopped": False,
                                    "stop_iteration": None,
                                    **{k: v for k, v in rec["stopping"][rule].items() if k != "iteration"}}
                continue
            if rule not in watched.get(s, {}):
                continue
            c = dict(watched[s][rule][i])
            has = c.pop("candidate")
            if s == "perturbed":
                values = {k: v for k, v in rec["stopping"][rule].items() if k != "iteration"}
            else:
                m = watched_metrics[s][rule]
                values = {k: float(v[i]) for k, v in m.items()} if (m is not None and has) else \
                    {k: v for k, v in rec["final"].items()}
            choice[rule] = {**c, "iteration": c["iteration"] if has else r.iterations, **values}
        out[s] = choice
    return out


def _rule_choices(result: Result, i: int, choices: dict, rule_metrics: dict) -> dict:
    """Every rule's choice for sample ``i``, in ``bpdip.stopping.RULES`` order; an online
    rule without a candidate chose the last iterate (its metrics are the last iterate's)."""
    from bpdip.stopping import POST, RULES

    out = {}
    for name in RULES:
        if name in POST:
            choice = POST[name].choose(result)
        elif name in choices:
            c = dict(choices[name][i])
            metrics = rule_metrics[name]
            if metrics is None:
                values = {}
            elif c.pop("candidate"):
                values = {k: float(v[i]) for k, v in metrics.items()}
            else:
                values = chosen_values(result.last)
            c.pop("candidate", None)
            choice = {**c, **values}
        else:
            continue
        if choice is not None:
            out[name] = choice
    return out


def _framed(t: torch.Tensor, frame) -> torch.Tensor:
    """y's frame (top, left, h, w) of a (B, C, H, W) output; the output itself for None."""
    from bpdip.physics.valid import crop

    return t if frame is None else crop(t, frame)


def _seconds(t0: float, device: torch.device) -> float:
    """Wall time since ``t0`` once the device has finished the queued work (on a GPU the
    host runs ahead of the kernels, by many steps when they are replayed graphs)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0


class _Noise:
    """The run's random numbers: one generator for the batch (``seed`` an int) or one per
    sample (a sequence of B seeds), in the same order as B separate runs would draw them."""

    def __init__(self, seed: int | Sequence[int], b: int, device: torch.device):
        self.per_sample = not isinstance(seed, (int, np.integer))
        seeds = list(seed) if self.per_sample else [int(seed)]
        if self.per_sample and len(seeds) != b:
            raise ValueError(f"{len(seeds)} seeds for a batch of {b}; give one seed per sample or a single int")
        self.gens = [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]
        self.device = device

    def initial(self, shape: tuple) -> torch.Tensor:
        """z ~ U[0, 1) (scaled by the caller), shape (B, C, H, W)."""
        if not self.per_sample:
            return torch.rand(shape, generator=self.gens[0], device=self.device)
        return torch.cat([torch.rand((1, *shape[1:]), generator=g, device=self.device) for g in self.gens])

    def draw(self, out: torch.Tensor) -> None:
        """Fill ``out`` (B, C, H, W) with N(0, 1) in place."""
        if not self.per_sample:
            torch.randn(out.shape, generator=self.gens[0], device=self.device, out=out)
            return
        for b, g in enumerate(self.gens):
            torch.randn((1, *out.shape[1:]), generator=g, device=self.device, out=out[b : b + 1])

    def get_state(self):
        states = [g.get_state() for g in self.gens]
        return states if self.per_sample else states[0]

    def check_state(self, state) -> None:
        """Raise ValueError unless ``state`` is a generator state of this run (count, type, size)."""
        states = state if isinstance(state, (list, tuple)) else [state]
        if len(states) != len(self.gens) or isinstance(state, (list, tuple)) != self.per_sample:
            raise ValueError("wrong generator state: it does not match this run's seeds (one seed vs one per "
                             "sample); delete the checkpoint or use the same seeds")
        for g, s in zip(self.gens, states):
            ref = g.get_state()
            if not isinstance(s, torch.Tensor) or s.dtype != ref.dtype or s.shape != ref.shape:
                raise ValueError(f"wrong generator state: {getattr(s, 'dtype', type(s).__name__)} "
                                 f"{tuple(getattr(s, 'shape', ()))}, expected {ref.dtype} {tuple(ref.shape)}")

    def set_state(self, state) -> None:
        self.check_state(state)
        states = state if isinstance(state, (list, tuple)) else [state]
        for g, s in zip(self.gens, states):
            g.set_state(s)
