"""Networks f_theta of paper eq. (3). ``MODELS`` maps a config name to a constructor."""

from bpdip.models.skip import SkipNet, count_parameters

MODELS = {"skip": SkipNet}


def build_model(name: str = "skip", **params) -> SkipNet:
    if name not in MODELS:
        raise ValueError(f"unknown model '{name}'; choose one of {sorted(MODELS)}")
    return MODELS[name](**params)


__all__ = ["MODELS", "SkipNet", "build_model", "count_parameters"]
