"""``scripts/bench.py --boundary`` (issue 19): the time per training step with
``boundary=valid`` (BP by conjugate gradients on x grown by the kernel's reach) against
``boundary=circular`` (BP's FFT weight), on the device, for the BP-TV loss and the paper's
gaussian kernel. Target: valid <= 1.3x circular.

Both run through ``bpdip.loop.restore`` with the plain eager engine for ``2 * steps + 1``
iterations logged every ``steps``; ms/step is the wall time between the logs at ``steps``
and ``2 * steps`` over ``steps`` (the first ``steps`` are the warm-up: the CG warm start
has settled). The valid row also gives the CG iterations per solve (mean over the run) and
``pixel_ratio``, x's pixels over y's: the network's share of the step grows by that much, so
the ratio cannot fall below it however cheap the solve. ``--rounds`` alternates the
measurements and reports medians (:func:`boundary_rows`).

``scripts/bench.py --boundary --boundary-accuracy`` (:func:`accuracy_rows`) instead measures
what a tolerance costs in exactness: the residuals r of a real valid run, replayed through
warm-started solves at each ``cg_tol``, against a solve to 1e-12. Per tolerance: the worst
relative error of BP's value <u, r> and of its gradient's direction A^T u (issue 19's
"value and gradient exact to that tolerance"), and the mean iterations per solve.
"""

from __future__ import annotations

import numpy as np
import torch

from bpdip.physics.cg import CG_MAX_ITER, CG_TOL

SMALL = dict(in_channels=32, channels_down=(16,) * 4, channels_up=(16,) * 4, channels_skip=(4,) * 4)  # model=small
CASES = (("paper", {}, 128), ("small", SMALL, 96))  # issue 19: the paper's net at 128 px, the small one at 96
TARGET = 1.3


def measure_boundary(net: dict, size: int, boundary: str, device, steps: int, cg_tol: float = CG_TOL,
                     kernel: str = "gaussian", var: float = 2.0, capture: dict | None = None) -> dict:
    """One row; ``capture`` (a dict) receives the run's operator, BP's eps and every residual
    it solved for (for :func:`accuracy_rows`)."""
    from bpdip.bench.measure import Times
    from bpdip.data import SET14_DIR, center_crop, load_image
    from bpdip.loop import Data, LoopSettings, RunSpec, restore, seeded_model
    from bpdip.losses import make_loss
    from bpdip.models import SkipNet
    from bpdip.physics import Blur, ValidBlur, degrade, degrade_valid, derive_seed, make_kernel, noise_sigma
    from bpdip.runner.boundary import BoundarySettings

    k = make_kernel(kernel)
    image = load_image(SET14_DIR / "barbara.png")
    seed = derive_seed(0, "barbara", "bench-boundary")
    if boundary == "valid":
        x = BoundarySettings("valid").window(image, size, k)
        y = degrade_valid(x, k, var, seed)
        op = ValidBlur(k, (size, size), device=device, cg_tol=cg_tol)
        frame, truth = op.frame, center_crop(image, size)
    else:
        truth = x = center_crop(image, size)
        y = degrade(x, k, var, seed)
        op, frame = Blur(k, (size, size), device=device), None

    def t(a, dtype):
        return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None].to(device=device, dtype=dtype)

    yt = t(y, torch.float32)
    loss = make_loss("bp", op, yt, noise_sigma(var), 1e-3)  # BP-TV (PROTOCOL "Losses")
    if capture is not None:
        bp = loss.fidelity
        capture.update(op=op, eps=bp.eps, r=[])
        solve = bp.solve

        def recording_solve(r):
            capture["r"].append(r.detach().double().clone())
            return solve(r)

        bp.solve = recording_solve
    model = seeded_model(lambda: SkipNet(**net), 1)
    times = Times("r0")
    settings = LoopSettings(iterations=2 * steps + 1, log_every=steps, progress=False)
    [result] = restore(model, loss, Data(yt, ["r0"], x_true=t(truth, torch.float64), image_shape=op.in_shape,
                                         frame=frame),
                       RunSpec(settings, seed=1, device=device, callbacks=[times]))
    if result.status != "complete":
        raise RuntimeError(f"run failed: {result.error}")
    ms = (times.seconds[2 * steps] - times.seconds[steps]) / steps * 1e3
    cg = loss.fidelity.cg.summary() if getattr(loss.fidelity, "cg", None) is not None else None
    return {"boundary": boundary, "size": size, "x_size": list(op.in_shape), "ms_per_step": ms,
            "cg_tol": cg_tol if boundary == "valid" else None,
            "cg_iterations_mean": cg["iterations_mean"][0] if cg else None}


def boundary_rows(device, steps: int, cases=CASES, tols=(CG_TOL,), rounds: int = 1) -> list[dict]:
    """Per (net, size): the circular row, then a valid row per CG tolerance with its ratio.

    With ``rounds`` > 1 the measurements alternate (circular, then each valid, per round) and
    each row gives the median ms/step and the median of the per-round ratios, so that a slow
    spell of a shared machine lands in one round's pair rather than in one row."""
    import statistics

    rows = []
    for name, net, size in cases:
        per_round = []
        for _ in range(rounds):
            circ = measure_boundary(net, size, "circular", device, steps)
            per_round.append((circ, [measure_boundary(net, size, "valid", device, steps, tol) for tol in tols]))
        circ = {"net": name, **per_round[0][0],
                "ms_per_step": statistics.median(c["ms_per_step"] for c, _ in per_round)}
        rows.append(circ)
        for i, tol in enumerate(tols):
            valid = [v[i] for _, v in per_round]
            ratios = [v[i]["ms_per_step"] / c["ms_per_step"] for c, v in per_round]
            row = {"net": name, **valid[0], "ms_per_step": statistics.median(v["ms_per_step"] for v in valid),
                   "cg_iterations_mean": statistics.median(v["cg_iterations_mean"] for v in valid)}
            row["ratio_to_circular"] = statistics.median(ratios)
            if rounds > 1:
                row["round_ratios"] = ratios
            # the network runs on x, which has this many times y's pixels: a floor on the ratio
            row["pixel_ratio"] = row["x_size"][0] * row["x_size"][1] / size**2
            row["meets_target"] = row["ratio_to_circular"] <= TARGET
            rows.append(row)
    return rows


def accuracy_rows(device, steps: int, cases=CASES, tols=(1e-6, 1e-5, 1e-4, 1e-3)) -> list[dict]:
    """Per (net, size) and tolerance: how exact BP's value and gradient are (module docstring)."""
    from bpdip.physics.cg import CGStats

    rows = []
    for name, net, size in cases:
        cap = {}
        measure_boundary(net, size, "valid", device, steps, 1e-6, capture=cap)
        op, eps, residuals = cap["op"], cap["eps"], cap["r"]
        op.cg_tol, op.cg_max_iter = 1e-12, 1000
        exact = [op.gram_solve(r, eps) for r in residuals]  # cold: independent of the chains below
        for tol in tols:
            op.cg_tol, op.cg_max_iter = tol, CG_MAX_ITER
            stats, u, value_err, grad_err = CGStats(), None, 0.0, 0.0
            for r, ue in zip(residuals, exact):
                u = op.gram_solve(r, eps, x0=u, stats=stats)  # warm-started, as BP solves in a run
                value = float((ue * r).sum())
                value_err = max(value_err, abs(float((u * r).sum()) - value) / abs(value))
                g, ge = op.A_adjoint(u.float()).double(), op.A_adjoint(ue.float()).double()
                grad_err = max(grad_err, float((g - ge).norm() / ge.norm()))
            rows.append({"net": name, "size": size, "cg_tol": tol, "solves": len(residuals),
                         "cg_iterations_mean": stats.summary()["iterations_mean"][0],
                         "value_rel_error_max": value_err, "gradient_rel_error_max": grad_err})
    return rows


def print_accuracy(rows: list[dict]) -> None:
    print(f"{'net':6} {'size':>5} {'cg_tol':>7} {'CG its':>7} {'value err':>10} {'grad err':>10}")
    for r in rows:
        print(f"{r['net']:6} {r['size']:>5} {r['cg_tol']:7.0e} {r['cg_iterations_mean']:7.1f} "
              f"{r['value_rel_error_max']:10.2e} {r['gradient_rel_error_max']:10.2e}")


def print_rows(rows: list[dict]) -> None:
    print(f"{'net':6} {'size':>5} {'boundary':9} {'cg_tol':>7} {'ms/step':>8} {'CG its':>7} {'ratio':>6}")
    for r in rows:
        tol = f"{r['cg_tol']:.0e}" if r["cg_tol"] else "-"
        its = f"{r['cg_iterations_mean']:.1f}" if r["cg_iterations_mean"] is not None else "-"
        ratio = f"{r['ratio_to_circular']:.2f}" if "ratio_to_circular" in r else "-"
        print(f"{r['net']:6} {r['size']:>5} {r['boundary']:9} {tol:>7} {r['ms_per_step']:8.1f} {its:>7} {ratio:>6}")
