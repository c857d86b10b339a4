"""What the benchmark measures: networks, engine variants, the reference loops' names,
issue 6's targets and the time budget."""

from __future__ import annotations

import time

from bpdip import paper
from bpdip.engine import EngineSettings

NETS = {
    "paper": {},  # PROTOCOL "Network": 5 scales of 128/128/4 channels
    "small": dict(channels_down=(16,) * 4, channels_up=(16,) * 4, channels_skip=(4,) * 4),  # conf/model/small.yaml
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
    "compile-bf16": dict(precision="bf16", compile=True, cuda_graphs=False),
    "compile-bf16-cl": dict(precision="bf16", compile=True, cuda_graphs=False, channels_last=True, cuda=True),
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
# kernel breakdown at the first size (bpdip.bench.profile): PROTOCOL's plain bf16 step, and
# the same step compiled (which BatchNorm / padding / layout passes did inductor fuse?)
PROFILE_VARIANTS = {"cuda": ["eager-bf16", "compile-bf16-cl"], "cpu": []}

# PROTOCOL "Optimisation": iterations per loss (bpdip.paper holds them, and the TV weights)
ITERATIONS = paper.ITERATIONS
SETTINGS_PER_LOSS = len(paper.KERNELS) * len(paper.NOISE_VARS)  # Table I: 3 kernels x 3 noise levels
TABLE1_ITERS_PER_IMAGE = SETTINGS_PER_LOSS * sum(ITERATIONS.values())  # 306,000; x 14 images = 4.28M
QUALITY_TOLERANCE_DB = 0.1  # issue 6: bf16 peak PSNR within 0.1 dB of TF32, Set14 average
MEMORY_LIMIT_GB = 40.0  # issue 6: barbara with K = 4 fits in 40 GB
STOPPING_OVERHEAD_LIMIT = 0.05  # issue 10: the online stopping rules add at most 5 % to a step
STREAMS_OVERHEAD_LIMIT = 0.03  # issue 20: the clean and average output streams add at most 3 % to a step
# the variant whose step the stopping rules (and the streams) are timed on (the GPU default, the CPU default)
STOPPING_VARIANT = {"cuda": "graphs-tf32", "cpu": "eager-fp32"}


def tv_weight(loss: str, kernel: str) -> float:
    """PROTOCOL "Losses": the TV weight of a loss for a kernel (0 without TV)."""
    return paper.TV_WEIGHTS.get((loss, kernel), 0.0)


def engine_settings(variant: str, k: int = 1) -> EngineSettings:
    """The engine options of a variant, K runs stacked."""
    # a variant's layout is its name's: NCHW unless it says -cl (not the engine's "auto")
    opts = {"channels_last": False, **{key: v for key, v in VARIANTS[variant].items() if key != "cuda"}}
    return EngineSettings(**opts, stack=k)


def over_budget(args) -> bool:
    """Start no new measurement once ``args.budget_s`` seconds have passed since ``args.start``."""
    return args.budget_s is not None and time.perf_counter() - args.start > args.budget_s
