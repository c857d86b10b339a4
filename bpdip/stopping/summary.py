"""Per-cell statistics of the stopping rules: :func:`bpdip.curves.rule_statistics` (their home
since issue 28, beside the other numbers the report and W&B compute from records)."""

from bpdip.curves import TOLERANCE_DB, rule_statistics

__all__ = ["TOLERANCE_DB", "rule_statistics"]
