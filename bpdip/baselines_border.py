"""Classical deblurring that models a photograph's border (issue 30; docs/references.md
"Classical baselines" and "Boundaries").

- :func:`richardson_lucy_valid`: Richardson-Lucy with the *valid* model of
  ``boundary=valid`` (:class:`bpdip.physics.valid.ValidBlur`, ``A = E^T H``): x lives on
  the grown grid (h + kh - 1) x (w + kw - 1) and

      x <- x * A^T(y / A x) / A^T 1

  (the multiplicative EM update for Poisson data with A's column sums A^T 1). Nothing
  wraps around and nothing outside the frame is taken to be zero, so the border is
  neither darkened nor rung. Its parameter-free form stops by the discrepancy principle,
  the first iterate with mean((y - A x)^2) <= sigma^2 (the noise level known, as BM3D
  and the runs know it).
- :func:`extend`: y extended for the circular methods (Wiener, BM3D), after the two usual
  fixes of their border ringing (docs/references.md: MATLAB's ``edgetaper``, "blend y with its
  blurred self near the border", and Liu and Jia's extension of y to a periodic image,
  ICIP 2008), written here from those descriptions: y is padded by the kernel's extent
  m = max(kh, kw) on every side with its edge pixels, the padded image z is blurred
  circularly, ``b = k * z``, and the extension is replaced by b while y's frame is kept:
  ``t = a z + (1 - a) b`` with a = 1 on the frame and 0 outside (edgetaper's blend, its
  taper laid entirely in the extension). t is periodic without a jump (the blur wraps
  smoothly) and looks blurred where y has no data, so a circular method's inverse finds
  no edge to ring from; the result is cropped back to y's frame. Tried first on
  ``results/photo``'s observations: the edgetaper blend of y itself left tuned Wiener
  where it was, and edge padding without the blend left BM3D ringing with the line
  kernel (``shake``); the extension helped both (``results/photo/PROVENANCE.md``).
"""

from __future__ import annotations

import numpy as np
import torch

from bpdip.physics.blur import otf
from bpdip.physics.valid import ValidBlur, crop, crop_hw


def extend(y: np.ndarray, kernel: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """(t, frame): the extended (h + 2m, w + 2m, C) image of an (h, w, C) y and y's frame
    ``(top, left, h, w)`` in it (module docstring)."""
    y = np.asarray(y, dtype=np.float64)
    k = np.asarray(kernel, dtype=np.float64)
    m = max(k.shape)
    z = np.pad(y, ((m, m), (m, m), (0, 0)), mode="edge")
    H = otf(k, z.shape[:2])  # PROTOCOL's circular blur, the one the circular methods invert
    b = np.real(np.fft.ifft2(np.fft.fft2(z, axes=(0, 1)) * H[..., None], axes=(0, 1)))
    h, w = y.shape[:2]
    b[m : m + h, m : m + w] = y
    return b, (m, m, h, w)


RL_TINY = 1e-12  # a floor for A x in the ratio (y / A x): no division by zero


def richardson_lucy_valid(y: np.ndarray, kernel: np.ndarray, counts, sigma: float | None = None,
                          max_iterations: int | None = None) -> dict:
    """Richardson-Lucy with the valid model on an (h, w, C) y (module docstring).

    Returns ``{count: (h, w, C) frame of x}`` for each of ``counts`` (one run, snapshots),
    and with ``sigma`` also ``{"discrepancy": (frame, its iteration)}``: the first iterate
    within the discrepancy (at most ``max_iterations``, default the largest count). x
    starts at y's mean per channel on the grown grid; y is clipped at 0 (RL needs
    non-negative data); A^T 1's zeros (grid pixels no y pixel sees, e.g. the corners with a
    line kernel) keep x as it is. The frames are clipped to [0, 1]."""
    y = np.asarray(y, dtype=np.float64)
    h, w, C = y.shape
    op = ValidBlur(np.asarray(kernel, dtype=np.float64), (h, w))
    yt = torch.from_numpy(np.clip(y, 0.0, None)).permute(2, 0, 1)[None].contiguous()
    x = yt.mean(dim=(-2, -1), keepdim=True).clamp_min(RL_TINY).expand(1, C, *op.in_shape).clone()
    norm = op.A_adjoint(torch.ones_like(yt))
    seen = norm > 1e-6 * norm.max()
    norm = torch.where(seen, norm, torch.ones_like(norm))
    counts = sorted({int(n) for n in counts}) or [0]
    last = max(counts + [int(max_iterations or 0)])
    frames, out = {}, {}
    bound = None if sigma is None else float(sigma) ** 2

    def frame(z):
        return np.clip(crop(z, op.frame)[0].permute(1, 2, 0).numpy(), 0.0, 1.0)

    ax = op.A(x)  # A x of the current iterate: the next ratio and the discrepancy both read it
    for n in range(1, last + 1):
        x = torch.where(seen, x * op.A_adjoint(yt / ax.clamp_min(RL_TINY)) / norm, x)
        ax = op.A(x)
        if n in counts:
            frames[n] = frame(x)
        if bound is not None and "discrepancy" not in out and float(((yt - ax) ** 2).mean()) <= bound:
            out["discrepancy"] = (frame(x), n)
        if n >= counts[-1] and (bound is None or "discrepancy" in out):
            break
    if bound is not None and "discrepancy" not in out:
        out["discrepancy"] = (frame(x), last)  # never reached: the last iterate
    return {**frames, **out}


def on_extension(method, y: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``method(t)`` on y's :func:`extend`-ed image t, cropped back to y's frame."""
    t, frame = extend(y, kernel)
    return crop_hw(method(t), frame)
