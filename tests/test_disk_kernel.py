"""kernel=disk (issue 32's defocus blur): each pixel's weight is its area inside the disk,
against the exact area of a square inside a circle by numerical integration."""

import numpy as np
import pytest
from scipy.integrate import quad

from bpdip.physics import make_kernel


def area_inside(x0, x1, y0, y1, r):
    """Area of [x0, x1] x [y0, y1] inside the circle of radius r, by integrating over x."""
    def height(x):
        if abs(x) >= r:
            return 0.0
        h = np.sqrt(r * r - x * x)
        return max(0.0, min(y1, h) - max(y0, -h))
    return quad(height, x0, x1, limit=200)[0]


@pytest.mark.parametrize("radius", [1.5, 3.5])
def test_the_disk_weights_are_the_pixel_areas_inside_the_circle(radius):
    k = make_kernel("disk", radius=radius)
    size = k.shape[0]
    c = size // 2
    exact = np.array([[area_inside(j - c - 0.5, j - c + 0.5, i - c - 0.5, i - c + 0.5, radius) for j in range(size)]
                      for i in range(size)])
    np.testing.assert_allclose(k, exact / exact.sum(), atol=2e-3 / size**2 * 10)
    assert k.sum() == pytest.approx(1.0) and np.allclose(k, k.T) and np.allclose(k, k[::-1])
    assert size == 2 * int(np.ceil(radius - 0.5)) + 1  # the smallest odd grid that holds the disk
    # its transfer function has (near) zeros: what makes BP's weight amplify noise (issue 32)
    assert np.abs(np.fft.fft2(k, (96, 96))).min() < 1e-2


def test_a_bad_radius_is_one_clear_line():
    with pytest.raises(ValueError, match="kernel.radius must be a number > 0"):
        make_kernel("disk", radius=-1)
