#!/usr/bin/env python
"""Benchmark of the DIP training step: engine variants against two reference loops.

One run measures, side by side on one device:

- ``ref-original``: a loop like the authors' (strict IEEE fp32, eager, one network,
  PSNR and SSIM through scikit-image on the CPU every step);
- ``ref-plain``: plain eager PyTorch (TF32, one network, scikit-image metrics on the CPU
  every ``--log-every`` steps);
- engine variants (``bpdip.loop.RunSpec.engine``: precision, CUDA graphs,
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

    python scripts/bench.py --quick --out results/bench/gpu.json     # on a GPU; no new timing after 300 s
    python scripts/bench.py --quality --out results/bench/quality.json
    python scripts/bench.py --quick --quality --budget-s 480 --out gpu.json   # both in one GPU call
    python scripts/bench.py --device cpu --net slim --sizes 48 --steps 3 --memory-size 48 --stack-size 48
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import resource
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # runs from a checkout where bpdip is not installed (GPU machine)

import torch  # noqa: E402

from bpdip.bench.checks import curve_agreement, run_checks  # noqa: E402
from bpdip.bench.config import (  # noqa: E402
    DEFAULT_COMPILE, DEFAULT_VARIANTS, ITERATIONS, MEMORY_LIMIT_GB, NETS, OTHER_VARIANTS, PROFILE_VARIANTS,
    REFERENCES, STACK_VARIANTS, STOPPING_OVERHEAD_LIMIT, STOPPING_VARIANT, TABLE1_ITERS_PER_IMAGE, VARIANTS,
    engine_settings, over_budget,
)
from bpdip.bench.measure import expand_sizes, make_problem, measure_engine, measure_reference, set14_sizes  # noqa
from bpdip.bench.profile import profile_step  # noqa: E402
from bpdip.bench.quality import quality_summary, run_quality  # noqa: E402
from bpdip.bench.summary import device_info, fit_time, print_table, project_table1, ratios  # noqa: E402
from bpdip.data import SET14  # noqa: E402
from bpdip.engine import EngineSettings  # noqa: E402
from bpdip.loop import resolve_device  # noqa: E402
from bpdip.records import write_json  # noqa: E402

__all__ = ["NETS", "TABLE1_ITERS_PER_IMAGE", "main", "make_problem", "parse_args", "print_table", "quality_summary"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--quick", action="store_true",
                   help="GPU preset: sizes 512, 256, comic, zebra, barbara; all variants and the compile "
                        "variants at 512, the default candidates elsewhere; K = 4, 16; --speed-budget-s 300")
    p.add_argument("--sizes", help="comma list: N, HxW, Set14 names, or 'set14' (one image per distinct size)")
    p.add_argument("--variants", help=f"comma list of engine variants: {', '.join(VARIANTS)}")
    p.add_argument("--other-variants", help="variants at the sizes after the first (default: --variants; "
                                            "--quick: the default-engine candidates only)")
    p.add_argument("--compile-variants", help="torch.compile variants (timed at --compile-sizes only)")
    p.add_argument("--compile-sizes", help="sizes for the compile variants (default: the first size)")
    p.add_argument("--no-references", action="store_true", help="skip ref-plain and ref-original")
    p.add_argument("--no-stopping", action="store_true",
                   help="skip the stopping rules' overhead row (the default variant with and without them)")
    p.add_argument("--no-streams", action="store_true",
                   help="skip the output streams' overhead row (issue 20: the default variant without them)")
    p.add_argument("--steps", type=int, default=200, help="timed steps per engine/plain measurement")
    p.add_argument("--warmup-steps", type=int, help="untimed steps before the timed window (default: --log-every)")
    p.add_argument("--log-every", type=int,
                   help="metric cadence (PROTOCOL: 100; default 100, or --steps when fewer, or gcd(--steps, 100))")
    p.add_argument("--original-steps", type=int, default=20, help="timed steps of ref-original")
    p.add_argument("--net", choices=sorted(NETS), default="paper")
    p.add_argument("--profile", help="comma list of variants (without CUDA graphs) whose step is broken down "
                                      "by torch.profiler at the first size ('' for none; GPU default: eager-bf16, "
                                      "compile-bf16-cl)")
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
    p.add_argument("--quality-losses", help="comma list of losses (default: ls,ls_tv,bp,bp_tv stacked)")
    p.add_argument("--quality-seeds", default="0", help="comma list of run seeds (each draws its own noise and nets)")
    p.add_argument("--quality-log-every", type=int, default=100, help="PSNR cadence of the quality runs")
    p.add_argument("--quality-seed-floor", action="store_true",
                   help="also rerun the reference with other seeds, to show the gap chance alone gives")
    p.add_argument("--resume", help="a quality JSON of an earlier run: keep its finished (image, precision) "
                                     "pairs and run only the others")
    p.add_argument("--budget-s", type=float, help="start no new measurement after this many seconds")
    p.add_argument("--speed-budget-s", type=float,
                   help="start no new timing after this many seconds (default with --quick: 300); a --quality "
                        "check that follows runs until --budget-s")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--cpu-matrix", action="store_true",
                   help="issue 21's CPU rows only (bpdip/bench/cpu.py): small net 96 px, paper net 128 and 256 px; "
                        "fp32, bf16, compile, channels_last, 1 vs 2 threads, A/B alternated; with --profile, the "
                        "step's torch.profiler table for those variants at each problem")
    p.add_argument("--cpu-problems", help="net:size comma list for --cpu-matrix (default small:96,paper:128,paper:256)")
    p.add_argument("--cpu-variants", help="variants for --cpu-matrix (default: all of bpdip.bench.cpu.CPU_VARIANTS)")
    p.add_argument("--rounds", type=int, default=1,
                   help="A/B rounds of --cpu-matrix and of the streams' overhead pair (issue 21 used 5)")
    p.add_argument("--out", help="JSON path (default results/bench/<device>-<date>.json)")
    p.add_argument("--baselines", action="store_true", help="only issue 30's rows: seconds per image of the "
                   "classical baselines (BM3D, valid Richardson-Lucy, all of a record's; bpdip.bench.baselines)")
    p.add_argument("--baselines-sizes", default="96", help="comma list of image sizes for --baselines")
    p.add_argument("--boundary", action="store_true", help="only issue 19's row: ms/step of boundary=valid vs "
                   "circular (paper net 128 px, small net 96 px; bpdip.bench.boundary); --boundary-sizes for a smoke")
    p.add_argument("--boundary-sizes", help="comma list NET:SIZE replacing paper:128,small:96 (e.g. slim:24)")
    p.add_argument("--boundary-accuracy", action="store_true", help="with --boundary: how exact BP's value and "
                   "gradient are at each --boundary-tols (replayed residuals of a real run; no timing)")
    p.add_argument("--boundary-tols", help="comma list of CG tolerances of the valid rows (default: boundary.cg_tol's, "
                   "bpdip.physics.cg.CG_TOL)")
    p.add_argument("--threads-row", action="store_true",
                   help="only issue 29's row: whole run.py runs with 1 vs 2 threads, quiet and with a second busy "
                        "process (small net 96 px, paper net 128 and 256 px; bpdip.bench.threads)")
    p.add_argument("--threads-problems", help="net:size:iterations comma list replacing the row's problems "
                                              "(e.g. slim:24:4 for a smoke)")
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
                 "quality_variants", "stack_variants", "profile", "quality_losses", "quality_seeds"):
        setattr(args, name, split(getattr(args, name)) if getattr(args, name) is not None else None)
    args.stack_k = [int(v) for v in split(args.stack_k)]
    args.quality_seeds = [int(v) for v in args.quality_seeds or [0]]
    for v in (args.variants or []) + (args.other_variants or []) + (args.compile_variants or []) + \
            (args.quality_variants or []) + (args.stack_variants or []) + (args.profile or []):
        if v not in VARIANTS:
            raise SystemExit(f"unknown variant '{v}'; choose from {', '.join(VARIANTS)}")
    for v in args.profile or []:
        if VARIANTS[v].get("cuda_graphs"):
            raise SystemExit(f"--profile {v}: choose a variant without CUDA graphs (a replay is one opaque launch)")
    unknown = [i for i in args.quality_images if i not in SET14]
    if unknown:
        raise SystemExit(f"--quality-images: not Set14 names: {unknown}")
    return args


def main(argv=None) -> dict:
    start = time.perf_counter()
    args = parse_args(argv)
    args.start = start  # the clock of --budget-s (bpdip.bench.config.over_budget)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.threads_row:
        return _threads_row(args)
    device = resolve_device(args.device)
    if args.baselines:
        return _baselines(args, device)
    if args.boundary:
        return _boundary(args, device)
    kind = device.type if device.type in DEFAULT_VARIANTS else "cpu"
    default_variant = {"cuda": "graphs-tf32", "cpu": "eager-fp32"}[kind]
    # the table's "default" is the engine's own default on this device
    assert engine_settings(default_variant).resolve(device).label() == EngineSettings().resolve(device).label()
    plan = dict(variants=args.variants or DEFAULT_VARIANTS[kind],
                other_variants=args.other_variants or (OTHER_VARIANTS[kind] if args.quick and not args.variants
                                                       else args.variants or DEFAULT_VARIANTS[kind]),
                compile_variants=args.compile_variants if args.compile_variants is not None else DEFAULT_COMPILE[kind],
                stack_variants=args.stack_variants or STACK_VARIANTS[kind],
                profile_variants=args.profile if args.profile is not None else PROFILE_VARIANTS[kind])
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
        meta["elapsed_s"] = time.perf_counter() - args.start
        meta["process_max_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
        if hasattr(os, "getloadavg"):
            meta["load_average_now"] = os.getloadavg()
        write_json(out, report)

    if args.cpu_matrix:
        run_cpu_matrix(args, report, save)
        save()
        print(f"\nwrote {out}")
        return report
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


def run_cpu_matrix(args, report: dict, save) -> None:
    """--cpu-matrix: bpdip.bench.cpu's A/B-alternated CPU rows, then the optional profiles."""
    from bpdip.bench.cpu import CPU_PROBLEMS, print_matrix, run_matrix

    problems = CPU_PROBLEMS
    if args.cpu_problems:
        problems = [(p.split(":")[0], int(p.split(":")[1])) for p in args.cpu_problems.split(",")]
    threads = args.threads or 1

    def keep(blocks):
        report["cpu_matrix"] = blocks
        save()

    blocks = run_matrix(problems, args.cpu_variants.split(",") if args.cpu_variants else None, args.rounds,
                        threads, keep)
    print_matrix(blocks)
    report["profiles"] = []
    for net, size in problems if args.profile else ():
        for variant in args.profile:
            args.net = net
            torch.set_num_threads(threads)
            report["profiles"].append({"net": net, **profile_step(variant, make_problem(str(size), torch.device("cpu")),
                                                                   args, torch.device("cpu"))})
            save()


def run_speed(args, device, report: dict, save, plan: dict) -> None:
    """The timings: equivalence checks, engine variants and reference loops per size,
    torch.compile, K-run stacking, barbara's memory, the profiles; then ratios and the
    projections."""

    def attempt(what: dict, fn, into: list | None = None):
        """Run one measurement into ``into`` (default: the rows); an error or the time
        budget is recorded, not raised."""
        rows = report["rows"] if into is None else into
        if over_budget(args):
            rows.append({**what, "skipped": "time budget"})
        else:
            try:
                rows.append(fn())
            except Exception as exc:  # a failing variant must not stop the others
                traceback.print_exc()
                rows.append({**what, "error": f"{type(exc).__name__}: {exc}"})
        save()
        last = rows[-1]
        if into is None and "ms_per_step" in last:
            print(f"{last['variant']:22} {last['size']:>9} K={last['k']:<3} {last['ms_per_step']:9.2f} ms/step "
                  f"({time.perf_counter() - args.start:.0f} s)", flush=True)

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
    # the profiles, then the other sizes (for the Table I projection)
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

    if not args.no_stopping:  # issue 10: the stopping rules' cost, same variant with and without
        prob = make_problem(sizes[0], device)
        v = STOPPING_VARIANT[device.type]
        pair = []
        for with_rules in (False, True):
            attempt(dict(variant=v + ("+stop" if with_rules else ""), size=prob.label, k=1),
                    lambda: measure_engine(v, prob, 1, args, device, stopping=with_rules))
            pair.append(report["rows"][-1].get("ms_per_step"))
        report["stopping_overhead"] = dict(
            variant=v, size=prob.label, ms_without=pair[0], ms_with=pair[1], limit=STOPPING_OVERHEAD_LIMIT,
            overhead=None if None in pair else pair[1] / pair[0] - 1,
            passed=None if None in pair else pair[1] / pair[0] - 1 <= STOPPING_OVERHEAD_LIMIT)
        del prob

    if not args.no_streams:  # issue 20: the output streams' cost, same variant without and with them
        from bpdip.bench.measure import streams_overhead

        report["streams_overhead"] = streams_overhead(attempt, report, STOPPING_VARIANT[device.type],
                                                      make_problem(sizes[0], device), args, device)

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

    if plan["profile_variants"]:  # where a step's time goes, at the first size
        prob = make_problem(sizes[0], device)
        profiles = report.setdefault("profile", [])
        for v in plan["profile_variants"]:
            attempt(dict(variant=v, size=prob.label), lambda: profile_step(v, prob, args, device), into=profiles)
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


def _baselines(args, device) -> dict:
    from bpdip.bench.baselines import baseline_rows, print_rows

    rows = baseline_rows(tuple(int(s) for s in args.baselines_sizes.split(",")), args.rounds)
    print_rows(rows)
    report = {"baselines": rows, "device": device_info(torch.device("cpu")), "rounds": args.rounds,
              "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "torch_threads": torch.get_num_threads(),
              "created": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
    if args.out:
        write_json(args.out, report)
    return report


def _boundary(args, device) -> dict:
    from bpdip.bench.boundary import CASES, SMALL, accuracy_rows, boundary_rows, print_accuracy, print_rows
    from bpdip.physics.cg import CG_TOL

    nets = {"paper": {}, "small": SMALL, **NETS}
    cases = [(n, nets[n], int(s)) for n, s in (c.split(":") for c in args.boundary_sizes.split(","))] \
        if args.boundary_sizes else CASES
    tols = tuple(float(t) for t in args.boundary_tols.split(",")) if args.boundary_tols else (CG_TOL,)
    if args.boundary_accuracy:
        rows = accuracy_rows(device, args.steps, cases, tols)
        print_accuracy(rows)
        key = "accuracy"
    else:
        rows = boundary_rows(device, args.steps, cases, tols, args.rounds)
        print_rows(rows)
        key = "boundary"
    report = {key: rows, "device": device_info(device), "steps": args.steps, "rounds": args.rounds,
              "created": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
    if args.out:
        write_json(args.out, report)
    return report


def _threads_row(args) -> dict:
    from bpdip.bench.threads import THREAD_PROBLEMS, print_rows, threads_rows

    problems = THREAD_PROBLEMS
    if args.threads_problems:
        problems = [(n, int(s), int(i)) for n, s, i in (c.split(":") for c in args.threads_problems.split(","))]
    report = {"created": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
              "cpu_count": os.cpu_count(), "load_average_at_start": os.getloadavg() if hasattr(os, "getloadavg")
              else None, "rounds": args.rounds, "torch": torch.__version__, "threads_rows": []}

    def keep(rows):
        report["threads_rows"] = rows
        report["elapsed_s"] = time.perf_counter() - args.start
        if args.out:
            write_json(args.out, report)

    keep(threads_rows(problems, args.rounds, keep=keep))
    print_rows(report["threads_rows"])
    return report


if __name__ == "__main__":
    main()
