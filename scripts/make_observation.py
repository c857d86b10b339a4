"""Make the shipped example observation in data/observed/ (README, "A real observation").

An image that is not in Set14 (scikit-image's ``chelsea``, a cat), centre-cropped to 96x96,
blurred circularly with the paper's gaussian kernel (15x15, std 1.6) plus Gaussian noise of
variance 2 (0..255 scale) as bpdip's own degradation does (paper eq. 1), then quantised to
8 bits and saved as a PNG, as a camera would store it. Rounding adds uniform noise of
variance 1/12 (0..255 scale) to the stated variance 2. The kernel is saved beside it.

    python scripts/make_observation.py            # rewrites data/observed/
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from bpdip.data import DATA_ROOT, center_crop
from bpdip.physics import degrade, make_kernel

OUT = DATA_ROOT / "observed"
SEED, NOISE_VAR, CROP = 2026, 2.0, 96


def main(out: Path = OUT) -> None:
    from skimage import data

    x = center_crop(data.chelsea().astype(np.float64) / 255.0, CROP)
    k = make_kernel("gaussian")
    y = degrade(x, k, NOISE_VAR, SEED)
    out.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(np.clip(y, 0, 1) * 255).astype(np.uint8)).save(out / "chelsea_blurred.png")
    np.save(out / "gaussian_kernel.npy", k)
    print(f"wrote {out / 'chelsea_blurred.png'} and {out / 'gaussian_kernel.npy'}")


if __name__ == "__main__":
    main()
