#!/usr/bin/env python
"""Add y and the truth to job records written before the runner kept them (issue 28).

    python scripts/backfill_inputs.py results/cpu_grid/records/0-uniform-0.3-ls ...

Since issue 28 a job keeps, per complete image, ``images/<image>/y.npy`` (the observation
as the loss saw it, float32) and ``images/<image>/truth.png`` (bpdip.records.input_paths),
so that the report draws Figs. 2-5 from records alone. For an older job directory this
script re-makes both with the runner's own front end (the job's config.yaml,
``bpdip.runner.cell.observation``: the same kernel, noise seed and crop as the run) and
writes them there. It only adds files: summary.json and metrics.csv stay as they were
(the report then draws y without its PSNR / SSIM, which only a record's ``input`` holds).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def backfill(job_dir: Path, images: list[str] | None = None) -> list[Path]:
    """Write the missing y / truth files of ``job_dir``'s complete images (those named in
    ``images``, default all); returns them."""
    import yaml

    from bpdip.records import input_paths, read_json, write_npy, write_png
    from bpdip.runner.cell import observation
    from bpdip.runner.plan import plan_cell

    config = yaml.safe_load((job_dir / "config.yaml").read_text())
    plan = plan_cell(config)
    summary = read_json(job_dir / "summary.json")
    written = []
    for task in plan.tasks:
        entry = summary["images"].get(task.name) or {}
        paths = input_paths(task.name)
        if entry.get("status") != "complete" or (job_dir / paths["y"]).is_file() or \
                (images and task.name not in images):
            continue
        images, _ = observation(plan, task)
        for key, array in images.items():
            (write_npy if paths[key].endswith(".npy") else write_png)(job_dir / paths[key], array)
            written.append(job_dir / paths[key])
    return written


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("jobs", nargs="+", type=Path, help="job directories (with config.yaml and summary.json)")
    p.add_argument("--images", default=None, help="only these images (comma-separated), e.g. the figures' face")
    args = p.parse_args(argv)
    images = args.images.split(",") if args.images else None
    for job in args.jobs:
        for path in backfill(job, images):
            print(path)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
