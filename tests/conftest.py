"""Shared test set-up: CPU only, quiet W&B, small threads, tiny problems."""

import os

# W&B never reaches the network in tests (ENVIRONMENT.md: WANDB_MODE avoids the exit-time
# analytics call); its cache goes to a temporary place. Set whatever the shell says: the
# suite is CPU-only and offline also on a GPU node or with WANDB_MODE=online exported.
os.environ["WANDB_MODE"] = "offline"
os.environ["WANDB_SILENT"] = "true"
os.environ["WANDB_ERROR_REPORTING"] = "false"
os.environ["CUDA_VISIBLE_DEVICES"] = ""

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))

# Slim networks keep CPU tests fast; the paper's configuration is tested for shape/params.
SLIM = dict(channels_down=(8, 8, 8), channels_up=(8, 8, 8), channels_skip=(2, 2, 2))


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    cache = tmp_path_factory.getbasetemp() / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.setenv("WANDB_DIR", str(cache / "wandb"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(cache / "wandb-cache"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(cache / "wandb-config"))


@pytest.fixture(scope="module")
def compose_config():
    """conf/config.yaml composed with overrides, as run.py composes it (Hydra's compose API);
    test modules wrap it with their presets."""
    with initialize_config_dir(config_dir=str(Path(__file__).resolve().parents[1] / "conf"), version_base="1.3"):
        yield lambda *overrides, **kw: compose("config", overrides=list(overrides), **kw)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def default_dtype(request):
    """Parametrised default dtype (indirect): restore() builds networks and draws z in it,
    so float64 equivalence checks switch it for one test and restore it afterwards."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(request.param)
    yield request.param
    torch.set_default_dtype(before)


@pytest.fixture(scope="session")
def bench():
    """scripts/bench.py as a module, for the benchmark rows' smoke tests."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench", Path(__file__).resolve().parents[1] / "scripts" / "bench.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
