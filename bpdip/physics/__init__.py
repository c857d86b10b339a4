"""Forward models: the operator interface (``operator.py``), kernels, the circular blur
operator and the degradation, super-resolution (``sr.py``) and its resize baselines
(``resize.py``), the valid (non-wrapping) blur of a photograph (``valid.py``) and the
conjugate gradients that BP needs for it (``cg.py``)."""

from bpdip.physics.blur import Blur, degrade, derive_seed, noise_sigma, otf
from bpdip.physics.kernels import KERNELS, load_kernel, make_kernel, validate_kernel
from bpdip.physics.operator import Operator
from bpdip.physics.sr import SuperResolution, crop_to_multiple, degrade_sr
from bpdip.physics.valid import ValidBlur, degrade_valid

__all__ = [
    "KERNELS",
    "Blur",
    "Operator",
    "SuperResolution",
    "ValidBlur",
    "crop_to_multiple",
    "degrade",
    "degrade_sr",
    "degrade_valid",
    "derive_seed",
    "load_kernel",
    "make_kernel",
    "noise_sigma",
    "otf",
    "validate_kernel",
]
