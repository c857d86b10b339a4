"""Make the shipped example observation in data/observed/ as a camera makes it (docs/photographs.md,
"The shipped example"; issue 19).

An image that is not in Set14 (scikit-image's ``chelsea``, a cat) is blurred *linearly*:
the 96x96 centre crop grown by the kernel's reach (110x110 for the paper's 15x15 gaussian)
is convolved and only the valid 96x96 part is kept (``bpdip.physics.valid.degrade_valid``),
so the blur at the frame's edge mixes in scene pixels from outside the frame and nothing
wraps around. Gaussian noise of variance 2 (0..255 scale) is added, and the result is
clipped and quantised to 8 bits as a camera stores it (rounding adds uniform noise of
variance 1/12 on the 0..255 scale to the stated variance 2).

Files written into ``data/observed/``:

``chelsea_blurred.png``   y, the observation (96x96, 8-bit RGB): what ``data=observed`` reads
``gaussian_kernel.npy``   the kernel (15x15, std 1.6, sum 1)
``chelsea_truth.png``     the ground truth on y's frame (the 96x96 centre crop), for checking
                          a restoration by hand only: no run reads it

    python scripts/make_observation.py            # rewrites data/observed/
    python scripts/make_observation.py --out DIR  # writes the three files into DIR instead
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bpdip.data import DATA_ROOT  # noqa: E402
from bpdip.physics import degrade_valid, make_kernel  # noqa: E402
from bpdip.physics.valid import crop_hw  # noqa: E402
from bpdip.runner.boundary import BoundarySettings  # noqa: E402

OUT = DATA_ROOT / "observed"
SEED, NOISE_VAR, CROP = 2026, 2.0, 96


def quantise(y: np.ndarray) -> np.ndarray:
    """What a camera stores: clipped to [0, 1], rounded to 8 bits."""
    return np.round(np.clip(y, 0.0, 1.0) * 255.0).astype(np.uint8)


def observe(image: np.ndarray, kernel: np.ndarray, crop: int, noise_var: float, seed: int):
    """(y as uint8 (crop, crop, 3), the truth on y's frame (float64)) for an (H, W, 3) image
    in [0, 1]: the crop grown by the kernel's reach, blurred linearly (valid part), noised,
    quantised. ValueError (one line) if the image cannot hold the grown crop."""
    valid = BoundarySettings("valid")
    x = valid.window(image, crop, kernel)
    y = degrade_valid(x, kernel, noise_var, seed)
    return quantise(y), crop_hw(x, valid.frame(x.shape[:2], kernel))


def main(out: Path = OUT) -> None:
    from skimage import data

    k = make_kernel("gaussian")
    y, truth = observe(data.chelsea().astype(np.float64) / 255.0, k, CROP, NOISE_VAR, SEED)
    out.mkdir(parents=True, exist_ok=True)
    Image.fromarray(y).save(out / "chelsea_blurred.png")
    Image.fromarray(quantise(truth)).save(out / "chelsea_truth.png")
    np.save(out / "gaussian_kernel.npy", k)
    print(f"wrote {out / 'chelsea_blurred.png'}, {out / 'chelsea_truth.png'} and {out / 'gaussian_kernel.npy'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"folder for the three files (default {OUT})")
    main(parser.parse_args().out)
