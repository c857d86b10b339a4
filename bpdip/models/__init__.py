"""Networks f_theta of paper eq. (3). ``MODELS`` maps a config name to a constructor."""

import torch

from bpdip.models.skip import SkipNet, count_parameters
from bpdip.registry import resolve

MODELS = {"skip": SkipNet}


def build_model(name: str = "skip", **params):
    """A network by name, or the import path of your own ``nn.Module`` class, built with
    the model config's other keys (docs/extending.md). It maps (B, in_channels, H, W) to
    (B, 3, H, W); ``check_size(h, w)`` is optional, and ``engine.stack`` needs SkipNet."""
    return resolve(MODELS, name, "model.name")(**params)


def seeded_model(factory, seed: int) -> torch.nn.Module:
    """Build a model with its own seed, leaving the global RNG as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory()


__all__ = ["MODELS", "SkipNet", "build_model", "count_parameters", "seeded_model"]
