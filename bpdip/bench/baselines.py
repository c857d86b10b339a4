"""Issue 30's benchmark rows: what the classical baselines (``bpdip.baselines``) cost per
image, beside a run's training. Per size: BM3D-DEB alone on a circular y, BM3D-DEB on an
extended valid y, Richardson-Lucy with the valid model (the tuned counts and the
discrepancy stop in one pass), and every baseline of a record together, circular and
valid, as ``bpdip.runner.cell.deblur_baselines`` runs them (with the truth: the tuned
ones too). Wall and process CPU seconds per image (3 channels), the median of ``rounds``
alternated rounds. The image is Set14's face, centre-cropped; the paper's gaussian kernel
and noise variance 2."""

from __future__ import annotations

import statistics
import time

KERNEL = "gaussian"
NOISE_VAR = 2.0


def _problems(size: int):
    """(kernel, circular truth, its y, valid truth (y's frame), its y) of one size."""
    from bpdip.data import SET14_DIR, center_crop, load_image
    from bpdip.physics import degrade, degrade_valid, make_kernel
    from bpdip.physics.valid import crop_hw
    from bpdip.runner.boundary import BoundarySettings

    k = make_kernel(KERNEL)
    scene = load_image(SET14_DIR / "face.png")
    valid = BoundarySettings("valid")
    grown = valid.window(scene, size, k)
    circ = center_crop(scene, size)
    return (k, circ, degrade(circ, k, NOISE_VAR, 0), crop_hw(grown, valid.frame(grown.shape[:2], k)),
            degrade_valid(grown, k, NOISE_VAR, 0))


def _cases(size: int) -> dict:
    from bpdip.baselines import RL_VALID_COUNTS, RL_VALID_MAX, run_baselines
    from bpdip.baselines_bm3d import bm3d_deblur, load
    from bpdip.baselines_border import on_extension, richardson_lucy_valid
    from bpdip.physics import noise_sigma

    k, tc, yc, tv, yv = _problems(size)
    s = noise_sigma(NOISE_VAR)
    cases = {}
    if load() is not None:
        cases["bm3d"] = ("circular", lambda: bm3d_deblur(yc, k, s))
        cases["bm3d_extended"] = ("valid", lambda: on_extension(lambda t: bm3d_deblur(t, k, s), yv, k))
    cases["richardson_lucy_valid"] = ("valid", lambda: richardson_lucy_valid(yv, k, RL_VALID_COUNTS, s, RL_VALID_MAX))
    cases["all, circular"] = ("circular", lambda: run_baselines(yc, k, tc, sigma=s))
    cases["all, valid"] = ("valid", lambda: run_baselines(yv, k, tv, sigma=s, boundary="valid"))
    return cases


def baseline_rows(sizes=(96,), rounds: int = 3) -> list[dict]:
    rows = []
    for size in sizes:
        cases = _cases(int(size))
        times = {name: [] for name in cases}
        for _ in range(rounds):
            for name, (_, run) in cases.items():
                w, c = time.perf_counter(), time.process_time()
                run()
                times[name].append((time.perf_counter() - w, time.process_time() - c))
        for name, (boundary, _) in cases.items():
            rows.append({"what": name, "size": int(size), "boundary": boundary, "kernel": KERNEL,
                         "wall_s": statistics.median(t[0] for t in times[name]),
                         "cpu_s": statistics.median(t[1] for t in times[name]),
                         "wall_s_rounds": [t[0] for t in times[name]]})
    return rows


def print_rows(rows: list[dict]) -> None:
    print(f"{'baseline(s)':24} {'size':>5} {'boundary':9} {'wall s':>8} {'cpu s':>8}")
    for r in rows:
        print(f"{r['what']:24} {r['size']:>5} {r['boundary']:9} {r['wall_s']:8.2f} {r['cpu_s']:8.2f}")
