"""Every operator against dense matrices built without it (issue 14 "Tests"; deepinv-style
property tests): A and A^T, adjointness, the Gram spectrum, (A A^T + eps I)^(-1/2), and
the LS/BP losses in PROTOCOL's normalisation (mean over (channel, frequency, re/im) =
||.||^2 / (2 C))."""

import numpy as np
import pytest
import torch
from scipy import ndimage

from bpdip.losses import BP, LS
from bpdip.physics import Blur, SuperResolution, make_kernel

C = 3


def _random_kernel(shape, seed):
    k = np.random.default_rng(seed).random(shape)
    return k / k.sum()


# id -> (kernel, HR shape, factor; None = Blur). Odd and even sizes, odd and even LR grids,
# symmetric and non-symmetric, odd- and even-sized kernels.
OPERATORS = {
    "blur-gauss5-7x6": (make_kernel("gaussian", size=5, std=1.6), (7, 6), None),
    "blur-rand3x4-5x7": (_random_kernel((3, 4), 0), (5, 7), None),
    "sr1-gauss5-7x6": (make_kernel("gaussian", size=5, std=1.6), (7, 6), 1),
    "sr2-bicubic-8x10": (make_kernel("bicubic", factor=2), (8, 10), 2),
    "sr2-lanczos2-10x8": (make_kernel("lanczos2", factor=2), (10, 8), 2),
    "sr2-gauss5-6x10": (make_kernel("gaussian", size=5, std=1.0), (6, 10), 2),
    "sr2-rand3x4-6x8": (_random_kernel((3, 4), 1), (6, 8), 2),
    "sr3-bicubic-12x15": (make_kernel("bicubic", factor=3), (12, 15), 3),
    "sr3-gauss7-9x15": (make_kernel("gaussian", size=7, std=1.6), (9, 15), 3),  # IDBP's x3 setting
    "sr3-rand4x3-9x6": (_random_kernel((4, 3), 2), (9, 6), 3),
}


def build(name):
    k, shape, factor = OPERATORS[name]
    return Blur(k, shape) if factor is None else SuperResolution(k, shape, factor)


def dense_A(name) -> np.ndarray:
    """Column j = scipy's wrap-mode convolution of the basis image e_j (scipy's origin 0 is
    our roll by -(k // 2), for even sizes too), then every s-th pixel from (s - 1) // 2."""
    k, (h, w), factor = OPERATORS[name]
    s = factor or 1
    p = (s - 1) // 2
    cols = []
    for j in range(h * w):
        e = np.zeros(h * w)
        e[j] = 1.0
        cols.append(ndimage.convolve(e.reshape(h, w), k, mode="wrap")[p::s, p::s].ravel())
    return np.stack(cols, axis=1)


def full_spectrum(half: np.ndarray, w: int) -> np.ndarray:
    """A real, even spectrum on the (h, w) grid from its rfft2 half (g(u) = g(-u))."""
    h = half.shape[0]
    full = np.zeros((h, w))
    full[:, : half.shape[1]] = half
    for v in range(half.shape[1], w):
        full[:, v] = half[(-np.arange(h)) % h, w - v]
    return full


def batch(a: np.ndarray, shape) -> torch.Tensor:
    """(C, n) columns of pixel vectors -> (1, C, h, w) float64."""
    return torch.from_numpy(a.reshape(C, *shape))[None]


@pytest.fixture(params=sorted(OPERATORS))
def case(request, rng):
    name = request.param
    op = build(name)
    A = dense_A(name)
    x = rng.random((C, A.shape[1]))
    y = rng.random((C, A.shape[0]))
    return name, op, A, x, y


def test_shapes_and_phase(case):
    name, op, A, _, _ = case
    s = OPERATORS[name][2] or 1
    assert A.shape == (op.out_shape[0] * op.out_shape[1], op.in_shape[0] * op.in_shape[1])
    assert op.out_shape == (op.in_shape[0] // s, op.in_shape[1] // s)
    if isinstance(op, SuperResolution):
        assert op.phase == (s - 1) // 2


def test_A_and_adjoint_equal_dense_matrices(case):
    _, op, A, x, y = case
    # float64 images, but the OTF is stored in complex64 (Blur.H): float32-accurate taps
    tol = {"rtol": 1e-6, "atol": 1e-8}
    got = op.A(batch(x, op.in_shape))[0].reshape(C, -1).numpy()
    np.testing.assert_allclose(got, x @ A.T, **tol)
    got_t = op.A_adjoint(batch(y, op.out_shape))[0].reshape(C, -1).numpy()
    np.testing.assert_allclose(got_t, y @ A, **tol)
    # adjointness on its own (same OTF both ways, float64 FFTs): <A x, y> = <x, A^T y>
    xt, yt = batch(x, op.in_shape), batch(y, op.out_shape)
    assert float((op.A(xt) * yt).sum()) == pytest.approx(float((xt * op.A_adjoint(yt)).sum()), rel=1e-12)


def test_gram_spectrum_is_the_eigenvalues_of_dense_AAt(case):
    _, op, A, _, _ = case
    h, w = op.out_shape
    G = A @ A.T
    # circulant on the LR grid: every column is the first one shifted
    first = G[:, 0].reshape(h, w)
    for j in range(h * w):
        shifted = np.roll(first, (j // w, j % w), axis=(0, 1))
        np.testing.assert_allclose(G[:, j].reshape(h, w), shifted, atol=1e-12)
    spectrum = op.gram_spectrum()
    assert spectrum.shape == (h, w // 2 + 1) and spectrum.dtype == torch.float32
    eig = np.fft.fft2(first)  # the eigenvalues of a 2-D circulant, in Fourier order
    np.testing.assert_allclose(eig.imag, 0, atol=1e-12)
    np.testing.assert_allclose(spectrum.numpy(), eig.real[:, : w // 2 + 1], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(np.sort(full_spectrum(spectrum.double().numpy(), w).ravel()),
                               np.linalg.eigvalsh(G), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("eps", [1e-2, 0.3])
def test_gram_inv_sqrt_equals_dense_matrix_power(case, eps):
    _, op, A, _, y = case
    evals, evecs = np.linalg.eigh(A @ A.T + eps * np.eye(A.shape[0]))
    inv_sqrt = evecs @ np.diag(evals**-0.5) @ evecs.T
    got = op.gram_inv_sqrt(batch(y, op.out_shape), eps)[0].reshape(C, -1).numpy()
    np.testing.assert_allclose(got, y @ inv_sqrt.T, rtol=1e-5, atol=1e-5 * np.abs(y @ inv_sqrt.T).max())


def test_bp_and_ls_losses_equal_dense_norms(case):
    _, op, A, x, y = case
    eps = 1e-2
    evals, evecs = np.linalg.eigh(A @ A.T + eps * np.eye(A.shape[0]))
    inv_sqrt = evecs @ np.diag(evals**-0.5) @ evecs.T
    r = y - x @ A.T
    xt, yt = batch(x, op.in_shape), batch(y, op.out_shape)
    bp = float(BP(op, yt, sigma=0.0, eps1=0.0, eps2=eps)(xt)[0])
    assert bp == pytest.approx(np.sum((r @ inv_sqrt.T) ** 2) / (2 * C), rel=1e-5)
    ls = float(LS(op, yt)(xt)[0])
    assert ls == pytest.approx(np.sum(r**2) / (2 * C), rel=1e-5)
