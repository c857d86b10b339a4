"""Command line: ``python -m bpdip.report RUN_DIRS... [--out results/NAME]`` (docs/reports.md)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bpdip.data import SET14
from bpdip.report.visual import split_names


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bpdip.report",
        description="Rebuild the paper's Table I and Fig. 1 from run records, beside the paper's numbers.")
    p.add_argument("paths", nargs="*", metavar="RUN_DIR",
                   help="sweep/job directories, summary.json files or glob patterns (searched recursively)")
    p.add_argument("--wandb", metavar="ENTITY/PROJECT", action="append", default=[],
                   help="also read the runs of this W&B project (needs network and a login); their "
                        "records are downloaded into OUT/records-wandb/")
    p.add_argument("--wandb-filter", metavar="JSON", default=None,
                   help='MongoDB-style filter passed to wandb.Api().runs, e.g. \'{"group": "uniform-0.3"}\'')
    p.add_argument("--out", "-o", default="results/report", help="output directory (default: %(default)s)")
    p.add_argument("--images", default=None,
                   help="images every setting should have: 'set14' or comma-separated names "
                        "(default: every image found in the records)")
    p.add_argument("--no-figure", action="store_true", help="skip the figures (Fig. 1, Figs. 2-5, ...)")
    p.add_argument("--visual", default=None, metavar="SETTINGS",
                   help="restored-image figures (the paper's Figs. 2-5) of these settings: 'paper' (default: "
                        "uniform-0.3, radial-2, gaussian-2, gaussian-4), 'all', 'none' or KERNEL-VAR,...")
    p.add_argument("--visual-images", default=None, metavar="IMAGES",
                   help="which images those figures show: 'first' (default), 'all' or names such as face,zebra")
    p.add_argument("--visual-region", default=None, metavar="TOP,LEFT,SIZE",
                   help="their close-up window in pixels (default: where the methods differ most)")
    args = p.parse_args(argv)
    if not args.paths and not args.wandb:
        p.error("give at least one run directory (e.g. multirun/2025-01-01) or --wandb ENTITY/PROJECT")
    return args


def image_list(spec: str | None) -> list[str] | None:
    if spec is None:
        return None
    if spec.strip().lower() == "set14":
        return list(SET14)
    return list(split_names(spec, "--images is empty; give 'set14' or names such as face,comic"))


def main(argv=None) -> int:
    args = parse_args(argv)
    from bpdip.report.build import build_report, write_report
    from bpdip.report.sources import load_local
    from bpdip.report.visual import VisualSettings

    try:
        jobs = load_local(args.paths) if args.paths else []
        if args.wandb:
            from bpdip.report.wandb_source import load_wandb

            filters = json.loads(args.wandb_filter) if args.wandb_filter else None
            for project in args.wandb:  # their records are downloaded beside the report
                jobs += load_wandb(project, filters=filters, root=Path(args.out) / "records-wandb")
        images = image_list(args.images)
        visual_settings = VisualSettings.parse(args.visual, args.visual_images, args.visual_region)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    inputs = list(args.paths) + [f"wandb:{w}" for w in args.wandb]
    report = build_report(jobs, images, inputs)
    report.visual_settings = visual_settings
    paths = write_report(report, args.out, figure=not args.no_figure)
    print(f"read {len(jobs)} job records; settings: {report.settings_text()}")
    for c in report.every_cell:
        if c.flags and c.status != "missing":
            print(f"  {c.markers} {c.cell}: {', '.join(c.flags)} (n={len(c.used)}/{len(c.expected)})")
    print(f"wrote {len(paths)} files to {args.out}/ (report.md lists all incomplete data)")
    return 0
