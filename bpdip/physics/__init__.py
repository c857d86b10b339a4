"""Forward models: the operator interface (``operator.py``), kernels, the circular blur
operator and the degradation, super-resolution (``sr.py``) and its resize baselines
(``resize.py``)."""

from bpdip.physics.blur import Blur, degrade, derive_seed, noise_sigma, otf
from bpdip.physics.kernels import KERNELS, load_kernel, make_kernel, validate_kernel
from bpdip.physics.operator import Operator
from bpdip.physics.sr import SuperResolution, crop_to_multiple, degrade_sr

__all__ = [
    "KERNELS",
    "Blur",
    "Operator",
    "SuperResolution",
    "crop_to_multiple",
    "degrade",
    "degrade_sr",
    "derive_seed",
    "load_kernel",
    "make_kernel",
    "noise_sigma",
    "otf",
    "validate_kernel",
]
