"""Forward model of deblurring: kernels, the circular blur operator and the degradation."""

from bpdip.physics.blur import Blur, degrade, derive_seed, noise_sigma, otf
from bpdip.physics.kernels import KERNELS, load_kernel, make_kernel, validate_kernel

__all__ = [
    "Blur", "KERNELS", "degrade", "derive_seed", "load_kernel", "make_kernel",
    "noise_sigma", "otf", "validate_kernel",
]
