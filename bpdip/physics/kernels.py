"""Blur kernels of the paper (Sec. IV) and user kernels read from files.

All kernels are 2-D float64 arrays normalised to sum 1 (paper Sec. IV: "All three kernels
are normalized to the sum of 1").
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


KERNELS = {"uniform": uniform, "radial": radial, "gaussian": gaussian}


def validate_kernel(k: np.ndarray, source: str = "kernel") -> np.ndarray:
    """Check a kernel is 2-D, finite, with a positive sum; return it normalised to sum 1."""
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
    """Build a kernel by name (``uniform``, ``radial``, ``gaussian``), ``file`` with a path,
    or the import path of your own function ``f(**params) -> 2-D array`` (validated and
    normalised like the others; README "Extend it")."""
    if name == "file":
        if not path:
            raise ValueError("kernel=file needs kernel.path=/path/to/kernel.(npy|png|txt)")
        return load_kernel(path)
    from bpdip.registry import resolve

    make = resolve({**KERNELS, "file": load_kernel}, name, "kernel.name")  # "file" only to list it
    return validate_kernel(make(**params), source=f"kernel {name}")
