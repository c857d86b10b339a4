"""Where one training step's time goes (torch.profiler), per kernel and per category, to
compare with PROTOCOL's breakdown ("Cost, measured": BatchNorm ~40 %, layout conversions
~10 %, padding ~8 %, upsampling ~6 %, convolutions ~10 % of a plain bf16 step at 512x512).

On a GPU the device time of each kernel is summed (the kernels of an eager step, or the
fused Triton kernels of a compiled one; a replayed CUDA graph is not broken down, so the
profiled variants run without graphs); on the CPU the self time of each operator.
"""

from __future__ import annotations

import torch
from torch.profiler import ProfilerActivity, profile

from bpdip.bench.config import NETS, engine_settings
from bpdip.bench.measure import Problem, sync
from bpdip.engine import TrainStep, backend_flags, make_optimizer
from bpdip.loop import seeded_model
from bpdip.models import SkipNet

# first match wins; names of cuDNN/cuBLAS/ATen/Triton kernels and of ATen operators
CATEGORIES = (
    ("batchnorm", ("batch_norm", "batchnorm", "bn_fw", "bn_bw", "welford")),
    ("adam", ("adam", "foreach", "multi_tensor")),
    ("fft", ("fft", "cufft", "regular_fft", "vector_fft")),
    ("padding", ("reflection_pad", "reflection")),
    ("upsampling", ("upsample",)),
    ("activation", ("leaky_relu", "sigmoid")),
    ("layout", ("nchwtonhwc", "nhwctonchw", "copy_", "contiguous", "transpose")),
    ("convolution", ("conv", "cudnn", "xmma", "gemm", "wgrad", "dgrad", "implicit")),
    ("fused (triton)", ("triton",)),
)


def category(name: str) -> str:
    low = name.lower()
    for label, keys in CATEGORIES:
        if any(k in low for k in keys):
            return label
    return "other"


def profile_step(variant: str, prob: Problem, args, device, steps: int = 10, top: int = 15) -> dict:
    """Profile ``steps`` training steps of ``variant`` (K = 1) after a few warm-up steps."""
    engine = engine_settings(variant).resolve(device)
    if engine.cuda_graphs:
        raise ValueError(f"{variant}: profile a variant without CUDA graphs (a replay is one opaque launch)")
    model = seeded_model(lambda: SkipNet(**NETS[args.net]), 1).to(device).train()
    h, w = prob.hw
    z = torch.rand(1, 32, h, w, device=device, generator=torch.Generator(device=device).manual_seed(1)) * 0.1
    opt = make_optimizer(model.parameters(), 0.01, engine, device)
    step = TrainStep(model, prob.loss, z, 0.03, opt, engine, device)
    cuda = device.type == "cuda"
    with backend_flags(engine):
        for _ in range(3):  # compilation, cuDNN autotuning, lazy Adam state
            step.noise.normal_()
            step()
        sync(device)
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        with profile(activities=activities) as prof:
            for _ in range(steps):
                step.noise.normal_()
                step()
            sync(device)
    events = []
    for e in prof.key_averages():
        t = e.self_device_time_total if cuda else e.self_cpu_time_total  # microseconds
        if t > 0 and (not cuda or str(getattr(e, "device_type", "")).endswith("CUDA")):
            events.append((e.key, t / steps / 1e3, e.count / steps))
    total = sum(ms for _, ms, _ in events)
    by_category: dict[str, float] = {}
    for name, ms, _ in events:
        by_category[category(name)] = by_category.get(category(name), 0.0) + ms
    events.sort(key=lambda ev: -ev[1])
    return {
        "variant": variant, "engine": engine.label(), "size": prob.label, "steps": steps,
        "clock": "device (GPU kernels)" if cuda else "CPU (operator self time)",
        "ms_per_step": total,
        "categories": {k: {"ms": v, "share": v / total if total else 0.0}
                       for k, v in sorted(by_category.items(), key=lambda kv: -kv[1])},
        "top": [{"name": n[:120], "ms": ms, "calls": calls, "category": category(n)} for n, ms, calls in events[:top]],
    }
