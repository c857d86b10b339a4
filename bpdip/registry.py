"""Name -> implementation lookups that also take your own code by import path.

A config names a loss's fidelity, a kernel or a network by a short name from a registry
(``bpdip.losses.FIDELITIES``, ``bpdip.physics.kernels.KERNELS``, ``bpdip.models.MODELS``)
or by an import path, ``mypkg.module.Name`` or ``mypkg.module:Name``, so that a new loss,
kernel or network needs no edit of bpdip (docs/extending.md). The module must be
importable by the job: on ``PYTHONPATH``, or installed.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
from collections.abc import Callable, Mapping


def is_import_path(name) -> bool:
    return isinstance(name, str) and ("." in name.strip(".:") or ":" in name)


def resolve(registry: Mapping[str, Callable], name: str, key: str) -> Callable:
    """``registry[name]``, or the object that the import path ``name`` points to.

    ``key`` is the config key being read (e.g. ``loss.fidelity``), for the error message.
    Raises ValueError with one line that says what is wrong and how to fix it.
    """
    if isinstance(name, str) and name in registry:
        return registry[name]
    if not is_import_path(name):
        raise ValueError(f"unknown {key} '{name}'; choose one of {sorted(registry)} "
                         "or give an import path to your own (mypkg.module.Name)")
    module, _, attr = name.rpartition(":") if ":" in name else name.rpartition(".")
    try:
        obj = getattr(importlib.import_module(module), attr)
    except ModuleNotFoundError as exc:
        raise ValueError(f"{key}={name}: cannot import '{exc.name}'; put its folder on PYTHONPATH "
                         "(e.g. PYTHONPATH=. python run.py ...) or install it") from None
    except AttributeError:
        raise ValueError(f"{key}={name}: module '{module}' has no attribute '{attr}'") from None
    if not callable(obj):
        raise ValueError(f"{key}={name} is a {type(obj).__name__}, not a class or function")
    return obj


def source_sha256(name: str) -> str | None:
    """SHA-256 of the source file that defines the object at import path ``name``, or None
    for a built-in name. The results store hashes it, so that editing your extension
    retrains its runs instead of reusing records of the old code (bpdip.store)."""
    if not is_import_path(name):
        return None
    obj = resolve({}, name, "import path")
    try:
        path = inspect.getsourcefile(obj)
    except TypeError:  # a builtin or C extension: no source to hash
        path = None
    if path is None:
        raise ValueError(f"{name}: no Python source file found to fingerprint; define it in a .py file")
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()
