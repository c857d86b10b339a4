#!/usr/bin/env python
"""Rebuild Table I and Fig. 1 from run records: ``python scripts/make_report.py RUN_DIRS... --out DIR``.

A thin wrapper around :mod:`bpdip.report.cli` (same as ``python -m bpdip.report``).
"""

import sys

from bpdip.report.cli import main

if __name__ == "__main__":
    sys.exit(main())
