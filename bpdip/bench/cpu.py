"""The CPU matrix (issue 21): every CPU engine variant of one training step, timed A/B
alternated in one process, so that the ratios to fp32 eager hold on a noisy machine.

For each (network, size), every variant gets its own network (same seed), optimiser and
:class:`bpdip.engine.TrainStep` on the same problem (BP-TV, uniform kernel, var 2: the
costliest loss, with its FFTs). After each step object is warm (torch.compile's C++
build happens here, and is timed separately as ``compile_s``), the variants are timed in
``rounds`` rounds; in each round every variant runs ``steps`` steps in turn. A variant's
``ms_per_step`` is its median over the rounds, and its ``ratio`` (speed-up over fp32
eager at the base thread count) is the median over the rounds of the per-round ratio, so
a load spike that hits one round shifts both sides of that round's ratio alike.

Threads are part of a variant: ``@2`` runs with 2 torch threads, everything else with
``threads`` (the CPU presets' 1 thread per job).
"""

from __future__ import annotations

import dataclasses
import statistics
import time

import torch

from bpdip.bench.config import NETS
from bpdip.bench.measure import make_problem
from bpdip.engine import EngineSettings, TrainStep, backend_flags, make_optimizer
from bpdip.loop import seeded_model
from bpdip.models import SkipNet

# issue 21's rows: (net, size)
CPU_PROBLEMS = (("small", 96), ("paper", 128), ("paper", 256))
# name -> (engine options, threads or None for the base count)
CPU_VARIANTS = {
    "fp32": (dict(precision="fp32"), None),
    "bf16": (dict(precision="bf16"), None),
    "fp32-cl": (dict(precision="fp32", channels_last=True), None),
    "bf16-cl": (dict(precision="bf16", channels_last=True), None),
    "compile-fp32": (dict(precision="fp32", compile=True), None),
    "compile-bf16": (dict(precision="bf16", compile=True), None),
    "compile-bf16-cl": (dict(precision="bf16", compile=True, channels_last=True), None),
    "fp32@2": (dict(precision="fp32"), 2),
    "bf16@2": (dict(precision="bf16"), 2),
    "compile-bf16@2": (dict(precision="bf16", compile=True), 2),
}
BASE = "fp32"


def _step(net: str, prob, engine: EngineSettings) -> TrainStep:
    model = seeded_model(lambda: SkipNet(**NETS[net]), 1).train()
    h, w = prob.hw
    z = torch.rand(1, 32, h, w, generator=torch.Generator().manual_seed(1)) * 0.1
    opt = make_optimizer(model.parameters(), 0.01, engine, torch.device("cpu"))
    # TrainStep's own compile resets dynamo (a fresh run), which would throw away the other
    # compiled variants of this block: compile here instead (the matrix resets once per problem)
    step = TrainStep(model, prob.loss, z, 0.03, opt, dataclasses.replace(engine, compile=False),
                     torch.device("cpu"))
    if engine.compile:
        step.forward = torch.compile(model)
    return step


def _run(step: TrainStep, n: int, gen: torch.Generator) -> None:
    for _ in range(n):
        step.noise.normal_(generator=gen)
        step()


def time_problem(net: str, size: int, variants: list[str], steps: int, rounds: int, threads: int) -> dict:
    """One (network, size) block of the matrix: rows with ms/step, ratio and compile time."""
    torch._dynamo.reset()
    prob = make_problem(str(size), torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    steps_of, warm_s = {}, {}
    for v in variants:
        opts, t = CPU_VARIANTS[v]
        engine = EngineSettings(cuda_graphs=False, **{"channels_last": False, **opts}).resolve("cpu")
        torch.set_num_threads(t or threads)
        st = _step(net, prob, engine)
        t0 = time.perf_counter()
        with backend_flags(engine):
            _run(st, 2, gen)  # compilation (inductor's C++ build), lazy Adam state
        warm_s[v] = time.perf_counter() - t0
        steps_of[v] = (st, engine)
    times: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(rounds):
        for v in variants:
            st, engine = steps_of[v]
            torch.set_num_threads(CPU_VARIANTS[v][1] or threads)
            with backend_flags(engine):
                t0 = time.perf_counter()
                _run(st, steps, gen)
                times[v].append((time.perf_counter() - t0) / steps * 1e3)
    torch.set_num_threads(threads)
    base = times.get(BASE)
    rows = []
    for v in variants:
        opts, t = CPU_VARIANTS[v]
        ratio = statistics.median(b / m for b, m in zip(base, times[v])) if base else None
        rows.append({
            "net": net, "size": f"{size}x{size}", "variant": v, "engine": steps_of[v][1].label(),
            "threads": t or threads, "ms_per_step": statistics.median(times[v]), "ms_rounds": times[v],
            "speedup_vs_fp32": ratio, "warm_s": warm_s[v], "steps": steps, "rounds": rounds,
        })
    return {"net": net, "size": size, "rows": rows}


def steps_for(net: str, size: int, budget_ms: float = 1500.0) -> int:
    """Steps per timed window: about ``budget_ms`` of fp32 work (at least 2)."""
    guess = {"small": 16.0, "slim": 2.0}.get(net, 285.0 * (size / 128) ** 2)
    return max(2, int(budget_ms // guess))


def run_matrix(problems=CPU_PROBLEMS, variants=None, rounds: int = 5, threads: int = 1, save=None,
               budget_ms: float = 1500.0) -> list[dict]:
    """Every problem's block; ``save(blocks)`` after each block (a time limit keeps them)."""
    variants = list(variants or CPU_VARIANTS)
    blocks = []
    for net, size in problems:
        blocks.append(time_problem(net, size, variants, steps_for(net, size, budget_ms), rounds, threads))
        if save is not None:
            save(blocks)
    return blocks


def print_matrix(blocks: list[dict]) -> None:
    for b in blocks:
        print(f"\n{b['net']} net, {b['size']}x{b['size']}")
        print(f"{'variant':<16}{'threads':>8}{'ms/step':>10}{'x fp32':>8}{'warm s':>8}")
        for r in b["rows"]:
            ratio = f"{r['speedup_vs_fp32']:.2f}" if r["speedup_vs_fp32"] else "-"
            print(f"{r['variant']:<16}{r['threads']:>8}{r['ms_per_step']:>10.1f}{ratio:>8}{r['warm_s']:>8.1f}")
