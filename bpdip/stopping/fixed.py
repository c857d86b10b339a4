"""``fixed``: run the configured number of iterations and return the last iterate.

The paper's restored image: the clipped output from the unperturbed input after the last
step (PROTOCOL "Optimisation and measurement"), i.e. iteration T of a T-iteration run.
Its PSNR/SSIM are ``summary.json``'s ``final_*``.
"""

from __future__ import annotations

from bpdip.metrics import chosen_values


def choose(result) -> dict:
    """The fixed rule's choice for one :class:`bpdip.loop.Result`."""
    return {"iteration": result.iterations, "stopped": False, "stop_iteration": None,
            **chosen_values(result.last)}
