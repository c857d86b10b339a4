"""Test images: Set14 shipped in ``data/Set14`` and the user's own files.

Images are returned as ``float64`` arrays of shape (H, W, 3) in [0, 1] (uint8 / 255), as
PROTOCOL "Data" fixes: grayscale is replicated to three channels, alpha is refused.
16-bit files (PNG and TIFF, grayscale or RGB) are read at their full depth (uint16 /
65535, 65,536 levels); a file whose samples Pillow would cut to 8 bits and that no reader
here takes whole (e.g. 32-bit float) is refused with one line, never quietly reduced.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

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


class ImageRead(NamedTuple):
    """An image as the runs see it, and what the file held."""

    pixels: np.ndarray  # (H, W, 3) float64 in [0, 1]
    bit_depth: int  # bits per sample read from the file: 8 or 16
    channels: int  # what the file stores: 1 (grayscale, replicated to three) or 3


GRAY16_MODES = ("I;16", "I;16B", "I;16L", "I")  # Pillow's modes for 16-bit grayscale
# Pillow's raw modes of 16-bit RGB samples: its "RGB" image keeps only the high byte
RGB16_RAWMODES = {"RGB;16B": "RGB;16L", "RGB;16L": "RGB;16B", "RGB;16N": None}


def load_image(path: str | Path) -> np.ndarray:
    """Read an 8- or 16-bit image as RGB float64 in [0, 1], shape (H, W, 3)."""
    return read_image(path).pixels


def read_image(path: str | Path) -> ImageRead:
    """Read an image at its full bit depth (module docstring); ValueError: one line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path} (check the name or path)")
    try:
        img = Image.open(path)
        rawmode = _rawmode(img)
        img.load()
    except Exception as exc:  # PIL raises several types for unreadable files
        raise ValueError(f"cannot read image {path}: {exc} (is it a PNG/BMP/TIFF/JPEG?)") from None
    if "A" in img.mode or (img.mode == "P" and "transparency" in img.info):
        raise ValueError(
            f"image {path} has an alpha channel (mode {img.mode}); "
            "save it as RGB or grayscale without transparency"
        )
    if img.mode == "RGB" and rawmode in RGB16_RAWMODES:
        return ImageRead(_rgb16(path, img, rawmode) / 65535.0, 16, 3)
    if img.mode in GRAY16_MODES:
        arr = np.asarray(img, dtype=np.float64)
        if arr.max(initial=0) > 65535 or arr.min(initial=0) < 0:  # mode I also holds 32-bit integers
            raise ValueError(_not_whole(path, f"{img.mode} samples outside 0..65535"))
        return ImageRead(_rgb(arr / 65535.0), 16, 1)
    if img.mode in ("F", "I;32", "I;32B", "I;32L") or (rawmode or "").endswith((";16B", ";16L", ";16N")):
        raise ValueError(_not_whole(path, f"mode {img.mode}, raw {rawmode}"))
    channels = 1 if img.mode in ("1", "L") else 3  # a palette holds RGB colours
    if img.mode not in ("L", "RGB"):
        img = img.convert("RGB")
    return ImageRead(_rgb(np.asarray(img, dtype=np.float64) / 255.0), 8, channels)


def _rgb(arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    return np.ascontiguousarray(np.clip(arr, 0.0, 1.0))


def _rawmode(img: Image.Image) -> str | None:
    """How the file stores its samples (Pillow's tile raw mode), e.g. ``RGB;16B``."""
    tile = getattr(img, "tile", None) or []
    args = tile[0].args if tile and hasattr(tile[0], "args") else (tile[0][3] if tile else None)
    return args if isinstance(args, str) else (args[0] if args and isinstance(args[0], str) else None)


def _rgb16(path: Path, img: Image.Image, rawmode: str) -> np.ndarray:
    """The uint16 samples of a 16-bit RGB file, (H, W, 3) float64.

    TIFF: tifffile (scikit-image's reader) reads them whole. PNG: Pillow decodes (inflates
    and unfilters) the file itself, but its "RGB" image keeps one byte of each sample, the
    one its raw mode names as the high byte; decoding once as big- and once as
    little-endian keeps each byte of the sample in turn (tests/test_data.py checks it
    against a PNG written from the specification)."""
    h, w = img.size[1], img.size[0]
    if img.format == "TIFF":
        import tifffile

        arr = np.asarray(tifffile.imread(path, key=0))
        if arr.shape == (3, h, w):  # planar configuration: one plane per channel
            arr = np.moveaxis(arr, 0, -1)
        if arr.shape != (h, w, 3) or arr.dtype != np.uint16:
            raise ValueError(_not_whole(path, f"tifffile read {arr.dtype} {arr.shape}"))
        return arr.astype(np.float64)
    swapped = RGB16_RAWMODES.get(rawmode)
    if img.format != "PNG" or swapped is None:
        raise ValueError(_not_whole(path, f"{img.format} {rawmode}"))
    high = np.asarray(img, dtype=np.float64)
    with Image.open(path) as again:
        again.tile = [(*t[:3], swapped) for t in again.tile]  # (codec, extents, offset, raw mode)
        again.load()
        low = np.asarray(again, dtype=np.float64)
    return high * 256.0 + low


def _not_whole(path: Path, what: str) -> str:
    return (f"image {path} cannot be read at its full bit depth ({what}); save it as an 8- or 16-bit "
            "PNG or TIFF (RGB or grayscale)")


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
