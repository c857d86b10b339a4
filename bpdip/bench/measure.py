"""Timing one configuration: the problems (an image size with its blurred y and loss),
an engine variant through the real loop, and the two plain-PyTorch reference loops."""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass

import numpy as np
import torch

from bpdip.bench.config import NETS, engine_settings, tv_weight
from bpdip.data import SET14, SET14_DIR, center_crop, load_image
from bpdip.engine import StackedLoss, build_stacked, count_flops
from bpdip.losses import make_loss
from bpdip.loop import Callback, Data, LoopSettings, RunSpec, restore, seeded_model
from bpdip.metrics import psnr_skimage, ssim_skimage
from bpdip.models import SkipNet
from bpdip.physics import Blur, degrade, derive_seed, make_kernel, noise_sigma


@dataclass
class Problem:
    """One image size: ground truth, blurred y (BP-TV loss, uniform kernel, var 2)."""

    label: str
    image: str
    x: torch.Tensor  # (1, 3, H, W) on the device
    y: torch.Tensor
    x_np: np.ndarray  # (H, W, 3) float64, for scikit-image
    loss: object

    @property
    def hw(self) -> tuple[int, int]:
        return tuple(self.x.shape[-2:])


def as_tensor(a: np.ndarray, device, dtype=torch.float32) -> torch.Tensor:
    """(H, W, 3) numpy -> (1, 3, H, W) tensor on ``device``."""
    return torch.from_numpy(a).permute(2, 0, 1)[None].to(device=device, dtype=dtype)


def make_problem(spec: str, device, kernel: str = "uniform", var: float = 2.0, dtype=torch.float32) -> Problem:
    """``256`` / ``HxW``: a centre crop of barbara (the largest image); a Set14 name: the
    full image. The loss (BP-TV) is the costliest of the four; all share the network."""
    if spec in SET14:
        image, size = spec, None
    else:
        try:
            h, w = (int(v) for v in spec.lower().split("x")) if "x" in spec.lower() else (int(spec),) * 2
        except ValueError:
            raise SystemExit(f"bad size '{spec}': use N, HxW or a Set14 name ({', '.join(SET14)})") from None
        image, size = "barbara", (h, w)
    x = center_crop(load_image(SET14_DIR / f"{image}.png"), size)
    k = make_kernel(kernel)
    y = degrade(x, k, var, derive_seed(0, image, "bench"))
    blur = Blur(k, x.shape[:2], device=device)
    yt = as_tensor(y, device, dtype)
    loss = make_loss("bp", blur, yt, noise_sigma(var), tv_weight("bp_tv", kernel))
    label = f"{x.shape[0]}x{x.shape[1]}"
    return Problem(label, image, as_tensor(x, device, dtype), yt, x, loss)


def expand_sizes(specs: list[str]) -> list[str]:
    """``set14`` -> one Set14 image per distinct size (time depends on the size only)."""
    out: list[str] = []
    for s in specs:
        if s == "set14":
            seen = set()
            for name, size in set14_sizes().items():  # in Set14's order
                if size not in seen:
                    seen.add(size)
                    out.append(name)
        else:
            out.append(s)
    return list(dict.fromkeys(out))


def set14_sizes() -> dict[str, tuple[int, int]]:
    """(H, W) of each Set14 image, read from the PNG headers."""
    from PIL import Image

    sizes = {}
    for name in SET14:
        with Image.open(SET14_DIR / f"{name}.png") as im:
            sizes[name] = (im.size[1], im.size[0])
    return sizes


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_memory(device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_gb(device) -> float | None:
    """Peak GPU memory held by tensors (torch.cuda.max_memory_allocated); None on the CPU,
    where a per-measurement peak is not available (the process's max RSS is in meta)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 1e9
    return None


class Times(Callback):
    """The loop's synchronised wall time at each logged iteration of run 0, and its PSNR."""

    def __init__(self, name: str):
        self.name, self.seconds, self.psnr = name, {}, {}

    def on_log(self, result, record):
        if result.name == self.name:
            self.seconds[record["iteration"]] = record["seconds"]
            self.psnr[record["iteration"]] = record.get("psnr")


def measure_engine(variant: str, prob: Problem, k: int, args, device, stopping: bool = False,
                   streams: bool = True) -> dict:
    """ms per step of an engine variant through ``restore``; with ``stopping`` the online
    stopping rules run too (issue 10: they may add at most 5 %), at ES-WMV's reference
    window and patience (W = 100, P = 1000), not the values scaled for this short run.
    ``streams=False`` drops the clean and average output streams (bpdip.streams), which every
    run has (row ``<variant>-nostreams``: the baseline of issue 20's <= 3 % target)."""
    engine = engine_settings(variant, k)
    net = NETS[args.net]
    model = build_stacked(lambda: SkipNet(**net), list(range(1, k + 1)))
    names = [f"r{i}" for i in range(k)]
    times = Times("r0")
    warm, steps, every = args.warmup_steps, args.steps, args.log_every
    settings = LoopSettings(iterations=warm + steps + 1, log_every=every, progress=False)
    reset_memory(device)
    rules = None
    if stopping:
        from bpdip.stopping import StopSettings, Stopping

        rules = Stopping(StopSettings(reference_iterations=1), settings.iterations, prob.loss.fidelity.op,
                         prob.y.expand(k, -1, -1, -1), noise_sigma(2.0), device)
    t0 = time.perf_counter()
    results = restore(model, StackedLoss([prob.loss] * k),
                      Data(prob.y.expand(k, -1, -1, -1), names, x_true=prob.x.expand(k, -1, -1, -1)),
                      RunSpec(settings, seed=list(range(1, k + 1)), device=device, engine=engine, callbacks=[times],
                              stopping=rules, streams=streams))
    total = time.perf_counter() - t0
    if results[0].status != "complete":
        raise RuntimeError(f"run failed: {results[0].error}")
    ms = (times.seconds[warm + steps] - times.seconds[warm]) / steps * 1e3
    name = variant + ("+stop" if stopping else "") + ("" if streams else "-nostreams")
    return row(name, engine.resolve(device).label(), prob, k, ms, args, device,
               steps=steps,
               setup_s=times.seconds[0], total_s=total, psnr_curve=times.psnr,
               final_psnr=results[0].final.get("psnr"))


def measure_reference(kind: str, prob: Problem, args, device) -> dict:
    """A loop written as plain PyTorch users write it: no engine, metrics on the CPU."""
    strict = kind == "ref-original"
    b = torch.backends
    saved = (b.cudnn.allow_tf32, b.cuda.matmul.allow_tf32, b.cudnn.benchmark)
    # original: strict fp32 (cuDNN's default TF32 convolutions switched off); plain: TF32
    b.cudnn.allow_tf32 = b.cuda.matmul.allow_tf32 = not strict
    b.cudnn.benchmark = False
    try:
        model = seeded_model(lambda: SkipNet(**NETS[args.net]), 1).to(device).train()
        opt = torch.optim.Adam(model.parameters(), lr=0.01)
        gen = torch.Generator(device=device).manual_seed(1)
        h, w = prob.hw
        z = torch.rand(1, 32, h, w, generator=gen, device=device) * 0.1
        every = 1 if strict else args.log_every
        warm, steps = (2, args.original_steps) if strict else (args.warmup_steps, args.steps)
        reset_memory(device)
        start = 0.0
        for i in range(warm + steps):
            if i == warm:
                sync(device)
                start = time.perf_counter()
            out = model(z + torch.randn(z.shape, generator=gen, device=device) * 0.03)
            loss = prob.loss(out).sum()
            if i % every == 0:
                img = out.detach().clamp(0, 1)[0].permute(1, 2, 0).double().cpu().numpy()
                psnr_skimage(img, prob.x_np)
                ssim_skimage(img, prob.x_np)
                if not strict:  # the loop's third number, SSIM at the paper's data range 2
                    ssim_skimage(img, prob.x_np, data_range=2.0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sync(device)
        ms = (time.perf_counter() - start) / steps * 1e3
    finally:
        b.cudnn.allow_tf32, b.cuda.matmul.allow_tf32, b.cudnn.benchmark = saved
    label = "fp32 eager, skimage every step" if strict else f"tf32 eager, skimage every {every}"
    return row(kind, label, prob, 1, ms, args, device, steps=steps)


def row(variant, label, prob, k, ms, args, device, **extra) -> dict:
    flops = count_flops(*prob.hw, **NETS[args.net], stack=k)["train"]
    return {
        "variant": variant, "engine": label, "size": prob.label, "image": prob.image, "k": k,
        "pixels": prob.hw[0] * prob.hw[1], "ms_per_step": ms, "steps_per_s": 1e3 / ms,
        "run_steps_per_s": k * 1e3 / ms, "tflops": flops / (ms * 1e-3) / 1e12,
        "peak_memory_gb": peak_memory_gb(device), "log_every": args.log_every, **extra,
    }


def streams_overhead(attempt, report: dict, variant: str, prob: Problem, args, device) -> dict:
    """Issue 20: the output streams' cost, the same variant timed without and with them (the
    clean forward at each logged iteration, ``args.log_every``, and the average every step)."""
    from bpdip.bench.config import STREAMS_OVERHEAD_LIMIT

    # A/B alternated over --rounds (a shared CPU's noise is a few %, as large as the limit):
    # the overhead is the median of the per-round ratios
    rounds = []
    for _ in range(max(1, getattr(args, "rounds", 1))):
        pair = []
        for on in (False, True):
            attempt(dict(variant=variant + ("" if on else "-nostreams"), size=prob.label, k=1),
                    lambda: measure_engine(variant, prob, 1, args, device, streams=on))
            pair.append(report["rows"][-1].get("ms_per_step"))
        rounds.append(pair)
    ratios = sorted(b / a - 1 for a, b in rounds if a is not None and b is not None)
    overhead = float(np.median(ratios)) if ratios else None
    pair = [float(np.median([p[i] for p in rounds if p[i] is not None])) if any(p[i] is not None for p in rounds)
            else None for i in (0, 1)]
    return dict(variant=variant, size=prob.label, log_every=args.log_every, ms_without=pair[0], ms_with=pair[1],
                rounds=len(rounds), round_overheads=ratios,
                limit=STREAMS_OVERHEAD_LIMIT, overhead=overhead,
                passed=None if overhead is None else overhead <= STREAMS_OVERHEAD_LIMIT)
