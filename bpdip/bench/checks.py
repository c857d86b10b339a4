"""Agreement on the device: the CUDA-graph step against the eager one, K stacked networks
against K separate runs (float64), and every timed run against the strictest variant."""

from __future__ import annotations

import torch

from bpdip.bench.config import NETS, engine_settings
from bpdip.bench.measure import make_problem
from bpdip.engine import StackedLoss, build_stacked
from bpdip.loop import Data, LoopSettings, RunSpec, restore
from bpdip.models import SkipNet


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
        model = build_stacked(lambda: SkipNet(**net), seeds).double()
        y = torch.cat([p.y for p in probs])
        x = torch.cat([p.x for p in probs])
        return restore(model, StackedLoss([p.loss for p in probs]), Data(y, [f"r{i}" for i in range(k)], x_true=x),
                       RunSpec(settings, seed=seeds, device=device, engine=engine_settings(variant, k)))

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
