#!/usr/bin/env python
"""Benchmark of the DIP training step: engine variants against two reference loops.

One run measures, side by side on one device:

- ``ref-original``: a loop like the authors' (strict IEEE fp32, eager, one network,
  PSNR and SSIM through scikit-image on the CPU every step);
- ``ref-plain``: plain eager PyTorch (TF32, one network, scikit-image metrics on the CPU
  every ``--log-every`` steps);
- engine variants (``bpdip.loop.restore(engine=...)``: precision, CUDA graphs,
  torch.compile, channels_last), timed through the real loop with its metrics on the
  device every ``--log-every`` steps;

at 256x256, 512x512 and real Set14 sizes: ms per step, steps/s, effective TFLOP/s
(analytic convolution count, ``bpdip.engine.count_flops``), peak memory; then the K-run
stacking throughput at 256x256, the peak memory of barbara (720x576) with K = 4, the
projected wall time of the full Table I, short equivalence checks on the device, and with
``--quality`` the bf16-vs-tf32 peak-PSNR check that decides the GPU default precision
(alone, or after the timings with ``--quick``: one JSON, one process, one device call).

Timing: each engine run is ``restore`` for W + S + 1 iterations; the loop records the
synchronised wall time at every logged iteration, and ms/step is (t[W + S] - t[W]) / S,
which includes S / log_every metric evaluations, the noise draws and all per-step Python.
The reference loops are timed the same way over the same window (``ref-original`` over
``--original-steps`` steps, each with its metrics). JSON is rewritten after every
measurement, so a run stopped by a time limit keeps what it measured.

    python scripts/bench.py --quick --out results/bench/gpu.json     # on a GPU, ~5 min
    python scripts/bench.py --quality --out results/bench/quality.json
    python scripts/bench.py --quick --quality --budget-s 480 --out gpu.json   # both in one GPU call
    python scripts/bench.py --device cpu --net slim --sizes 48 --steps 3 --memory-size 48 --stack-size 48
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # runs from a checkout where bpdip is not installed (GPU machine)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bpdip.data import SET14, SET14_DIR, center_crop, load_image  # noqa: E402
from bpdip.engine import EngineSettings, StackedLoss, build_stacked, count_flops  # noqa: E402
from bpdip.losses import make_loss  # noqa: E402
from bpdip.loop import Callback, LoopSettings, resolve_device, restore, seeded_model  # noqa: E402
from bpdip.metrics import psnr_skimage, ssim_skimage  # noqa: E402
from bpdip.models import SkipNet  # noqa: E402
from bpdip.physics import Blur, degrade, derive_seed, make_kernel, noise_sigma  # noqa: E402
from bpdip.records import write_json  # noqa: E402

NETS = {
    "paper": {},  # PROTOCOL "Network": 5 scales of 128/128/4 channels
    "slim": dict(channels_down=(8, 8, 8), channels_up=(8, 8, 8), channels_skip=(2, 2, 2)),  # tests
}

# name -> engine options; "cuda" marks variants that only exist on a GPU
VARIANTS = {
    "eager-fp32": dict(precision="fp32", cuda_graphs=False),
    "eager-tf32": dict(precision="tf32", cuda_graphs=False, cuda=True),
    "eager-bf16": dict(precision="bf16", cuda_graphs=False),
    "eager-bf16-cl": dict(precision="bf16", cuda_graphs=False, channels_last=True),
    "graphs-fp32": dict(precision="fp32", cuda_graphs=True, cuda=True),
    "graphs-tf32": dict(precision="tf32", cuda_graphs=True, cuda=True),
    "graphs-tf32-cl": dict(precision="tf32", cuda_graphs=True, channels_last=True, cuda=True),
    "graphs-bf16": dict(precision="bf16", cuda_graphs=True, cuda=True),
    "graphs-bf16-cl": dict(precision="bf16", cuda_graphs=True, channels_last=True, cuda=True),
    "compile-fp32": dict(precision="fp32", compile=True, cuda_graphs=False),
    "compile-graphs-tf32": dict(precision="tf32", compile=True, cuda_graphs=True, cuda=True),
    "compile-graphs-bf16": dict(precision="bf16", compile=True, cuda_graphs=True, cuda=True),
    "compile-graphs-tf32-cl": dict(precision="tf32", compile=True, cuda_graphs=True, channels_last=True, cuda=True),
    "compile-graphs-bf16-cl": dict(precision="bf16", compile=True, cuda_graphs=True, channels_last=True, cuda=True),
    "compile-max-graphs-bf16-cl": dict(precision="bf16", compile=True, compile_mode="max-autotune-no-cudagraphs",
                                       cuda_graphs=True, channels_last=True, cuda=True),
}
REFERENCES = ("ref-plain", "ref-original")
DEFAULT_VARIANTS = {
    "cuda": ["graphs-tf32", "graphs-bf16", "eager-tf32", "graphs-fp32", "graphs-bf16-cl", "graphs-tf32-cl"],
    "cpu": ["eager-fp32", "eager-bf16", "eager-bf16-cl"],
}
# at sizes after the first (--quick): the candidates for the default, enough for the projection
OTHER_VARIANTS = {"cuda": ["graphs-tf32", "graphs-bf16", "eager-tf32"], "cpu": ["eager-fp32", "eager-bf16"]}
# fusion of BatchNorm + LeakyReLU + padding (PROTOCOL: ~40 % of a step is BatchNorm) comes from inductor
DEFAULT_COMPILE = {"cuda": ["compile-graphs-bf16-cl", "compile-graphs-tf32"], "cpu": []}
STACK_VARIANTS = {"cuda": ["graphs-tf32", "graphs-bf16"], "cpu": ["eager-fp32"]}

# PROTOCOL "Optimisation": iterations per loss; "Losses": TV weights (LS-TV by kernel)
ITERATIONS = {"ls": 10_000, "ls_tv": 10_000, "bp": 7_000, "bp_tv": 7_000}
TV_WEIGHTS = {"ls": {}, "ls_tv": {"uniform": 1e-6, "radial": 1e-5, "gaussian": 1e-5}, "bp": {},
              "bp_tv": {"uniform": 1e-3, "radial": 1e-3, "gaussian": 1e-3}}
SETTINGS_PER_LOSS = 9  # Table I: 3 kernels x 3 noise levels
TABLE1_ITERS_PER_IMAGE = SETTINGS_PER_LOSS * sum(ITERATIONS.values())  # 306,000; x 14 images = 4.28M
QUALITY_TOLERANCE_DB = 0.1  # issue 6: bf16 peak PSNR within 0.1 dB of TF32, Set14 average
MEMORY_LIMIT_GB = 40.0  # issue 6: barbara with K = 4 fits in 40 GB


# ---------------------------------------------------------------- problems


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


def _tensor(a: np.ndarray, device, dtype=torch.float32) -> torch.Tensor:
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
    yt = _tensor(y, device, dtype)
    loss = make_loss("bp", blur, yt, noise_sigma(var), TV_WEIGHTS["bp_tv"][kernel])
    label = f"{x.shape[0]}x{x.shape[1]}"
    return Problem(label, image, _tensor(x, device, dtype), yt, x, loss)


def expand_sizes(specs: list[str]) -> list[str]:
    """``set14`` -> one Set14 image per distinct size (time depends on the size only)."""
    out: list[str] = []
    for s in specs:
        if s == "set14":
            seen = set()
            for name in SET14:
                from PIL import Image

                with Image.open(SET14_DIR / f"{name}.png") as im:
                    size = im.size
                if size not in seen:
                    seen.add(size)
                    out.append(name)
        else:
            out.append(s)
    return list(dict.fromkeys(out))


def set14_sizes() -> dict[str, tuple[int, int]]:
    from PIL import Image

    sizes = {}
    for name in SET14:
        with Image.open(SET14_DIR / f"{name}.png") as im:
            sizes[name] = (im.size[1], im.size[0])
    return sizes


# ---------------------------------------------------------------- measuring


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


def measure_engine(variant: str, prob: Problem, k: int, args, device) -> dict:
    opts = {key: v for key, v in VARIANTS[variant].items() if key != "cuda"}
    engine = EngineSettings(**opts, stack=k)
    net = NETS[args.net]
    model = build_stacked(lambda: SkipNet(**net), list(range(1, k + 1)))
    names = [f"r{i}" for i in range(k)]
    times = Times("r0")
    warm, steps, every = args.warmup_steps, args.steps, args.log_every
    settings = LoopSettings(iterations=warm + steps + 1, log_every=every, progress=False)
    reset_memory(device)
    t0 = time.perf_counter()
    results = restore(model, StackedLoss([prob.loss] * k), prob.y.expand(k, -1, -1, -1), names, settings,
                      x_true=prob.x.expand(k, -1, -1, -1), seed=list(range(1, k + 1)), device=device,
                      engine=engine, callbacks=[times])
    total = time.perf_counter() - t0
    if results[0].status != "complete":
        raise RuntimeError(f"run failed: {results[0].error}")
    ms = (times.seconds[warm + steps] - times.seconds[warm]) / steps * 1e3
    return row(variant, engine.resolve(device).label(), prob, k, ms, args, device, steps=steps,
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


# ---------------------------------------------------------------- checks on the device


def curve_gap(a: list, b: list) -> tuple[float, float]:
    """Largest |PSNR difference| (dB) and relative loss difference between two curves."""
    dp = max(abs(p["psnr"] - q["psnr"]) for p, q in zip(a, b, strict=True))
    dl = max(abs(p["loss"] - q["loss"]) / max(abs(p["loss"]), 1e-30) for p, q in zip(a, b, strict=True))
    return dp, dl


def run_checks(args, device) -> list[dict]:
    """Short runs that must agree: the graphed step with the eager one, and K = 2 stacked
    networks with two separate runs. In float64 (network, z, noise; the loss stays float32
    as always): float32 rounding, which Adam amplifies in the weights BatchNorm makes
    irrelevant, would otherwise hide a real difference under ~0.05 dB of noise."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        return _checks(args, device)
    finally:
        torch.set_default_dtype(before)


def _checks(args, device) -> list[dict]:
    prob = make_problem(args.check_size, device, dtype=torch.float64)
    net = NETS[args.net]
    settings = LoopSettings(iterations=31, log_every=10, progress=False)
    cuda = device.type == "cuda"
    base = "graphs-fp32" if cuda else "eager-fp32"

    def run(variant, k, seeds, probs):
        opts = {key: v for key, v in VARIANTS[variant].items() if key != "cuda"}
        model = build_stacked(lambda: SkipNet(**net), seeds).double()
        y = torch.cat([p.y for p in probs])
        x = torch.cat([p.x for p in probs])
        return restore(model, StackedLoss([p.loss for p in probs]), y, [f"r{i}" for i in range(k)], settings,
                       x_true=x, seed=seeds, device=device, engine=EngineSettings(**opts, stack=k))

    checks = []
    other = make_problem(args.check_size, device, kernel="gaussian", var=0.3, dtype=torch.float64)
    stacked = run(base, 2, [11, 12], [prob, other])
    separate = [run(base, 1, [11], [prob])[0], run(base, 1, [12], [other])[0]]
    gaps = [curve_gap(a.curve, b.curve) for a, b in zip(separate, stacked)]
    checks.append(dict(check=f"stacked K=2 == 2 separate runs ({base})", size=prob.label,
                       max_psnr_gap_db=max(g[0] for g in gaps), max_loss_rel_gap=max(g[1] for g in gaps)))
    if cuda:
        eager = run("eager-fp32", 1, [11], [prob])[0]
        graphed = separate[0]
        dp, dl = curve_gap(eager.curve, graphed.curve)
        checks.append(dict(check="CUDA graph step == eager step (fp32)", size=prob.label, max_psnr_gap_db=dp,
                           max_loss_rel_gap=dl))
    for c in checks:
        c["iterations"] = settings.iterations - 1
        c["passed"] = c["max_psnr_gap_db"] < args.check_tolerance_db
    return checks


# ---------------------------------------------------------------- quality (bf16 vs tf32)


def run_quality(args, device, report: dict, save) -> None:
    """Four losses of one image stacked (K = 4), full protocol iterations, per precision.

    A BP network stops counting at 7,000 iterations: its curve is read up to there (the
    stacked networks are independent, so the later steps of the others do not matter).
    """
    variants = args.quality_variants or (["graphs-tf32", "graphs-bf16"] if device.type == "cuda"
                                         else ["eager-fp32", "eager-bf16"])
    losses = list(ITERATIONS)
    k = make_kernel(args.quality_kernel)
    setup = {"variants": variants, "kernel": args.quality_kernel, "noise_var": args.quality_var, "net": args.net,
             "crop": args.quality_crop, "iterations": args.quality_iterations,
             "seed_floor": args.quality_seed_floor}
    runs = report.setdefault("quality", {**setup, "images": args.quality_images, "runs": []})["runs"]
    done = set()
    if args.resume:  # finished (image, precision) pairs of an earlier run, e.g. one cut by a time limit
        for r in resumed_quality_runs(args.resume, setup):
            runs.append(r)
            done.add((r["image"], r["variant"]))
    for image in args.quality_images:
        x = center_crop(load_image(SET14_DIR / f"{image}.png"), args.quality_crop)
        y = degrade(x, k, args.quality_var, derive_seed(0, image, args.quality_kernel, args.quality_var, "noise"))
        blur = Blur(k, x.shape[:2], device=device)
        yt, xt = _tensor(y, device), _tensor(x, device)
        sigma = noise_sigma(args.quality_var)
        fns = [make_loss(name.split("_")[0], blur, yt, sigma, TV_WEIGHTS[name].get(args.quality_kernel, 0.0))
               for name in losses]
        budget = {name: min(ITERATIONS[name], args.quality_iterations) for name in losses}
        n_iter = max(budget.values())
        seeds = [derive_seed(0, image, name, "init") % 2**31 for name in losses]
        plan = [(v, v, seeds) for v in variants]
        if args.quality_seed_floor:  # the reference again with other seeds: the gap chance alone makes
            plan.append((f"{variants[0]}:reseeded", variants[0], [s + 1 for s in seeds]))
        for label, variant, run_seeds in plan:
            if (image, label) in done:
                continue
            if over_budget(args):
                runs.append(dict(image=image, variant=label, skipped="time budget"))
                continue
            opts = {key: v for key, v in VARIANTS[variant].items() if key != "cuda"}
            t0 = time.perf_counter()
            results = restore(build_stacked(lambda: SkipNet(**NETS[args.net]), run_seeds), StackedLoss(fns),
                              yt.expand(4, -1, -1, -1), losses, LoopSettings(iterations=n_iter, log_every=100,
                                                                            progress=False),
                              x_true=xt.expand(4, -1, -1, -1), seed=run_seeds, device=device,
                              engine=EngineSettings(**opts, stack=4))
            for name, res in zip(losses, results):
                curve = [r for r in res.curve if r["iteration"] < budget[name]]
                finite = [r for r in curve if math.isfinite(r["psnr"])]
                peak = max(finite, key=lambda r: r["psnr"]) if finite else None
                runs.append(dict(image=image, size=f"{x.shape[0]}x{x.shape[1]}", variant=label, loss=name,
                                 iterations=budget[name], status=res.status,
                                 peak_psnr=peak["psnr"] if peak else None,
                                 peak_iteration=peak["iteration"] if peak else None,
                                 last_psnr=curve[-1]["psnr"] if curve else None,
                                 seconds=time.perf_counter() - t0))
            report["quality"]["summary"] = quality_summary(runs, variants, losses)
            # only the protocol's run is evidence for the default: full images, paper net, all iterations
            protocol = (args.quality_crop is None and args.net == "paper"
                        and args.quality_iterations >= max(ITERATIONS.values()))
            report["quality"]["summary"]["protocol_run"] = protocol
            report["quality"]["summary"]["passed"] &= protocol
            save()


def resumed_quality_runs(path: str, setup: dict) -> list[dict]:
    """The finished (image, precision) pairs of an earlier quality JSON, each with all four
    losses complete; its settings must be this run's, else the verdict would mix checks."""
    try:
        earlier = json.loads(Path(path).read_text())["quality"]
    except (OSError, ValueError, KeyError) as exc:
        raise SystemExit(f"--resume {path}: not a quality JSON of scripts/bench.py ({exc})") from None
    differ = sorted(k for k, v in setup.items() if earlier.get(k) != v)
    if differ:
        raise SystemExit(f"--resume {path}: its quality settings differ in {differ}; use the same options")
    pairs: dict[tuple, list] = {}
    for r in earlier["runs"]:
        if "loss" in r:
            pairs.setdefault((r["image"], r["variant"]), []).append(r)
    return [{**r, "resumed_from": str(path)} for group in pairs.values()
            if len(group) == len(ITERATIONS) and all(r["status"] == "complete" for r in group) for r in group]


def _mean_peaks(runs, loss, a, b):
    peaks = {v: {r["image"]: r["peak_psnr"] for r in runs if r.get("loss") == loss and r["variant"] == v
                 and r.get("peak_psnr") is not None} for v in (a, b)}
    images = sorted(set(peaks[a]) & set(peaks[b]))
    return images, [peaks[a][i] for i in images], [peaks[b][i] for i in images]


def quality_summary(runs: list[dict], variants: list[str], losses: list[str]) -> dict:
    """Per loss, the mean over images of the peak PSNR for each variant, and the gap of
    the second variant to the first, over the images that both completed. With the
    reseeded reference, ``seed_gap_db`` is the same gap between two seeds of the
    reference: what chance alone gives."""
    ref, other = variants[0], variants[1] if len(variants) > 1 else variants[0]
    out = {"reference": ref, "candidate": other, "tolerance_db": QUALITY_TOLERANCE_DB, "per_loss": {}}
    for loss in losses:
        images, a, b = _mean_peaks(runs, loss, ref, other)
        if not images:
            continue
        out["per_loss"][loss] = dict(images=images, mean_peak_reference=float(np.mean(a)),
                                     mean_peak_candidate=float(np.mean(b)), gap_db=float(np.mean(b) - np.mean(a)))
        seeded, a, c = _mean_peaks(runs, loss, ref, f"{ref}:reseeded")
        if seeded:
            out["per_loss"][loss]["seed_gap_db"] = float(np.mean(c) - np.mean(a))
    gaps = [v["gap_db"] for v in out["per_loss"].values()]
    counts = [len(v["images"]) for v in out["per_loss"].values()]
    out["complete"] = len(gaps) == len(losses) and min(counts, default=0) >= 3
    out["passed"] = bool(out["complete"] and max(abs(g) for g in gaps) <= QUALITY_TOLERANCE_DB)
    return out


# ---------------------------------------------------------------- projection and summary


def fit_time(points: list[tuple[int, float]]):
    """ms per step as a + b * pixels: fixed per-step overhead plus work per pixel, least
    squares over the measured sizes. Both terms must be >= 0 (noise between sizes of
    almost equal area can tilt a free fit): else the best fit with one term at zero."""
    px = np.array([p for p, _ in points], dtype=float)
    ms = np.array([m for _, m in points], dtype=float)
    a, b = 0.0, float(ms @ px / (px @ px))  # proportional: a = 0
    if len(set(px)) >= 2:
        b_free, a_free = np.polyfit(px, ms, 1)
        if a_free >= 0 and b_free >= 0:
            a, b = float(a_free), float(b_free)
        elif b_free < 0:
            a, b = float(ms.mean()), 0.0  # no visible growth with size: constant
    return (lambda p: a + b * p), (a, b)


def project_table1(rows: list[dict]) -> dict:
    """Full Table I (PROTOCOL: 14 images x 9 settings x (2 x 10,000 + 2 x 7,000)) on this
    device, per variant: measured ms/step at an image's own size where measured, else the
    a + b * pixels fit over the measured sizes. Stacked (K = 4): the four losses of an
    image and setting run together for 10,000 steps."""
    sizes = set14_sizes()
    out = {}
    for variant in sorted({r["variant"] for r in rows}):
        for k in sorted({r["k"] for r in rows if r["variant"] == variant}):
            pts = [(r["pixels"], r["ms_per_step"]) for r in rows if r["variant"] == variant and r["k"] == k]
            if k not in (1, 4) or len({p for p, _ in pts}) < 2:  # one size cannot separate overhead from work
                continue
            fit, coef = fit_time(pts)
            direct = {r["pixels"]: r["ms_per_step"] for r in rows if r["variant"] == variant and r["k"] == k}
            per_image = {n: direct.get(h * w, fit(h * w)) for n, (h, w) in sizes.items()}
            steps = TABLE1_ITERS_PER_IMAGE if k == 1 else SETTINGS_PER_LOSS * max(ITERATIONS.values())
            seconds = sum(steps * ms / 1e3 for ms in per_image.values())
            out[variant if k == 1 else f"{variant} K={k}"] = dict(
                hours=seconds / 3600, sizes_measured=len(pts),
                set14_sizes_measured=sum(1 for h, w in sizes.values() if h * w in direct),
                fit_ms=dict(a=coef[0], b_per_megapixel=coef[1] * 1e6))
    return out


AGREEMENT_REFERENCES = ("graphs-fp32", "eager-fp32", "eager-tf32", "graphs-tf32")


def curve_agreement(rows: list[dict]) -> dict:
    """Per size, each engine run's largest |PSNR difference| (dB) at the logged iterations
    from the strictest variant measured there. Every run of a size starts from the same
    weights, z and noise (seed 1; run 0 of a stack too), so only rounding separates them:
    ~0.1 dB after a few hundred Adam steps is float32 chaos, several dB is a bug (a graph
    that replays stale weights, a compiled graph that computes something else)."""
    out = {}
    for size in dict.fromkeys(r["size"] for r in rows):
        curves = {(r["variant"], r["k"]): r["psnr_curve"] for r in rows if r["size"] == size and r.get("psnr_curve")}
        ref = next((v for v in AGREEMENT_REFERENCES if (v, 1) in curves), None)
        if ref is None:
            continue
        base = {int(i): p for i, p in curves[(ref, 1)].items()}
        gaps = {}
        for (variant, k), curve in curves.items():
            common = [(p, base[int(i)]) for i, p in curve.items() if int(i) in base and p is not None
                      and base[int(i)] is not None]
            if common and (variant, k) != (ref, 1):
                gaps[variant if k == 1 else f"{variant} K={k}"] = max(abs(a - b) for a, b in common)
        out[size] = dict(reference=ref, max_psnr_gap_db=gaps)
    return out


def ratios(rows: list[dict], size: str, engine_variants: list[str]) -> dict:
    at = {r["variant"]: r["ms_per_step"] for r in rows if r["size"] == size and r["k"] == 1}
    out = {}
    for v in engine_variants:
        if v in at:
            out[v] = {ref: at[ref] / at[v] for ref in REFERENCES if ref in at}
    return out


def over_budget(args) -> bool:
    return args.budget_s is not None and time.perf_counter() - START > args.budget_s


START = time.perf_counter()


def device_info(device) -> dict:
    info = {"device_type": device.type, "torch": torch.__version__, "python": platform.python_version(),
            "hostname": platform.node(), "date": datetime.datetime.now().isoformat(timespec="seconds")}
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        info.update(device_name=torch.cuda.get_device_name(device), memory_gb=p.total_memory / 1e9,
                    capability=f"{p.major}.{p.minor}", cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version())
    else:
        name = platform.processor() or platform.machine()
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
        info.update(device_name=f"CPU: {name}", threads=torch.get_num_threads(), cores=os.cpu_count())
    if hasattr(os, "getloadavg"):  # other processes on the machine distort CPU timings: say how busy it was
        info["load_average_at_start"] = os.getloadavg()
    try:
        info["git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                            timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        info["git_commit"] = None
    return info


def print_table(report: dict) -> None:
    rows = report.get("rows", [])
    plain = {r["size"]: r["ms_per_step"] for r in rows if r["variant"] == "ref-plain" and "ms_per_step" in r}
    orig = {r["size"]: r["ms_per_step"] for r in rows if r["variant"] == "ref-original" and "ms_per_step" in r}
    print(f"\n# {report['meta']['device_name']}  (torch {report['meta']['torch']})")
    head = f"{'variant':22} {'size':>9} {'K':>3} {'ms/step':>9} {'steps/s':>8} {'TFLOP/s':>8} {'peak GB':>8} " \
           f"{'x plain':>8} {'x orig':>8}"
    print(head)
    print("-" * len(head))
    for r in rows:
        if "error" in r or "skipped" in r:
            print(f"{r['variant']:22} {r.get('size', ''):>9} {r.get('k', ''):>3}  "
                  f"{'ERROR ' + r['error'][:60] if 'error' in r else 'skipped: ' + r['skipped']}")
            continue
        mem = f"{r['peak_memory_gb']:.2f}" if r["peak_memory_gb"] is not None else "n/a"
        xp = plain.get(r["size"]) and r["k"] * plain[r["size"]] / r["ms_per_step"]
        xo = orig.get(r["size"]) and r["k"] * orig[r["size"]] / r["ms_per_step"]
        print(f"{r['variant']:22} {r['size']:>9} {r['k']:>3} {r['ms_per_step']:9.2f} {r['steps_per_s']:8.1f} "
              f"{r['tflops']:8.2f} {mem:>8} {xp or float('nan'):8.2f} {xo or float('nan'):8.2f}")
    for s in report.get("stack", []):
        if "ratio_vs_separate" in s:
            print(f"stack K={s['k']:<3} at {s['size']} ({s['variant']}): {s['ratio_vs_separate']:.2f}x the "
                  f"throughput of {s['k']} separate runs, {s.get('ratio_vs_plain', float('nan')):.2f}x plain")
    for size, a in report.get("agreement", {}).items():
        gaps = ", ".join(f"{v} {g:.3f}" for v, g in a["max_psnr_gap_db"].items())
        print(f"max |dPSNR| at {size} vs {a['reference']} (same seeds; rounding only): {gaps} dB")
    mem = report.get("memory_check")
    if mem and "peak_memory_gb" in mem:
        val = "n/a (CPU)" if mem["peak_memory_gb"] is None else f"{mem['peak_memory_gb']:.2f} GB"
        print(f"memory: {mem['size']} K={mem['k']} ({mem['variant']}): peak {val}"
              + ("" if mem.get("fits") is None else f", fits in {MEMORY_LIMIT_GB:.0f} GB: {mem['fits']}"))
    for c in report.get("checks", []):
        print(f"check: {c['check']} at {c['size']}: max |dPSNR| {c['max_psnr_gap_db']:.2e} dB, "
              f"max rel dloss {c['max_loss_rel_gap']:.2e} -> {'ok' if c['passed'] else 'FAILED'}")
    for name, p in report.get("projection", {}).items():
        print(f"Table I projected ({name}): {p['hours']:.2f} h ({p['set14_sizes_measured']} of 14 image sizes "
              f"measured, the rest from a fit over {p['sizes_measured']} sizes)")
    q = report.get("quality", {}).get("summary")
    if q:
        for loss, v in q["per_loss"].items():
            floor = f" (two seeds of {q['reference']}: {v['seed_gap_db']:+.3f} dB)" if "seed_gap_db" in v else ""
            print(f"quality {loss:6}: {q['candidate']} - {q['reference']} mean peak PSNR "
                  f"{v['gap_db']:+.3f} dB over {len(v['images'])} images{floor}")
        note = "" if q["complete"] else "; incomplete"
        note += "" if q.get("protocol_run") else "; reduced run (crop, slim net or fewer iterations): not evidence"
        print(f"quality verdict: {'PASS' if q['passed'] else 'not passed'} (|gap| <= {QUALITY_TOLERANCE_DB} dB on "
              f"every loss, >= 3 images{note})")
    if report.get("default"):
        print(f"engine default on this device: {report['default']}")


# ---------------------------------------------------------------- main


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--quick", action="store_true",
                   help="GPU preset (~5 min): sizes 512, 256, comic, zebra, barbara; all variants and the compile "
                        "variants at 512, the default candidates elsewhere; K = 4, 16; --speed-budget-s 300")
    p.add_argument("--sizes", help="comma list: N, HxW, Set14 names, or 'set14' (one image per distinct size)")
    p.add_argument("--variants", help=f"comma list of engine variants: {', '.join(VARIANTS)}")
    p.add_argument("--other-variants", help="variants at the sizes after the first (default: --variants; "
                                            "--quick: the default-engine candidates only)")
    p.add_argument("--compile-variants", help="torch.compile variants (timed at --compile-sizes only)")
    p.add_argument("--compile-sizes", help="sizes for the compile variants (default: the first size)")
    p.add_argument("--no-references", action="store_true", help="skip ref-plain and ref-original")
    p.add_argument("--steps", type=int, default=200, help="timed steps per engine/plain measurement")
    p.add_argument("--warmup-steps", type=int, help="untimed steps before the timed window (default: --log-every)")
    p.add_argument("--log-every", type=int,
                   help="metric cadence (PROTOCOL: 100; default 100, or --steps when fewer, or gcd(--steps, 100))")
    p.add_argument("--original-steps", type=int, default=20, help="timed steps of ref-original")
    p.add_argument("--net", choices=sorted(NETS), default="paper")
    p.add_argument("--stack-k", default="4,8,16", help="K values of the stacking check ('' to skip)")
    p.add_argument("--stack-size", default="256")
    p.add_argument("--stack-variants", help="engine variants of the stacking check (the first also runs the "
                                            "memory check)")
    p.add_argument("--memory-size", default="barbara", help="size/image of the K=4 memory check ('' to skip)")
    p.add_argument("--check-size", default="64", help="size of the equivalence checks")
    p.add_argument("--no-checks", action="store_true")
    p.add_argument("--check-tolerance-db", type=float, default=1e-6)
    p.add_argument("--quality", action="store_true",
                   help="the bf16-vs-tf32 quality check: alone, only it; with --quick or --sizes, after the timings")
    p.add_argument("--quality-images", default="face,comic,foreman")
    p.add_argument("--quality-variants", help="reference,candidate (default graphs-tf32,graphs-bf16)")
    p.add_argument("--quality-kernel", default="uniform", choices=["uniform", "radial", "gaussian"])
    p.add_argument("--quality-var", type=float, default=2.0)
    p.add_argument("--quality-iterations", type=int, default=10_000,
                   help="cap on iterations (PROTOCOL: 10,000 LS, 7,000 BP)")
    p.add_argument("--quality-crop", type=int, help="centre-crop the quality images (tests only)")
    p.add_argument("--quality-seed-floor", action="store_true",
                   help="also rerun the reference with other seeds, to show the gap chance alone gives")
    p.add_argument("--resume", help="a quality JSON of an earlier run: keep its finished (image, precision) "
                                     "pairs and run only the others")
    p.add_argument("--budget-s", type=float, help="start no new measurement after this many seconds")
    p.add_argument("--speed-budget-s", type=float,
                   help="start no new timing after this many seconds (default with --quick: 300); a --quality "
                        "check that follows runs until --budget-s")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--out", help="JSON path (default results/bench/<device>-<date>.json)")
    args = p.parse_args(argv)
    if args.log_every is None:  # the timing window runs from one logged iteration to another
        args.log_every = args.steps if 0 < args.steps < 100 else math.gcd(args.steps, 100) or 100
    if args.warmup_steps is None:
        args.warmup_steps = args.log_every
    for name in ("steps", "warmup_steps", "log_every", "original_steps", "quality_iterations"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be >= 1")
    if args.steps % args.log_every or args.warmup_steps % args.log_every:
        raise SystemExit("--steps and --warmup-steps must be multiples of --log-every (the timing window runs "
                         "from one logged iteration to another)")
    split = lambda s: [v.strip() for v in s.split(",") if v.strip()] if s else []  # noqa: E731
    for name in ("sizes", "variants", "other_variants", "compile_variants", "compile_sizes", "quality_images",
                 "quality_variants", "stack_variants"):
        setattr(args, name, split(getattr(args, name)) if getattr(args, name) is not None else None)
    args.stack_k = [int(v) for v in split(args.stack_k)]
    for v in (args.variants or []) + (args.other_variants or []) + (args.compile_variants or []) + \
            (args.quality_variants or []) + (args.stack_variants or []):
        if v not in VARIANTS:
            raise SystemExit(f"unknown variant '{v}'; choose from {', '.join(VARIANTS)}")
    unknown = [i for i in args.quality_images if i not in SET14]
    if unknown:
        raise SystemExit(f"--quality-images: not Set14 names: {unknown}")
    return args


def main(argv=None) -> dict:
    global START
    START = time.perf_counter()
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    kind = device.type if device.type in DEFAULT_VARIANTS else "cpu"
    default_variant = {"cuda": "graphs-tf32", "cpu": "eager-fp32"}[kind]
    assert EngineSettings(**{k: v for k, v in VARIANTS[default_variant].items() if k != "cuda"}).resolve(device) \
        .label() == EngineSettings().resolve(device).label()  # the table's "default" is the engine's
    plan = dict(variants=args.variants or DEFAULT_VARIANTS[kind],
                other_variants=args.other_variants or (OTHER_VARIANTS[kind] if args.quick and not args.variants
                                                       else args.variants or DEFAULT_VARIANTS[kind]),
                compile_variants=args.compile_variants if args.compile_variants is not None else DEFAULT_COMPILE[kind],
                stack_variants=args.stack_variants or STACK_VARIANTS[kind])
    for v in sum(plan.values(), []):
        if VARIANTS[v].get("cuda") and device.type != "cuda":
            raise SystemExit(f"variant {v} needs a CUDA device")
    # --quality alone runs the quality check only; with --quick or --sizes the timings come first
    speed = not args.quality or args.quick or args.sizes is not None
    if args.quick:  # ~5 GPU minutes: start no timing after 300 s
        args.sizes = args.sizes or ["512", "256", "comic", "zebra", "barbara"]
        args.stack_k = args.stack_k if args.stack_k != [4, 8, 16] else [4, 16]
        if args.speed_budget_s is None and (args.quality or args.budget_s is None):
            args.speed_budget_s = 300.0
    plan["sizes"] = expand_sizes(args.sizes or ["512", "256", "set14"])
    plan["compile_sizes"] = args.compile_sizes or plan["sizes"][:1]

    meta = device_info(device)
    meta.update(args=vars(args), net=args.net, default_variant=default_variant,
                label=("GPU" if device.type == "cuda" else "CPU") + f" benchmark on {meta['device_name']}")
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(args.out) if args.out else ROOT / "results" / "bench" / f"{kind}-{stamp}.json"
    report: dict = {"meta": meta, "rows": []}

    def save():
        meta["elapsed_s"] = time.perf_counter() - START
        meta["process_max_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
        if hasattr(os, "getloadavg"):
            meta["load_average_now"] = os.getloadavg()
        write_json(out, report)

    if speed:
        total_budget = args.budget_s
        if args.speed_budget_s is not None:  # the timings' share of the run; the quality check gets the rest
            args.budget_s = args.speed_budget_s if total_budget is None else min(args.speed_budget_s, total_budget)
        run_speed(args, device, report, save, plan)
        args.budget_s = total_budget
        report["default"] = default_variant
    if args.quality:
        run_quality(args, device, report, save)
    save()
    print_table(report)
    if "quality_projection_min" in report and not args.quality:
        print(f"--quality ({', '.join(args.quality_images)}, 2 precisions) projected: "
              f"{report['quality_projection_min']:.1f} min")
    print(f"\nwrote {out}")
    return report


def run_speed(args, device, report: dict, save, plan: dict) -> None:
    """The timings: equivalence checks, engine variants and reference loops per size,
    torch.compile, K-run stacking, barbara's memory; then ratios and the projections."""

    def attempt(what: dict, fn):
        """Run one measurement; an error or the time budget is recorded, not raised."""
        if over_budget(args):
            report["rows"].append({**what, "skipped": "time budget"})
        else:
            try:
                report["rows"].append(fn())
            except Exception as exc:  # a failing variant must not stop the others
                traceback.print_exc()
                report["rows"].append({**what, "error": f"{type(exc).__name__}: {exc}"})
        save()
        last = report["rows"][-1]
        if "ms_per_step" in last:
            print(f"{last['variant']:22} {last['size']:>9} K={last['k']:<3} {last['ms_per_step']:9.2f} ms/step "
                  f"({time.perf_counter() - START:.0f} s)", flush=True)

    if not args.no_checks:
        try:
            report["checks"] = run_checks(args, device)
        except Exception as exc:
            traceback.print_exc()
            report["checks"] = [dict(check="equivalence checks", size=args.check_size, error=str(exc),
                                     max_psnr_gap_db=float("nan"), max_loss_rel_gap=float("nan"), passed=False)]
        save()

    # order = priority, so a time limit cuts the least telling parts: the first size (512:
    # the per-step targets) with torch.compile there (PROTOCOL: the step is memory-bound,
    # so the fused kernels are the likeliest way to 4x), K-run stacking, barbara's memory,
    # then the other sizes (for the Table I projection)
    measured = set()

    def size_block(spec: str, names: list[str]) -> None:
        prob = make_problem(spec, device)
        if prob.label in measured:  # e.g. 512 and the 512x512 Set14 images: time depends on size only
            return
        measured.add(prob.label)
        if not args.no_references:
            for ref in REFERENCES:
                attempt(dict(variant=ref, size=prob.label, k=1), lambda: measure_reference(ref, prob, args, device))
        for v in names:
            attempt(dict(variant=v, size=prob.label, k=1), lambda: measure_engine(v, prob, 1, args, device))

    sizes = plan["sizes"]
    size_block(sizes[0], plan["variants"])

    for spec in plan["compile_sizes"]:
        prob = make_problem(spec, device)
        for v in plan["compile_variants"]:
            attempt(dict(variant=v, size=prob.label, k=1), lambda: measure_engine(v, prob, 1, args, device))
        del prob

    stack_variant = plan["stack_variants"][0]
    if args.stack_k:
        prob = make_problem(args.stack_size, device)
        have = lambda v, k: any(r.get("variant") == v and r.get("size") == prob.label and r.get("k") == k  # noqa
                                and "ms_per_step" in r for r in report["rows"])
        for v in plan["stack_variants"]:
            if not have(v, 1):
                attempt(dict(variant=v, size=prob.label, k=1), lambda: measure_engine(v, prob, 1, args, device))
            for k in args.stack_k:
                attempt(dict(variant=v, size=prob.label, k=k), lambda: measure_engine(v, prob, k, args, device))
        del prob

    if args.memory_size:
        prob = make_problem(args.memory_size, device)
        attempt(dict(variant=stack_variant, size=prob.label, k=4),
                lambda: measure_engine(stack_variant, prob, 4, args, device))
        r = report["rows"][-1]
        report["memory_check"] = dict(size=prob.label, image=prob.image, k=4, variant=stack_variant,
                                      peak_memory_gb=r.get("peak_memory_gb"), error=r.get("error"),
                                      fits=None if r.get("peak_memory_gb") is None
                                      else r["peak_memory_gb"] <= MEMORY_LIMIT_GB)
        del prob

    for spec in sizes[1:]:
        size_block(spec, plan["other_variants"])

    ok = [r for r in report["rows"] if "ms_per_step" in r]
    single = {(r["variant"], r["size"]): r["ms_per_step"] for r in ok if r["k"] == 1}
    report["stack"] = []
    for r in ok:
        if r["k"] > 1 and (r["variant"], r["size"]) in single:
            s = dict(variant=r["variant"], size=r["size"], k=r["k"], ms_per_step=r["ms_per_step"],
                     ratio_vs_separate=r["k"] * single[(r["variant"], r["size"])] / r["ms_per_step"])
            if ("ref-plain", r["size"]) in single:
                s["ratio_vs_plain"] = r["k"] * single[("ref-plain", r["size"])] / r["ms_per_step"]
            report["stack"].append(s)
    engine_names = list(dict.fromkeys(plan["variants"] + plan["other_variants"] + plan["compile_variants"]))
    report["ratios"] = {size: ratios(ok, size, engine_names) for size in dict.fromkeys(r["size"] for r in ok)}
    report["agreement"] = curve_agreement(ok)
    report["projection"] = project_table1(ok)
    k4 = [(r["pixels"], r["ms_per_step"]) for r in ok if r["k"] == 4 and r["variant"] == stack_variant]
    if k4:  # what --quality will cost here: per image and variant, 10,000 steps of K = 4
        fit, _ = fit_time(k4)
        px = [h * w for n, (h, w) in set14_sizes().items() if n in args.quality_images]
        report["quality_projection_min"] = 2 * sum(max(ITERATIONS.values()) * fit(p) / 1e3 for p in px) / 60
    save()


if __name__ == "__main__":
    main()
