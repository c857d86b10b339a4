"""Forward models: the operator interface (``operator.py``), kernels, the circular blur
operator and the degradation."""

from bpdip.physics.blur import Blur, degrade, derive_seed, noise_sigma, otf
from bpdip.physics.kernels import KERNELS, load_kernel, make_kernel, validate_kernel
from bpdip.physics.operator import Operator

__all__ = [
    "Blur", "KERNELS", "Operator", "degrade", "derive_seed", "load_kernel", "make_kernel",
    "noise_sigma", "otf", "validate_kernel",
]
