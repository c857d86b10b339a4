"""The deblurring baselines (issues 19 and 30): scikit-image's ``restoration`` methods a user
tries first, BM3D deblurring (``bpdip.baselines_bm3d``, the optional ``bm3d`` package) and,
for photographs (``boundary=valid``), classical methods that model the border
(``bpdip.baselines_border``). Nothing here re-implements a published method's library.

Each runs per channel on the observation y with the known kernel, the result clipped to
[0, 1] and measured on y's frame with :func:`bpdip.metrics.quality` (the network's metrics).

================================  ==========================================  =============================
method                            what                                        its boundary model
================================  ==========================================  =============================
``wiener_oracle``                 ``restoration.wiener``, ``balance`` the     circular (FFT, ``ir2tf``)
                                  best of :data:`BALANCES` by PSNR against
                                  the ground truth: an upper bound for Wiener
``unsupervised_wiener``           ``restoration.unsupervised_wiener`` (no     circular (FFT)
                                  parameter: a Gibbs sampler; seeded)
``richardson_lucy_oracle``        ``restoration.richardson_lucy`` at the      zero padding (``scipy.signal
                                  best of :data:`RL_COUNTS` (truth)           .convolve(mode="same")``)
``richardson_lucy``               the same at :data:`RL_FIXED` = 30           zero padding
``bm3d``                          ``bm3d.bm3d_deblurring`` (BM3D-DEB) with    circular (FFT)
                                  the known noise level sigma
``wiener_extended_oracle``        Wiener on y's extension                     extension (then circular)
                                  (``baselines_border.extend``), balance
                                  tuned with the truth
``unsupervised_wiener_extended``  unsupervised Wiener on the extension        extension (then circular)
``bm3d_extended``                 BM3D-DEB on the extension, sigma known      extension (then circular)
``richardson_lucy_valid_oracle``  Richardson-Lucy with the valid model, the   valid (bpdip's ``ValidBlur``)
                                  best of :data:`RL_VALID_COUNTS` (truth)
``richardson_lucy_valid``         the same, stopped by the discrepancy        valid
                                  principle (sigma known; without sigma at
                                  :data:`RL_FIXED`)
================================  ==========================================  =============================

(docs/references.md "Boundaries" and "Classical baselines".) With a linearly blurred photograph
the first five do not model the border: the circular ones ring from it, and scikit-image's
Richardson-Lucy darkens it (zeros outside the frame); the last five run only where y is a
valid observation (``boundary="valid"``). Richardson-Lucy assumes non-negative data, so
it gets y clipped to [0, 1] (the valid form: clipped at 0). Without ground truth
(``data=observed``) only the :data:`FIXED` methods run; BM3D and the discrepancy stop need
the noise level (``sigma``; BM3D a positive one) and are left out without it. A method
that cannot run on an input (a kernel larger than y, ``bm3d`` not installed) is skipped
with one warning line, and the others run.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from bpdip.metrics import quality

log = logging.getLogger("bpdip")

BALANCES = tuple(float(b) for b in np.logspace(-4, 0, 13))  # wiener's balance grid (3 per decade)
RL_COUNTS = (2, 5, 10, 20, 30, 50)  # Richardson-Lucy iteration counts tried with ground truth
RL_FIXED = 30
UNSUPERVISED_SEED = 0
RL_VALID_COUNTS = (5, 10, 20, 30, 50, 100, 200, 300)  # valid Richardson-Lucy's counts tried with ground truth
RL_VALID_MAX = 1000  # the discrepancy stop's cap
# the methods that need no ground truth
FIXED = ("unsupervised_wiener", "richardson_lucy", "bm3d", "unsupervised_wiener_extended", "bm3d_extended",
         "richardson_lucy_valid")
BORDER = ("wiener_extended_oracle", "unsupervised_wiener_extended", "bm3d_extended",
          "richardson_lucy_valid_oracle", "richardson_lucy_valid")  # boundary="valid" only
LABELS = {
    "wiener_oracle": "Wiener (balance tuned with truth)",
    "unsupervised_wiener": "unsupervised Wiener",
    "richardson_lucy_oracle": "Richardson–Lucy (best count, truth)",
    "richardson_lucy": f"Richardson–Lucy ({RL_FIXED} its)",
    "bm3d": "BM3D-DEB (noise level known)",
    "wiener_extended_oracle": "Wiener on extended y (balance tuned with truth)",
    "unsupervised_wiener_extended": "unsupervised Wiener on extended y",
    "bm3d_extended": "BM3D-DEB on extended y (noise level known)",
    "richardson_lucy_valid_oracle": "Richardson–Lucy, valid model (best count, truth)",
    "richardson_lucy_valid": "Richardson–Lucy, valid model (discrepancy stop)",
}
# each method's own boundary model, for the Baselines table (module docstring)
BOUNDARY_MODELS = {
    "wiener_oracle": "circular", "unsupervised_wiener": "circular", "bm3d": "circular",
    "richardson_lucy_oracle": "zero padding", "richardson_lucy": "zero padding",
    "wiener_extended_oracle": "extended y, circular", "unsupervised_wiener_extended": "extended y, circular",
    "bm3d_extended": "extended y, circular",
    "richardson_lucy_valid_oracle": "valid (x grown by the kernel's reach)",
    "richardson_lucy_valid": "valid (x grown by the kernel's reach)",
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


def _attempt(name: str, shape, compute):
    """``compute()``, or None with one warning line when the method cannot run on this input
    (e.g. a kernel larger than y under boundary=valid, issue 29): the run goes on."""
    try:
        return compute()
    except Exception as exc:  # noqa: BLE001 - a baseline never stops a run
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        log.warning("baseline %s skipped on this %dx%d y: %s: %s", name, shape[0], shape[1], type(exc).__name__, text)
        return None


def run_baselines(y: np.ndarray, kernel: np.ndarray, truth: np.ndarray | None = None, sigma: float | None = None,
                  boundary: str = "circular") -> tuple[list[dict], dict]:
    """Every baseline on y (h, w, 3): (records, images). A record is ``{method, psnr, ssim,
    ssim_dr2, params}`` (the metrics None without ``truth``); ``images`` maps each method to
    its (h, w, 3) result. Without ``truth`` only :data:`FIXED` methods run; BM3D and the
    discrepancy stop need ``sigma`` (the noise's standard deviation on y's 0..1 scale);
    ``boundary="valid"`` (y the valid part of a linear blur) adds :data:`BORDER`."""
    from bpdip import baselines_border as border
    from bpdip.baselines_bm3d import bm3d_deblur, load

    y = np.asarray(y, dtype=np.float64)
    kernel = np.asarray(kernel, dtype=np.float64)
    shape = y.shape[:2]
    results = []

    def add(name, made):
        """made: (image, params, metrics) or None (skipped)."""
        if made is not None:
            results.append((name, *made))

    def one(image, params):
        return image, params, measure(image, truth)

    def tuned(candidates):
        return _best(candidates, truth)

    if truth is not None:
        add("wiener_oracle", _attempt("wiener_oracle", shape, lambda: tuned(
            ({"balance": b, "tuned_with": "truth"}, wiener(y, kernel, b)) for b in BALANCES)))
    add("unsupervised_wiener", _attempt("unsupervised_wiener", shape, lambda: one(
        unsupervised_wiener(y, kernel), {"seed": UNSUPERVISED_SEED})))
    if truth is not None:
        add("richardson_lucy_oracle", _attempt("richardson_lucy_oracle", shape, lambda: tuned(
            ({"iterations": n, "tuned_with": "truth"}, richardson_lucy(y, kernel, n)) for n in RL_COUNTS)))
    add("richardson_lucy", _attempt("richardson_lucy", shape, lambda: one(
        richardson_lucy(y, kernel, RL_FIXED), {"iterations": RL_FIXED})))
    bm3d = load() if sigma is not None and sigma > 0 else None  # BM3D-DEB divides by the noise's PSD
    if bm3d is not None:
        add("bm3d", _attempt("bm3d", shape, lambda: one(bm3d_deblur(y, kernel, sigma, bm3d), {"sigma": float(sigma)})))
    if boundary == "valid":
        if truth is not None:
            add("wiener_extended_oracle", _attempt("wiener_extended_oracle", shape, lambda: tuned(
                ({"balance": b, "tuned_with": "truth"}, border.on_extension(lambda t: wiener(t, kernel, b), y, kernel))
                for b in BALANCES)))
        add("unsupervised_wiener_extended", _attempt("unsupervised_wiener_extended", shape, lambda: one(
            border.on_extension(lambda t: unsupervised_wiener(t, kernel), y, kernel), {"seed": UNSUPERVISED_SEED})))
        if bm3d is not None:
            add("bm3d_extended", _attempt("bm3d_extended", shape, lambda: one(
                border.on_extension(lambda t: bm3d_deblur(t, kernel, sigma, bm3d), y, kernel),
                {"sigma": float(sigma)})))
        counts = (RL_VALID_COUNTS if truth is not None else ()) + ((RL_FIXED,) if sigma is None else ())
        rl = _attempt("richardson_lucy_valid", shape, lambda: border.richardson_lucy_valid(
            y, kernel, counts, sigma, RL_VALID_MAX if sigma is not None else None))
        if rl is not None:
            if truth is not None:
                add("richardson_lucy_valid_oracle", tuned(({"iterations": n, "tuned_with": "truth"}, rl[n])
                                                          for n in RL_VALID_COUNTS))
            if sigma is not None:
                image, n = rl["discrepancy"]
                add("richardson_lucy_valid", one(image, {"iterations": n, "stop": "discrepancy",
                                                         "sigma": float(sigma)}))
            else:
                add("richardson_lucy_valid", one(rl[RL_FIXED], {"iterations": RL_FIXED}))
    records = [{"method": name, **m, "params": params} for name, _, params, m in results]
    return records, {name: image for name, image, _, _ in results}
