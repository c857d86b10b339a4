"""The bf16-vs-TF32 quality check that decides the GPU default precision (issue 6): the
four losses of one image stacked (K = 4), full protocol iterations, per precision."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from bpdip import curves
from bpdip.bench.config import ITERATIONS, NETS, QUALITY_TOLERANCE_DB, engine_settings, over_budget, tv_weight
from bpdip.bench.measure import as_tensor
from bpdip.data import SET14_DIR, center_crop, load_image
from bpdip.engine import StackedLoss, build_stacked
from bpdip.losses import make_loss
from bpdip.loop import Data, LoopSettings, RunSpec, restore
from bpdip.models import SkipNet
from bpdip.physics import Blur, degrade, derive_seed, make_kernel, noise_sigma


def run_quality(args, device, report: dict, save) -> None:
    """Four losses of one image stacked (K = 4), full protocol iterations, per precision.

    A BP network stops counting at 7,000 iterations: its curve is read up to there (the
    stacked networks are independent, so the later steps of the others do not matter).
    """
    variants = args.quality_variants or (["graphs-tf32", "graphs-bf16"] if device.type == "cuda"
                                         else ["eager-fp32", "eager-bf16"])
    losses = list(getattr(args, "quality_losses", None) or ITERATIONS)
    seeds_run = list(getattr(args, "quality_seeds", None) or [0])
    k = make_kernel(args.quality_kernel)
    setup = {"variants": variants, "kernel": args.quality_kernel, "noise_var": args.quality_var, "net": args.net,
             "crop": args.quality_crop, "iterations": args.quality_iterations,
             "seed_floor": args.quality_seed_floor}
    if losses != list(ITERATIONS) or seeds_run != [0]:  # older JSONs (all four losses, seed 0) lack the keys
        setup.update(losses=losses, seeds=seeds_run)
    runs = report.setdefault("quality", {**setup, "images": args.quality_images, "runs": []})["runs"]
    done = set()
    if args.resume:  # finished (image, precision) pairs of an earlier run, e.g. one cut by a time limit
        for r in resumed_quality_runs(args.resume, setup):
            runs.append(r)
            done.add((r["image"], r["variant"], r.get("seed", 0)))
    for seed, image in [(s, i) for s in seeds_run for i in args.quality_images]:
        x = center_crop(load_image(SET14_DIR / f"{image}.png"), args.quality_crop)
        # seed s draws its own noise and networks, as the grid's seeds do (seed 0: the original derivation)
        y = degrade(x, k, args.quality_var, derive_seed(seed, image, args.quality_kernel, args.quality_var, "noise"))
        blur = Blur(k, x.shape[:2], device=device)
        yt, xt = as_tensor(y, device), as_tensor(x, device)
        sigma = noise_sigma(args.quality_var)
        fns = [make_loss(name.split("_")[0], blur, yt, sigma, tv_weight(name, args.quality_kernel))
               for name in losses]
        budget = {name: min(ITERATIONS[name], args.quality_iterations) for name in losses}
        n_iter = max(budget.values())
        seeds = [derive_seed(seed, image, name, "init") % 2**31 for name in losses]
        plan = [(v, v, seeds) for v in variants]
        if args.quality_seed_floor:  # the reference again with other seeds: the gap chance alone makes
            plan.append((f"{variants[0]}:reseeded", variants[0], [s + 1 for s in seeds]))
        for label, variant, run_seeds in plan:
            if (image, label, seed) in done:
                continue
            if over_budget(args):
                runs.append(dict(image=image, variant=label, seed=seed, skipped="time budget"))
                continue
            t0 = time.perf_counter()
            results = restore(build_stacked(lambda: SkipNet(**NETS[args.net]), run_seeds), StackedLoss(fns),
                              Data(yt.expand(len(losses), -1, -1, -1), losses,
                                   x_true=xt.expand(len(losses), -1, -1, -1)),
                              RunSpec(LoopSettings(iterations=n_iter, progress=False,
                                                   log_every=getattr(args, "quality_log_every", 100)),
                                      seed=run_seeds, device=device, engine=engine_settings(variant, len(losses))))
            for name, res in zip(losses, results):
                curve = [r for r in res.curve if r["iteration"] < budget[name]]
                peak = curves.best(curve, "psnr")
                runs.append(dict(image=image, seed=seed, size=f"{x.shape[0]}x{x.shape[1]}", variant=label, loss=name,
                                 iterations=budget[name], status=res.status,
                                 peak_psnr=peak["psnr"] if peak else None,
                                 peak_iteration=peak["iteration"] if peak else None,
                                 last_psnr=curve[-1]["psnr"] if curve else None,
                                 seconds=time.perf_counter() - t0))
            report["quality"]["summary"] = quality_summary(runs, variants, losses)
            if len(variants) > 2:  # e.g. fp32, bf16, compile: each candidate against the reference
                report["quality"]["candidates"] = {v: quality_summary(runs, [variants[0], v], losses)
                                                   for v in variants[1:]}
            # only the protocol's run is evidence for the default: full images, paper net, all iterations
            protocol = (args.quality_crop is None and args.net == "paper"
                        and args.quality_iterations >= max(ITERATIONS.values()))
            report["quality"]["summary"]["protocol_run"] = protocol
            report["quality"]["summary"]["passed"] &= protocol
            if not protocol:  # a CPU-scale check (issue 21): tolerance 0.1 dB or the seed spread if larger
                report["quality"]["cpu_scale"] = cpu_scale_verdict(runs, variants, losses)
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
            pairs.setdefault((r["image"], r["variant"], r.get("seed", 0)), []).append(r)
    n_losses = len(setup.get("losses") or ITERATIONS)
    return [{**r, "resumed_from": str(path)} for group in pairs.values()
            if len(group) == n_losses and all(r["status"] == "complete" for r in group) for r in group]


def _mean_peaks(runs, loss, a, b):
    """Peaks of ``a`` and ``b`` over the (image, seed) pairs both have (older JSONs: seed 0)."""
    peaks = {v: {(r["image"], r.get("seed", 0)): r["peak_psnr"] for r in runs if r.get("loss") == loss
                 and r["variant"] == v and r.get("peak_psnr") is not None} for v in (a, b)}
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
        pairs, a, b = _mean_peaks(runs, loss, ref, other)
        if not pairs:
            continue
        diffs = np.array(b) - np.array(a)
        out["per_loss"][loss] = dict(images=sorted({i for i, _ in pairs}), seeds=sorted({s for _, s in pairs}),
                                     pairs=len(pairs), mean_peak_reference=float(np.mean(a)),
                                     mean_peak_candidate=float(np.mean(b)), gap_db=float(np.mean(diffs)),
                                     max_abs_pair_gap_db=float(np.max(np.abs(diffs))),
                                     pair_gap_sd_db=float(np.std(diffs, ddof=1)) if len(diffs) > 1 else None)
        seeded, a, c = _mean_peaks(runs, loss, ref, f"{ref}:reseeded")
        if seeded:
            out["per_loss"][loss]["seed_gap_db"] = float(np.mean(c) - np.mean(a))
    gaps = [v["gap_db"] for v in out["per_loss"].values()]
    counts = [len(v["images"]) for v in out["per_loss"].values()]
    out["complete"] = len(gaps) == len(losses) and min(counts, default=0) >= 3
    out["passed"] = bool(out["complete"] and max(abs(g) for g in gaps) <= QUALITY_TOLERANCE_DB)
    return out


def seed_spread(runs: list[dict], variant: str, loss: str) -> float | None:
    """The reference's seed spread as the report measures a cell's: the sample s.d. over
    seeds of the mean-over-images peak PSNR (images that every seed has); None for < 2 seeds."""
    by_seed: dict[int, dict[str, float]] = {}
    for r in runs:
        if r.get("loss") == loss and r["variant"] == variant and r.get("peak_psnr") is not None:
            by_seed.setdefault(r.get("seed", 0), {})[r["image"]] = r["peak_psnr"]
    if len(by_seed) < 2:
        return None
    common = set.intersection(*(set(v) for v in by_seed.values()))
    if not common:
        return None
    return float(np.std([np.mean([v[i] for i in common]) for v in by_seed.values()], ddof=1))


def cpu_scale_verdict(runs: list[dict], variants: list[str], losses: list[str]) -> dict:
    """Each candidate against the reference at CPU scale (issue 21): it passes when every
    loss's mean gap is within the larger of 0.1 dB and that loss's seed spread, and the
    verdict says which of the two bounds applied."""
    out = {}
    for cand in variants[1:]:
        summ = quality_summary(runs, [variants[0], cand], losses)
        per_loss = {}
        for loss, v in summ["per_loss"].items():
            spread = seed_spread(runs, variants[0], loss)
            bound = max(QUALITY_TOLERANCE_DB, spread or 0.0)
            per_loss[loss] = dict(gap_db=v["gap_db"], seed_spread_db=spread, bound_db=bound,
                                  bound_is="seed spread" if bound > QUALITY_TOLERANCE_DB else "0.1 dB",
                                  within=abs(v["gap_db"]) <= bound)
        out[cand] = dict(per_loss=per_loss, complete=summ["complete"],
                         passed=bool(summ["complete"] and all(p["within"] for p in per_loss.values())))
    return out
