"""Does ``boundary.cg_tol`` change what a valid BP run restores? (issue 19: BP's value and
gradient are exact to the tolerance; this checks what a looser one does to the images.)

The same synthetic runs (ground truth known, ``boundary=valid``, no early stop) at each
tolerance: every (image, kernel, loss) at 1,500 iterations, one ``run.py -m`` sweep per
tolerance, all in one results store. Per run and tolerance it reads the record: the
restored (average) stream's peak and final PSNR, the PSNR of ES-WMV's choice, the CG
iterations per solve and the run time; across tolerances, the largest PSNR gap between the
two curves over all logged iterations (``metrics.csv``). Writes ``per_run.csv``,
``summary.md`` and ``provenance.json`` under ``--out``.

    python scripts/cg_tol_check.py --out results/cg_tol            # 16 runs, ~16 min on one core
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def sweep(out: Path, tol: str, args) -> Path:
    jobs = out / "jobs" / f"tol-{tol}"
    cmd = [sys.executable, str(ROOT / "run.py"), "-m", f"kernel={args.kernels}", f"loss={args.losses}",
           "boundary=valid", f"boundary.cg_tol={tol}", f"data.images=[{args.images}]", f"data.crop={args.crop}",
           f"model={args.model}", f"noise.var={args.noise_var}", f"loss.iterations={args.iterations}",
           f"log_every={args.log_every}", f"results_root={out / 'store'}", f"hydra.sweep.dir={jobs}",
           *args.set]
    print(" ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)
    return jobs


def records(jobs: Path) -> dict:
    """(image, kernel, loss) -> (summary entry, that image's metrics rows)."""
    import json

    import pandas as pd

    found = {}
    for path in sorted(jobs.glob("**/summary.json")):
        s = json.loads(path.read_text())
        cell = s["run"]["cell"]
        metrics = pd.read_csv(path.parent / "metrics.csv")
        for image, entry in s["images"].items():
            found[(image, cell["kernel"], cell["loss"])] = (entry, metrics[metrics["image"] == image])
    return found


def main(argv=None) -> int:
    import json
    import time

    import pandas as pd

    from bpdip.provenance import git_commit, git_dirty, versions

    t0 = time.time()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / "results" / "cg_tol")
    p.add_argument("--tols", default="1e-6,1e-4", help="the reference tolerance first")
    p.add_argument("--images", default="face,barbara")
    p.add_argument("--kernels", default="gaussian,shake")
    p.add_argument("--losses", default="bp,bp_tv")
    p.add_argument("--crop", type=int, default=96)
    p.add_argument("--model", default="small")
    p.add_argument("--noise-var", type=float, default=2.0)
    p.add_argument("--iterations", type=int, default=1500)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--only", help="run the sweep of this one tolerance and stop (to run them side by side)")
    p.add_argument("--set", nargs="*", default=[], help="extra run.py overrides (e.g. threads=1)")
    args = p.parse_args(argv)
    tols = args.tols.split(",")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.only:
        sweep(args.out, args.only, args)
        return 0
    recs = {tol: records(sweep(args.out, tol, args)) for tol in tols}  # a relaunch reuses the store's runs
    ref, rows = tols[0], []
    for key in sorted(recs[ref]):
        base = recs[ref][key][1].set_index("iteration")["average_psnr"]
        for tol in tols:
            entry, metrics = recs[tol][key]
            avg = entry["streams"]["average"]
            curve = metrics.set_index("iteration")["average_psnr"]
            gap = (curve - base).abs().max()
            wmv = avg["stopping"]["wmv"]
            rows.append({"image": key[0], "kernel": key[1], "loss": key[2], "cg_tol": float(tol),
                         "peak_psnr": avg["peak_psnr"], "peak_iteration": avg["peak_iteration"],
                         "final_psnr": avg["final_psnr"], "wmv_iteration": wmv.get("iteration"),
                         "wmv_psnr": wmv.get("psnr"), "max_curve_gap_db": float(gap),
                         "cg_iterations_mean": entry["cg"]["iterations_mean"], "runtime_s": entry["runtime_s"]})
    df = pd.DataFrame(rows)
    df.to_csv(args.out / "per_run.csv", index=False)
    lines = [f"# boundary.cg_tol: {', '.join(tols)} on the same valid runs (reference {ref})", "",
             f"{args.images} x {args.kernels} x {args.losses}, {args.crop} px, model={args.model}, noise var "
             f"{args.noise_var}, {args.iterations} iterations, no early stop; the restored (average) stream's PSNR "
             "[dB] against the truth on y's frame. `curve gap`: the largest |PSNR difference| from the reference "
             "run over all logged iterations.", "",
             "| cg_tol | peak PSNR | final PSNR | ES-WMV's choice | largest curve gap | CG its/solve | s/run |",
             "|---|---|---|---|---|---|---|"]
    for tol, g in df.groupby("cg_tol", sort=False):
        lines.append(f"| {tol:g} | {g.peak_psnr.mean():.2f} | {g.final_psnr.mean():.2f} | {g.wmv_psnr.mean():.2f} | "
                     f"{g.max_curve_gap_db.max():.2f} | {g.cg_iterations_mean.mean():.1f} | {g.runtime_s.mean():.0f} |")
    lines += ["", "Means over the runs; `per_run.csv` has every run."]
    (args.out / "summary.md").write_text("\n".join(lines) + "\n")
    prov = {"command": " ".join(["python", "scripts/cg_tol_check.py", *(argv if argv is not None else sys.argv[1:])]),
            "git_commit": git_commit(), "git_dirty": git_dirty(), **versions(),
            "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "wall_s": time.time() - t0}
    (args.out / "provenance.json").write_text(json.dumps(prov, indent=2) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
