"""``boundary=circular|valid`` (conf/boundary/, issue 19): which x a run restores and where
y's frame sits in it.

- ``circular`` (the paper's): x has y's size; no frame.
- ``valid`` (bpdip.physics.valid): x is larger than y by the kernel's reach,
  (h + kh - 1) x (w + kw - 1), and y's frame is x's crop ``(top, left, h, w)`` with
  ``(top, left) = ((kh - 1) // 2, (kw - 1) // 2)``. Synthetic data: ``data.crop`` is y's
  frame, centred as ``bpdip.data.center_crop`` centres it, so its ground truth is the same
  crop of the image as with ``circular``; x is that crop grown by the kernel's reach (the
  image must hold it). Without ``data.crop`` the whole image is x and y its valid part.
  ``data=observed``: the file (after ``data.crop``) is y; x is larger by the reach.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bpdip.physics.cg import CG_MAX_ITER, CG_TOL
from bpdip.physics.valid import FFT_GRIDS, valid_frame, valid_in_shape

BOUNDARIES = ("circular", "valid")
MIN_FRAME = 7  # SSIM's window (bpdip.metrics): y's frame must hold one


@dataclass(frozen=True)
class BoundarySettings:
    name: str = "circular"
    cg_tol: float = CG_TOL
    cg_max_iter: int = CG_MAX_ITER
    fft_grid: str = "fast"

    @property
    def valid(self) -> bool:
        return self.name == "valid"

    @classmethod
    def from_config(cls, cfg) -> "BoundarySettings":
        """The checked ``cfg.boundary`` (None: circular); ValueError with one line."""
        cfg = dict(cfg or {})
        unknown = sorted(set(cfg) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown boundary.* keys {unknown}; known: {sorted(cls.__dataclass_fields__)}")
        s = cls(**cfg)
        if s.name not in BOUNDARIES:
            raise ValueError(f"boundary.name={s.name!r} is not a boundary model; use boundary=circular or "
                             "boundary=valid")
        tol = s.cg_tol
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not (0 < tol < 1 and math.isfinite(tol)):
            raise ValueError(f"boundary.cg_tol must be a number in (0, 1) (a relative residual), got {tol!r}")
        its = s.cg_max_iter
        if isinstance(its, bool) or not isinstance(its, int) or its < 1:
            raise ValueError(f"boundary.cg_max_iter must be an integer >= 1, got {its!r}")
        if s.fft_grid not in FFT_GRIDS:
            raise ValueError(f"boundary.fft_grid={s.fft_grid!r} is not an FFT grid; use one of {list(FFT_GRIDS)}")
        return s

    def x_shape(self, y_shape: tuple[int, int], kernel: np.ndarray) -> tuple[int, int]:
        """The network's (x's) size for a y of ``y_shape``."""
        return tuple(y_shape) if not self.valid else valid_in_shape(kernel.shape, tuple(y_shape))

    def frame(self, x_shape: tuple[int, int], kernel: np.ndarray) -> tuple[int, int, int, int] | None:
        """y's frame in an x of ``x_shape``; None for circular."""
        if not self.valid:
            return None
        kh, kw = kernel.shape
        return valid_frame(kernel.shape, (x_shape[0] - kh + 1, x_shape[1] - kw + 1))

    def window(self, img: np.ndarray, crop, kernel: np.ndarray) -> np.ndarray:
        """x for synthetic data under ``valid``: the image's ``crop`` grown by the kernel's
        reach, or the whole image without a crop (module docstring). ValueError: one line."""
        from bpdip.data import center_crop

        kh, kw = kernel.shape
        H, W = img.shape[:2]
        if crop is None:
            h, w = H - kh + 1, W - kw + 1
            if min(h, w) < MIN_FRAME:
                raise ValueError(f"the {kh}x{kw} kernel is too large for the {H}x{W} image under boundary=valid: "
                                 f"y would be {max(h, 0)}x{max(w, 0)}, less than {MIN_FRAME}x{MIN_FRAME}; use a "
                                 "larger image or boundary=circular")
            return img
        h, w = (crop, crop) if isinstance(crop, int) else tuple(crop)
        center_crop(img, (h, w))  # the usual error for a crop larger than the image
        top, left = (H - h) // 2 - (kh - 1) // 2, (W - w) // 2 - (kw - 1) // 2
        xh, xw = valid_in_shape(kernel.shape, (h, w))
        if top < 0 or left < 0 or top + xh > H or left + xw > W:
            raise ValueError(f"data.crop={h}x{w} with boundary=valid needs a {xh}x{xw} window (the crop grown by "
                             f"the {kh}x{kw} kernel's reach) inside the {H}x{W} image; the kernel is too large for "
                             "this image: lower data.crop or use boundary=circular")
        return np.ascontiguousarray(img[top : top + xh, left : left + xw])
