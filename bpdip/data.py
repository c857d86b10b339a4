"""Test images: Set14 shipped in ``data/Set14`` and the user's own files.

Images are returned as ``float64`` arrays of shape (H, W, 3) in [0, 1] (uint8 / 255), as
PROTOCOL "Data" fixes: grayscale is replicated to three channels, alpha is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

DATA_ROOT = Path(__file__).resolve().parents[1] / "data"
SET14_DIR = DATA_ROOT / "Set14"
SET14 = (
    "baboon", "barbara", "bridge", "coastguard", "comic", "face", "flowers",
    "foreman", "lenna", "man", "monarch", "pepper", "ppt3", "zebra",
)
IMAGE_SUFFIXES = (".png", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg")


@dataclass(frozen=True)
class ImageRef:
    """A named image file; ``name`` keys records and seeds, so it must be unique in a run."""

    name: str
    path: Path


def load_image(path: str | Path) -> np.ndarray:
    """Read an 8-bit (or 16-bit grayscale) image as RGB float64 in [0, 1], shape (H, W, 3)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path} (check the name or path)")
    try:
        img = Image.open(path)
        img.load()
    except Exception as exc:  # PIL raises several types for unreadable files
        raise ValueError(f"cannot read image {path}: {exc} (is it a PNG/BMP/TIFF/JPEG?)") from None
    if "A" in img.mode or (img.mode == "P" and "transparency" in img.info):
        raise ValueError(
            f"image {path} has an alpha channel (mode {img.mode}); "
            "save it as RGB or grayscale without transparency"
        )
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64) / 65535.0
    else:
        if img.mode not in ("L", "RGB"):
            img = img.convert("RGB")
        arr = np.asarray(img, dtype=np.float64) / 255.0
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    return np.ascontiguousarray(np.clip(arr, 0.0, 1.0))


def resolve_images(
    images: list[str] | tuple[str, ...] | None = None,
    folder: str | Path | None = None,
    root: str | Path | None = None,
) -> list[ImageRef]:
    """Turn a config's image selection into files, failing before any training starts.

    ``images`` holds Set14 names (``face``), names of files in ``folder`` or paths;
    with ``images`` empty, every image of ``folder`` (default: Set14) is taken, sorted.
    """
    base = Path(folder) if folder else SET14_DIR
    if root is not None and not base.is_absolute():
        base = Path(root) / base
    if not base.is_dir():
        raise FileNotFoundError(f"image folder not found: {base} (set data.folder to a folder of images)")
    if not images:
        files = sorted(p for p in base.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {base}")
        refs = [ImageRef(p.stem, p) for p in files]
    else:
        refs = [_resolve_one(str(item), base, root) for item in images]
    names = [r.name for r in refs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"image names must be unique in a run, repeated: {dupes}")
    return refs


def _resolve_one(item: str, base: Path, root: str | Path | None) -> ImageRef:
    path = Path(item).expanduser()
    if root is not None and not path.is_absolute():
        rooted = Path(root) / path
        path = rooted if rooted.exists() else path
    if path.is_file():
        return ImageRef(path.stem, path)
    for suffix in IMAGE_SUFFIXES:
        candidate = base / f"{item}{suffix}"
        if candidate.is_file():
            return ImageRef(item, candidate)
    known = sorted(p.stem for p in base.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    raise FileNotFoundError(
        f"image '{item}' not found as a file or in {base}; known names: {', '.join(known)}"
    )


def center_crop(img: np.ndarray, size: int | tuple[int, int] | None) -> np.ndarray:
    """Centre crop (H, W, C) to ``size`` (int or (h, w)); ``None`` keeps the full image."""
    if size is None:
        return img
    h, w = (size, size) if isinstance(size, int) else size
    if h > img.shape[0] or w > img.shape[1]:
        raise ValueError(f"crop {h}x{w} is larger than the image {img.shape[0]}x{img.shape[1]}")
    top, left = (img.shape[0] - h) // 2, (img.shape[1] - w) // 2
    return np.ascontiguousarray(img[top : top + h, left : left + w])
