"""``oracle``: the peak of the logged PSNR curve, chosen with the ground truth.

This is what the paper (and Table I: the peak of the image-averaged curve) reports: among
the logged iterations t = 0, log_every, ... and the last, the one with the highest PSNR of the clipped
output against the ground truth. Per image it is the image's own best logged iteration
(``summary.json``'s ``peak_*``). It needs ground truth, so it cannot stop a run early and
does not exist for ``data=observed``.
"""

from __future__ import annotations

from bpdip.metrics import chosen_values


def choose(result) -> dict | None:
    """The oracle's choice for one :class:`bpdip.loop.Result`: its best logged record."""
    peak = result.peak
    if peak is None:
        return None
    return {"iteration": peak["iteration"], "stopped": False, "stop_iteration": None,
            **chosen_values(peak)}
