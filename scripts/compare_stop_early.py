#!/usr/bin/env python
"""Does ``stop.early`` pick what the full runs picked, and what does it save?

    python scripts/compare_stop_early.py FULL_RECORDS EARLY_RECORDS --rule emv [--csv out.csv]

Both are run directories (or stores) as ``scripts/make_report.py`` reads them; images are
matched by (kernel, noise, loss, seed, image). See bpdip.report.stopping.early_comparison.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's bpdip, not an installed one

from bpdip.report import load_local  # noqa: E402
from bpdip.report.stopping import early_comparison, md_early_comparison  # noqa: E402
from bpdip.stopping import ONLINE  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("full")
    p.add_argument("early")
    p.add_argument("--rule", default="emv", choices=sorted(ONLINE))
    p.add_argument("--csv")
    args = p.parse_args(argv)
    try:
        frame = early_comparison(load_local([args.full]), load_local([args.early]), args.rule)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(md_early_comparison(frame, args.rule))
    if args.csv:
        frame.to_csv(args.csv, index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
