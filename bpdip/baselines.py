"""The deblurring baselines a user tries first (issue 19), as thin wrappers over
scikit-image's ``restoration`` module: nothing here re-implements a method.

Each runs per channel on the observation y with the known kernel, the result clipped to
[0, 1] and measured on y's frame with :func:`bpdip.metrics.quality` (the network's metrics).

==========================  ===============================================  ===========================
method                      what                                             its own boundary model
==========================  ===============================================  ===========================
``wiener_oracle``           ``restoration.wiener``, ``balance`` the best of  circular (FFT, ``ir2tf``)
                            :data:`BALANCES` by PSNR against the ground
                            truth: an upper bound for Wiener
``unsupervised_wiener``     ``restoration.unsupervised_wiener`` (no          circular (FFT)
                            parameter: a Gibbs sampler estimates the
                            noise and prior levels; seeded)
``richardson_lucy_oracle``  ``restoration.richardson_lucy`` at the best of   zero padding (``scipy.signal
                            :data:`RL_COUNTS` iterations by PSNR against     .convolve(mode="same")``)
                            the ground truth
``richardson_lucy``         the same at :data:`RL_FIXED` = 30 iterations     zero padding
                            (no ground truth needed)
==========================  ===============================================  ===========================

(REFERENCES.md "Boundaries".) With a linearly blurred photograph none of them models the
border: the circular ones ring from it, and Richardson-Lucy darkens it (zeros outside the
frame). Richardson-Lucy assumes non-negative data, so it gets y clipped to [0, 1].
Without ground truth (``data=observed``) only the fixed-parameter methods run.
"""

from __future__ import annotations

import numpy as np
import torch

from bpdip.metrics import quality

BALANCES = tuple(float(b) for b in np.logspace(-4, 0, 13))  # wiener's balance grid (3 per decade)
RL_COUNTS = (2, 5, 10, 20, 30, 50)  # Richardson-Lucy iteration counts tried with ground truth
RL_FIXED = 30
UNSUPERVISED_SEED = 0
FIXED = ("unsupervised_wiener", "richardson_lucy")  # the methods that need no ground truth
LABELS = {
    "wiener_oracle": "Wiener (balance tuned with truth)",
    "unsupervised_wiener": "unsupervised Wiener",
    "richardson_lucy_oracle": "Richardson–Lucy (best count, truth)",
    "richardson_lucy": f"Richardson–Lucy ({RL_FIXED} its)",
}


def _per_channel(f, y: np.ndarray) -> np.ndarray:
    return np.clip(np.stack([f(y[..., c]) for c in range(y.shape[2])], axis=-1), 0.0, 1.0)


def wiener(y: np.ndarray, kernel: np.ndarray, balance: float) -> np.ndarray:
    from skimage.restoration import wiener as sk_wiener

    return _per_channel(lambda c: sk_wiener(c, kernel, balance, clip=False), y)


def unsupervised_wiener(y: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    from skimage.restoration import unsupervised_wiener as sk_uw

    rng = np.random.default_rng(UNSUPERVISED_SEED)
    return _per_channel(lambda c: sk_uw(c, kernel, clip=False, rng=rng)[0], y)


def richardson_lucy(y: np.ndarray, kernel: np.ndarray, iterations: int = RL_FIXED) -> np.ndarray:
    from skimage.restoration import richardson_lucy as sk_rl

    return _per_channel(lambda c: sk_rl(np.clip(c, 0.0, 1.0), kernel, num_iter=iterations, clip=False), y)


def measure(image: np.ndarray, truth: np.ndarray | None) -> dict:
    """psnr, ssim, ssim_dr2 of an (h, w, 3) image against the truth (None without one)."""
    if truth is None:
        return {"psnr": None, "ssim": None, "ssim_dr2": None}

    def t(a):
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64)).permute(2, 0, 1)[None]

    return {k: float(v[0]) for k, v in quality(t(image), t(truth)).items()}


def _best(candidates, truth):
    """(image, params, metrics) of the candidate with the highest PSNR."""
    best = None
    for params, image in candidates:
        m = measure(image, truth)
        if best is None or m["psnr"] > best[2]["psnr"]:
            best = (image, params, m)
    return best


def run_baselines(y: np.ndarray, kernel: np.ndarray, truth: np.ndarray | None = None) -> tuple[list[dict], dict]:
    """Every baseline on y (h, w, 3): (records, images). A record is ``{method, psnr, ssim,
    ssim_dr2, params}`` (the metrics None without ``truth``); ``images`` maps each method to
    its (h, w, 3) result. Without ``truth`` only :data:`FIXED` methods run."""
    y = np.asarray(y, dtype=np.float64)
    kernel = np.asarray(kernel, dtype=np.float64)
    results = []
    if truth is not None:
        image, params, m = _best((({"balance": b, "tuned_with": "truth"}, wiener(y, kernel, b)) for b in BALANCES),
                                 truth)
        results.append(("wiener_oracle", image, params, m))
    image = unsupervised_wiener(y, kernel)
    results.append(("unsupervised_wiener", image, {"seed": UNSUPERVISED_SEED}, measure(image, truth)))
    if truth is not None:
        image, params, m = _best((({"iterations": n, "tuned_with": "truth"}, richardson_lucy(y, kernel, n))
                                  for n in RL_COUNTS), truth)
        results.append(("richardson_lucy_oracle", image, params, m))
    image = richardson_lucy(y, kernel, RL_FIXED)
    results.append(("richardson_lucy", image, {"iterations": RL_FIXED}, measure(image, truth)))
    records = [{"method": name, **m, "params": params} for name, _, params, m in results]
    return records, {name: image for name, image, _, _ in results}
