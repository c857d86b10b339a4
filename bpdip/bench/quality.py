"""The bf16-vs-TF32 quality check that decides the GPU default precision (issue 6): the
four losses of one image stacked (K = 4), full protocol iterations, per precision."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from bpdip.bench.config import ITERATIONS, NETS, QUALITY_TOLERANCE_DB, engine_settings, over_budget, tv_weight
from bpdip.bench.measure import as_tensor
from bpdip.data import SET14_DIR, center_crop, load_image
from bpdip.engine import StackedLoss, build_stacked
from bpdip.losses import make_loss
from bpdip.loop import LoopSettings, restore
from bpdip.models import SkipNet
from bpdip.physics import Blur, degrade, derive_seed, make_kernel, noise_sigma


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
        yt, xt = as_tensor(y, device), as_tensor(x, device)
        sigma = noise_sigma(args.quality_var)
        fns = [make_loss(name.split("_")[0], blur, yt, sigma, tv_weight(name, args.quality_kernel))
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
            t0 = time.perf_counter()
            results = restore(build_stacked(lambda: SkipNet(**NETS[args.net]), run_seeds), StackedLoss(fns),
                              yt.expand(4, -1, -1, -1), losses, LoopSettings(iterations=n_iter, log_every=100,
                                                                            progress=False),
                              x_true=xt.expand(4, -1, -1, -1), seed=run_seeds, device=device,
                              engine=engine_settings(variant, 4))
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
