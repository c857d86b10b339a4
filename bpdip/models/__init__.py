"""Networks f_theta of paper eq. (3). ``MODELS`` maps a config name to a constructor."""

from bpdip.models.skip import SkipNet, count_parameters
from bpdip.registry import resolve

MODELS = {"skip": SkipNet}


def build_model(name: str = "skip", **params):
    """A network by name, or the import path of your own ``nn.Module`` class, built with
    the model config's other keys (docs/extending.md). It maps (B, in_channels, H, W) to
    (B, 3, H, W); ``check_size(h, w)`` is optional, and ``engine.stack`` needs SkipNet."""
    return resolve(MODELS, name, "model.name")(**params)


__all__ = ["MODELS", "SkipNet", "build_model", "count_parameters"]
