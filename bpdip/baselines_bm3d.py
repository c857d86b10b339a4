"""BM3D deblurring (BM3D-DEB; Dabov, Foi, Katkovnik, Egiazarian, "Image restoration by sparse
3D transform-domain collaborative filtering", 2008; docs/references.md "Classical baselines")
through the optional ``bm3d`` package (PyPI 4.0.3, ``pip install -e ".[bm3d]"``).

Its licence allows **non-commercial use only** (Tampere University), so it is an optional
extra, never a core dependency: without it :func:`load` says so in one warning line (once
per process) and the BM3D baselines are skipped.

``bm3d.bm3d_deblurring(z, sigma_psd, psf)`` assumes a **circular** blur: its regularised
inverse and its Wiener inversion divide by the FFT of the PSF on y's own grid.
"""

from __future__ import annotations

import logging
import types

import numpy as np

log = logging.getLogger("bpdip")
_warned: set = set()  # messages already given in this process (one line each)


class _NumpyWithTrapz(types.ModuleType):
    """numpy as bm4d 4.2.5 expects it: it calls ``np.trapz``, which numpy 2.4 removed
    (``np.trapezoid`` is the same function under its new name). Given to bm4d's own
    namespace only, so numpy itself is left as it is."""

    trapz = staticmethod(getattr(np, "trapezoid", None) or getattr(np, "trapz", None))

    def __getattr__(self, name):
        return getattr(np, name)


def warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        log.warning(message)


def load():
    """The ``bm3d`` module, or None (one warning line) where it is not installed."""
    try:
        import bm3d
        import bm4d
    except ImportError as exc:
        warn_once(f"BM3D baselines skipped: the optional bm3d package is not installed ({exc}); "
                  "pip install -e \".[bm3d]\" (licence: non-commercial use only)")
        return None
    if not hasattr(bm4d.np, "trapz"):
        bm4d.np = _NumpyWithTrapz("numpy")
    return bm3d


def bm3d_deblur(y: np.ndarray, kernel: np.ndarray, sigma: float, bm3d=None) -> np.ndarray:
    """BM3D-DEB of an (h, w, C) y with white noise of standard deviation ``sigma`` (y's scale,
    0..1), each channel alone as bpdip's other baselines (bm3d 4.0.3's own multichannel
    path fails on its stage-2 pilot's shape); clipped to [0, 1]. ``bm3d``: the module
    (default :func:`load`'s); ImportError if it is missing."""
    bm3d = bm3d or load()
    if bm3d is None:
        raise ImportError("the bm3d package is not installed")
    y = np.asarray(y, dtype=np.float64)
    kernel = np.asarray(kernel, dtype=np.float64)
    # (h, w, 1): the package's 2-D path broadcasts its noise PSD to the wrong shape
    out = [np.asarray(bm3d.bm3d_deblurring(y[..., c : c + 1], float(sigma), kernel)).reshape(y.shape[:2])
           for c in range(y.shape[2])]
    return np.clip(np.stack(out, axis=-1), 0.0, 1.0)
