"""``python -m bpdip.report RUN_DIRS...``: see :mod:`bpdip.report.cli`."""

import sys

from bpdip.report.cli import main

if __name__ == "__main__":
    sys.exit(main())
