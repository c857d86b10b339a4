"""Blur kernels of the paper (Sec. IV), the super-resolution kernels of issue 14 (bicubic,
lanczos2; the gaussian serves both), a motion blur (issue 19) and user kernels read from files.

All kernels are 2-D float64 arrays normalised to sum 1 (paper Sec. IV: "All three kernels
are normalized to the sum of 1") and non-negative: a blur spreads light and never takes it
away, so a file or a function of your own with a negative entry is refused (issue 29).
The exceptions are the built-in interpolation kernels ``bicubic`` and ``lanczos2``, whose
negative lobes are part of their definition (imresize's and DIP's).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    r = np.arange(size, dtype=np.float64) - size // 2
    return np.meshgrid(r, r, indexing="ij")


def uniform(size: int = 9) -> np.ndarray:
    """Paper Sec. IV: uniform kernel of size 9 x 9."""
    return np.full((size, size), 1.0 / size**2)


def radial(size: int = 15) -> np.ndarray:
    """Paper Sec. IV: 1 / (1 + x1^2 + x2^2), x1, x2 = -7..7 (15 x 15), normalised."""
    x1, x2 = _grid(size)
    k = 1.0 / (1.0 + x1**2 + x2**2)
    return k / k.sum()


def gaussian(size: int = 15, std: float = 1.6) -> np.ndarray:
    """Paper Sec. IV: Gaussian of STD 1.6 on a 15 x 15 grid (PROTOCOL "Degradation")."""
    x1, x2 = _grid(size)
    k = np.exp(-(x1**2 + x2**2) / (2.0 * std**2))
    return k / k.sum()


def sr_offsets(factor: int) -> np.ndarray:
    """Tap offsets (HR pixels) of the super-resolution kernels from their centre.

    ``n = 4 s`` taps at half-integer offsets ``+-0.5, ..., +-(2 s - 0.5)`` for even s, and
    ``n = 4 s - 1`` taps at integer offsets ``-(2 s - 1), ..., 2 s - 1`` for odd s: every
    offset with ``|d| < 2 s``, i.e. inside the support 2 of the unscaled kernel (at
    ``|d| = 2 s`` both kernels below are 0). The centre ``(n - 1) / 2`` is where MATLAB's
    imresize and PIL's resize put the LR pixel relative to its HR block (an integer for
    odd s, between two pixels for even s); ``bpdip.physics.sr`` picks the decimation phase
    that keeps it there.
    """
    if not isinstance(factor, (int, np.integer)) or isinstance(factor, bool) or factor < 1:
        raise ValueError(f"kernel.factor must be an integer >= 1, got {factor!r}")
    n = 4 * factor if factor % 2 == 0 else 4 * factor - 1
    return np.arange(n, dtype=np.float64) - (n - 1) / 2


def _separable(weights: np.ndarray) -> np.ndarray:
    w = weights / weights.sum()
    return np.outer(w, w)


def bicubic(factor: int = 4) -> np.ndarray:
    """MATLAB imresize's antialiased bicubic downscaling kernel for factor s (issue 14;
    docs/references.md "The BP term for super-resolution": Keys a = -0.5, width 4 / scale).

    Keys' cubic with a = -0.5 (Keys 1981; MATLAB ``cubic``, PIL's ``BICUBIC``)::

        W(t) = 1.5 |t|^3 - 2.5 |t|^2 + 1              for |t| <= 1
             = -0.5 |t|^3 + 2.5 |t|^2 - 4 |t| + 2     for 1 < |t| < 2,   0 otherwise,

    stretched by s for downscaling: weight ``W(d / s) / s`` at the offsets ``d`` of
    :func:`sr_offsets` (4 s taps for even s, 4 s - 1 for odd s), normalised to sum 1 as
    imresize normalises each output pixel's weights; separable: ``k = w w^T``.
    ``bicubic(1)`` is the identity (a single 1 in a 3 x 3 kernel).
    """
    t = np.abs(sr_offsets(factor) / factor)
    w = np.where(t <= 1, (1.5 * t - 2.5) * t * t + 1, np.where(t < 2, ((-0.5 * t + 2.5) * t - 4) * t + 2, 0.0))
    return _separable(w)


def lanczos2(factor: int = 4) -> np.ndarray:
    """DIP's ``lanczos2`` downsampler kernel (docs/references.md "Deep Image Prior
    super-resolution": support 2, kernel width 4 s + 1, phase 0.5).

    ``L(t) = sinc(t) sinc(t / 2)`` (normalised sinc, ``sin(pi t) / (pi t)``), 0 for
    ``|t| >= 2``, at ``t = d / s`` for the offsets ``d`` of :func:`sr_offsets`, normalised
    to sum 1, separable. For even s that is DIP's kernel exactly: width 4 s + 1 with phase
    0.5 samples the half-integer offsets ``+-0.5, ..., +-(2 s - 0.5)``, i.e. 4 s taps (DIP
    uses s = 4 and 8). For odd s we sample the integer offsets instead (4 s - 1 taps, the
    zeros at ``|d| = 2 s`` dropped), so that every SR kernel here shares one centre and one
    decimation phase; DIP's half-integer taps would put the LR pixel half a pixel off
    imresize's centre for odd s.
    """
    t = sr_offsets(factor) / factor
    return _separable(np.where(np.abs(t) < 2, np.sinc(t) * np.sinc(t / 2), 0.0))


def motion(length: float = 11.0, angle: float = 30.0, size: int | None = None) -> np.ndarray:
    """A straight camera-shake blur (issue 19's evidence; not the paper's): a line segment of
    ``length`` pixels through the centre at ``angle`` degrees (counter-clockwise from the
    horizontal), on an odd ``size`` x ``size`` grid (default: the smallest odd size that holds
    it). The segment is sampled at 16 points per pixel, each splatted bilinearly onto the
    grid (an antialiased line of unit width), then normalised to sum 1."""
    if not (length >= 1 and np.isfinite(length)):
        raise ValueError(f"kernel.length must be a number >= 1 (pixels), got {length!r}")
    reach = int(np.ceil(length / 2)) + 1
    size = size if size is not None else 2 * reach - 1
    if not isinstance(size, (int, np.integer)) or size < 1 or size % 2 == 0:
        raise ValueError(f"kernel.size must be an odd integer, got {size!r}")
    t = np.linspace(-length / 2, length / 2, int(16 * length) + 1)
    a = np.deg2rad(angle)
    rows, cols = size // 2 - t * np.sin(a), size // 2 + t * np.cos(a)  # image rows grow downwards
    k = np.zeros((size, size))
    r0, c0 = np.floor(rows).astype(int), np.floor(cols).astype(int)
    fr, fc = rows - r0, cols - c0
    for dr, dc, wgt in ((0, 0, (1 - fr) * (1 - fc)), (0, 1, (1 - fr) * fc), (1, 0, fr * (1 - fc)), (1, 1, fr * fc)):
        rr, cc = r0 + dr, c0 + dc
        inside = (rr >= 0) & (rr < size) & (cc >= 0) & (cc < size)
        np.add.at(k, (rr[inside], cc[inside]), wgt[inside])
    return k / k.sum()


SIGNED_KERNELS = ("bicubic", "lanczos2")  # negative lobes by definition (module docstring)


def disk(radius: float = 3.5, size: int | None = None, samples: int = 16) -> np.ndarray:
    """A defocus blur (issue 32's evidence; not the paper's): the uniform disk of ``radius``
    pixels, each grid pixel weighted by the share of its area inside the disk (``samples``^2
    points per pixel), on an odd ``size`` x ``size`` grid (default: the smallest that holds
    it), normalised to sum 1. Its transfer function has zeros (rings of a jinc)."""
    if not (radius > 0 and np.isfinite(radius)):
        raise ValueError(f"kernel.radius must be a number > 0 (pixels), got {radius!r}")
    size = size if size is not None else 2 * int(np.ceil(radius - 0.5)) + 1
    if not isinstance(size, (int, np.integer)) or size < 1 or size % 2 == 0:
        raise ValueError(f"kernel.size must be an odd integer, got {size!r}")
    sub = (np.arange(samples) + 0.5) / samples - 0.5  # sub-pixel offsets of one pixel
    c = np.arange(size, dtype=np.float64) - size // 2
    pts = (c[:, None] + sub[None, :]).ravel()  # every sample coordinate, pixel-major
    inside = (pts[:, None] ** 2 + pts[None, :] ** 2) <= radius**2
    k = inside.reshape(size, samples, size, samples).mean(axis=(1, 3))
    return k / k.sum()


KERNELS = {"uniform": uniform, "radial": radial, "gaussian": gaussian, "bicubic": bicubic, "lanczos2": lanczos2,
           "shake": motion, "disk": disk}  # conf/kernel/shake.yaml (docs/extending.md names its own kernel motion)


def validate_kernel(k: np.ndarray, source: str = "kernel", signed: bool = False) -> np.ndarray:
    """Check a kernel is 2-D, finite, with a positive sum and (unless ``signed``) no
    negative entry; return it normalised to sum 1."""
    k = np.asarray(k, dtype=np.float64)
    if k.ndim != 2:
        raise ValueError(f"{source}: a blur kernel must be 2-D, got shape {k.shape}")
    if k.size == 0:
        raise ValueError(f"{source}: the kernel is empty")
    if not np.all(np.isfinite(k)):
        raise ValueError(f"{source}: the kernel has NaN or infinite values")
    total = k.sum()
    if total <= 0:
        raise ValueError(f"{source}: the kernel sums to {total:g}; it must sum to a positive number")
    if not signed and k.min() < 0:
        raise ValueError(f"{source}: {int((k < 0).sum())} entries are negative (smallest {k.min():.3g}); a blur "
                         "kernel must be non-negative: clip them to 0 (numpy.clip(k, 0, None)) and save it again")
    return k / total


def load_kernel(path: str | Path) -> np.ndarray:
    """Read a kernel from ``.npy``, an image (``.png`` etc., grayscale) or a text file.

    Text files hold rows of numbers separated by spaces or commas.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"kernel file not found: {path} (set kernel.path to a .npy, .png or .txt file)")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            k = np.load(path, allow_pickle=False)
        elif suffix in (".png", ".bmp", ".tif", ".tiff"):
            from PIL import Image

            with Image.open(path) as img:
                k = np.asarray(img.convert("F"), dtype=np.float64)
        else:
            text = path.read_text().replace(",", " ")
            rows = [list(map(float, line.split())) for line in text.splitlines() if line.strip()]
            if len({len(r) for r in rows}) > 1:
                raise ValueError("rows have different lengths")
            k = np.array(rows, dtype=np.float64)
    except (ValueError, OSError) as exc:
        raise ValueError(f"cannot read kernel file {path}: {exc}") from None
    return validate_kernel(k, source=f"kernel file {path}")


def make_kernel(name: str, path: str | Path | None = None, **params) -> np.ndarray:
    """Build a kernel by name (``uniform``, ``radial``, ``gaussian``; for super-resolution
    ``bicubic`` and ``lanczos2`` with ``factor=s``), ``file`` with a path,
    or the import path of your own function ``f(**params) -> 2-D array`` (validated and
    normalised like the others; docs/extending.md)."""
    if name == "file":
        if not path:
            raise ValueError("kernel=file needs kernel.path=/path/to/kernel.(npy|png|txt)")
        return load_kernel(path)
    from bpdip.registry import resolve

    make = resolve({**KERNELS, "file": load_kernel}, name, "kernel.name")  # "file" only to list it
    return validate_kernel(make(**params), source=f"kernel {name}", signed=name in SIGNED_KERNELS)
