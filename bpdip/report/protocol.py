"""Where a run's configuration departs from the paper's protocol.

A demo on a 64-pixel crop with a slim network and 600 iterations is not comparable with
the paper's Table I; the report says so next to the numbers instead of leaving the
difference to be guessed. The reference values are bpdip.paper's (paper Sec. IV, PROTOCOL).
"""

from __future__ import annotations

import math

from bpdip import paper
from bpdip.report.sources import Cell


def _get(config: dict, dotted: str, default=None):
    node = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def _differs(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return not math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=0.0)
    return a != b


def departure(config: dict, key: str, want, text: str) -> list[str]:
    """``text`` formatted with the config's value at ``key`` and ``want`` where both are set
    and differ (one departures line), else nothing."""
    value = _get(config, key)
    return [text.format(value, want)] if value is not None and want is not None and _differs(value, want) else []


def network_deviation(config: dict, reference: str) -> list[str]:
    """The network line of a departures list when the run's skip net is not the paper's
    (PROTOCOL "Network", bpdip.paper.NETWORK), else nothing; ``reference`` says what the paper's is."""
    model = _get(config, "model") or {}
    net = {k: model.get(k) for k in paper.NETWORK}
    if any(v is not None for v in net.values()) and net != paper.NETWORK:
        return ["network " + ", ".join(f"{k} {net[k]}" for k in ("channels_down", "channels_skip"))
                + f" ({reference})"]
    return []


def deviations(config: dict | None, cell: Cell, n_images: int) -> list[str]:
    """Human-readable differences between one cell's resolved config and the protocol."""
    out = []
    if n_images != paper.N_IMAGES:
        out.append(f"{n_images} image(s) (paper: the {paper.N_IMAGES} Set14 images)")
    if not config:
        return out + ["resolved config not found beside the records: protocol not checked"]
    crop = _get(config, "data.crop")
    if crop is not None:
        out.append(f"centre crop {crop} px (paper: full-size images)")
    tv_weight = paper.TV_WEIGHTS.get((cell.loss, cell.kernel), 0.0 if cell.loss in ("ls", "bp") else None)
    out += departure(config, "loss.iterations", paper.ITERATIONS.get(cell.loss), "{} iterations (paper: {})")
    out += departure(config, "loss.tv_weight", tv_weight, "TV weight {:g} (paper: {:g})")
    out += network_deviation(config, "paper: 5 scales of 128 down/up, 4 skip channels")
    out += departure(config, "optim.lr", paper.LEARNING_RATE, "learning rate {:g} (paper: {:g})")
    out += departure(config, "optim.reg_noise_std", paper.REG_NOISE_STD, "input noise {:g} (paper: {:g})")
    folder = _get(config, "data.folder")
    if folder:
        out.append(f"images from {folder} (paper: Set14)")
    return out
