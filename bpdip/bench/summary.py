"""Reading the measurements: the Table I projection, speed ratios, the device's
description and the printed table."""

from __future__ import annotations

import datetime
import os
import platform
from pathlib import Path

import numpy as np
import torch

from bpdip.bench.config import ITERATIONS, MEMORY_LIMIT_GB, QUALITY_TOLERANCE_DB, REFERENCES, SETTINGS_PER_LOSS, \
    TABLE1_ITERS_PER_IMAGE
from bpdip.bench.measure import set14_sizes
from bpdip.provenance import git_commit


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


def ratios(rows: list[dict], size: str, engine_variants: list[str]) -> dict:
    at = {r["variant"]: r["ms_per_step"] for r in rows if r["size"] == size and r["k"] == 1}
    out = {}
    for v in engine_variants:
        if v in at:
            out[v] = {ref: at[ref] / at[v] for ref in REFERENCES if ref in at}
    return out


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
    commit = git_commit()
    info["git_commit"] = None if commit == "unknown" else commit
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
    for p in report.get("profile", []):
        if "categories" not in p:
            print(f"profile {p['variant']} at {p['size']}: {p.get('error') or 'skipped: ' + p.get('skipped', '')}")
            continue
        shares = ", ".join(f"{k} {v['share'] * 100:.0f}%" for k, v in list(p["categories"].items())[:7])
        print(f"profile {p['variant']} at {p['size']} ({p['clock']}): {p['ms_per_step']:.2f} ms/step; {shares}")
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
    for cand, v in report.get("quality", {}).get("cpu_scale", {}).items():  # issue 21's CPU-scale check
        gaps = ", ".join(f"{loss} {p['gap_db']:+.3f} dB (bound {p['bound_db']:.2f}: {p['bound_is']})"
                         for loss, p in v["per_loss"].items())
        print(f"CPU-scale check {cand}: {'PASS' if v['passed'] else 'not passed'}: {gaps}")
    if report.get("default"):
        print(f"engine default on this device: {report['default']}")
