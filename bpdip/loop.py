"""The DIP optimisation loop (paper eqs. 3 and 9; PROTOCOL "Network" and "Optimisation").

One call trains one network per sample of the batch: B = 1 for the plain skip net, or
B = K runs of the same image size when the model stacks K independent networks. Each
sample has its own y, ground truth, loss and record.

Per iteration i (0-based):
    out = f(z + reg_noise_std * N(0, 1))              fresh noise each step
    if i % log_every == 0: PSNR/SSIM of clip(out) vs x_true are logged (before the step)
    loss = sum over samples of loss_b(out_b);  Adam step on the network weights only.
After the last step the final image is f(z), with no perturbation, clipped to [0, 1].

Nothing here knows about W&B or files: callbacks receive the records.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from bpdip.metrics import quality


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
    final: dict = field(default_factory=dict)  # psnr, ssim, ssim_dr2 of the final image
    image: np.ndarray | None = None  # (H, W, 3) float32 in [0, 1]
    iterations: int = 0
    runtime_s: float = 0.0
    error: str | None = None

    @property
    def peak(self) -> dict | None:
        """The logged record with the highest PSNR (ground-truth early stopping)."""
        finite = [r for r in self.curve if math.isfinite(r["psnr"])]
        return max(finite, key=lambda r: r["psnr"]) if finite else None


class Callback:
    """Hooks of the loop; subclass and override what you need."""

    def on_log(self, result: Result, record: dict) -> None:
        """After a record (iteration, psnr, ssim, ssim_dr2, loss, seconds) is appended."""

    def on_checkpoint(self, iteration: int, path: Path) -> None:
        """After the checkpoint for ``iteration`` is written."""

    def on_end(self, result: Result) -> None:
        """After a sample finished (complete or failed)."""


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device=cuda asked for, but no CUDA GPU is visible; use device=auto or cpu")
    return device


def seeded_model(factory, seed: int) -> torch.nn.Module:
    """Build a model with its own seed, leaving the global RNG as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory()


def atomic_save(obj, path: Path) -> None:
    """torch.save to a temporary file, then rename: a kill never leaves half a file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path | None) -> dict | None:
    """The checkpoint at ``path``, or None if absent or unreadable (then we start over)."""
    if path is None or not Path(path).is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # truncated or corrupt: redo from scratch rather than fail
        warnings.warn(f"ignoring unreadable checkpoint {path}: {exc}")
        return None


def restore(
    model: torch.nn.Module,
    losses,
    y: torch.Tensor,
    names: list[str],
    settings: LoopSettings,
    *,
    x_true: torch.Tensor | None = None,
    seed: int = 0,
    device: str | torch.device = "auto",
    callbacks: list[Callback] = (),
    checkpoint: str | Path | None = None,
) -> list[Result]:
    """Train ``model`` so that each sample of f(z) explains its y; return one Result each.

    ``losses`` maps a (B, 3, H, W) output to B loss values; ``y`` and ``x_true`` are
    (B, 3, H, W). ``seed`` fixes z and the perturbations (the model is seeded by its
    builder, see :func:`seeded_model`). A run with ``checkpoint`` set saves there every
    ``settings.checkpoint_every`` iterations and continues from it when restarted.
    """
    device = resolve_device(device)
    b, _, h, w = y.shape
    if len(names) != b:
        raise ValueError(f"{len(names)} names for a batch of {b}")
    if hasattr(model, "check_size"):
        model.check_size(h, w)
    model = model.to(device).train()  # BatchNorm stays in training mode (PROTOCOL)
    x_ref = x_true.to(device) if x_true is not None else None
    gen = torch.Generator(device=device).manual_seed(seed)
    z = torch.rand(b, settings.input_depth, h, w, generator=gen, device=device) * settings.input_scale
    opt = torch.optim.Adam(model.parameters(), lr=settings.lr)
    results = [Result(n) for n in names]
    n_iter = settings.iterations
    loss_buf = torch.zeros(n_iter, b, device=device)
    failed = torch.zeros(b, dtype=torch.bool, device=device)
    start, elapsed0 = 0, 0.0

    state = load_checkpoint(checkpoint)
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        z = state["z"].to(device)
        gen.set_state(state["generator"])
        start, elapsed0 = state["iteration"], state["elapsed"]
        loss_buf[:start] = state["losses"].to(device)
        for r, curve, st in zip(results, state["curves"], state["status"]):
            r.curve, r.status = curve, st
        failed = torch.tensor([r.status == "failed" for r in results], device=device)

    t0 = time.perf_counter() - elapsed0
    bar = tqdm(total=n_iter, initial=start, desc=",".join(names)[:40], disable=not settings.progress,
               dynamic_ncols=True, leave=False)
    it = start
    with bar:
        for it in range(start, n_iter):
            noise = torch.randn(z.shape, generator=gen, device=device) * settings.reg_noise_std
            out = model(z + noise)
            per_sample = losses(out)
            loss_buf[it] = per_sample.detach()
            ok = torch.isfinite(per_sample)
            if it % settings.log_every == 0:
                failed |= ~torch.isfinite(loss_buf[max(0, it - settings.log_every + 1) : it + 1]).all(0)
                _log(results, out, x_ref, loss_buf[it], failed, it, time.perf_counter() - t0, callbacks, bar)
                if all(r.status == "failed" for r in results):
                    break
            opt.zero_grad(set_to_none=True)
            # a sample whose loss went non-finite stops learning; the others go on
            torch.where(ok, per_sample, torch.zeros_like(per_sample)).sum().backward()
            opt.step()
            bar.update(1)
            done = it + 1
            if checkpoint is not None and settings.checkpoint_every and done % settings.checkpoint_every == 0 \
                    and done < n_iter:
                _save(checkpoint, model, opt, z, gen, done, time.perf_counter() - t0, loss_buf, results)
                for cb in callbacks:
                    cb.on_checkpoint(done, Path(checkpoint))
        else:
            it = n_iter
        failed |= ~torch.isfinite(loss_buf[:it]).all(0)

    runtime = time.perf_counter() - t0
    with torch.no_grad():
        final = model(z).clamp(0.0, 1.0)
        metrics = quality(final, x_ref) if x_ref is not None else None
    for i, r in enumerate(results):
        r.iterations, r.runtime_s = it, runtime
        if bool(failed[i]) or r.status == "failed":
            r.status = "failed"
            r.error = r.error or "loss became non-finite; curve kept up to the failure"
        else:
            r.status = "complete"
            r.image = final[i].permute(1, 2, 0).float().cpu().numpy()
            if metrics is not None:
                r.final = {k: float(v[i]) for k, v in metrics.items()}
        for cb in callbacks:
            cb.on_end(r)
    return results


def _log(results, out, x_ref, losses, failed, it, seconds, callbacks, bar) -> None:
    with torch.no_grad():
        metrics = quality(out.detach(), x_ref) if x_ref is not None else {}
        values = {k: v.cpu().tolist() for k, v in metrics.items()}
    loss_values = losses.cpu().tolist()
    failed = failed.cpu().tolist()
    for i, r in enumerate(results):
        if r.status == "failed":
            continue
        if failed[i]:
            r.status, r.error = "failed", f"loss became non-finite before iteration {it}"
            continue
        record = {"iteration": it, **{k: v[i] for k, v in values.items()}, "loss": loss_values[i],
                  "seconds": seconds}
        r.curve.append(record)
        for cb in callbacks:
            cb.on_log(r, record)
    if "psnr" in values:
        bar.set_postfix(psnr=" ".join(f"{p:.2f}" for p in values["psnr"]), refresh=False)


def _save(path, model, opt, z, gen, iteration, elapsed, loss_buf, results) -> None:
    atomic_save(
        {
            "iteration": iteration,
            "elapsed": elapsed,
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "z": z.cpu(),
            "generator": gen.get_state(),
            "losses": loss_buf[:iteration].cpu(),
            "curves": [r.curve for r in results],
            "status": [r.status for r in results],
        },
        Path(path),
    )

