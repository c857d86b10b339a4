"""LS, BP and TV against dense-matrix and hand-worked references (PROTOCOL "Losses")."""

import numpy as np
import pytest
import torch
from scipy import ndimage

from bpdip.losses import BP, LS, Loss, make_loss, tv
from bpdip.physics import Blur, make_kernel

H, W, C = 6, 7, 3
WELL_CONDITIONED = np.array([[0.0, 0.1, 0.0], [0.1, 0.6, 0.1], [0.0, 0.1, 0.0]])  # |H| >= 0.2


def dense_blur(k: np.ndarray, h: int, w: int) -> np.ndarray:
    """A as an explicit (h*w) x (h*w) matrix, column j = circular convolution of basis e_j."""
    cols = []
    for j in range(h * w):
        e = np.zeros(h * w)
        e[j] = 1.0
        cols.append(ndimage.convolve(e.reshape(h, w), k, mode="wrap").ravel())
    return np.stack(cols, axis=1)


def to_t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a).permute(2, 0, 1)[None]


@pytest.fixture
def problem(rng):
    x = rng.random((H, W, C))
    y = rng.random((H, W, C))
    return x, y


def test_bp_equals_pseudoinverse_form_of_eq7(problem):
    x, y = problem
    A = dense_blur(WELL_CONDITIONED, H, W)
    A_pinv = np.linalg.pinv(A)
    r = (y - np.stack([(A @ x[..., c].ravel()).reshape(H, W) for c in range(C)], -1))
    eq7 = sum(np.sum((A_pinv @ r[..., c].ravel()) ** 2) for c in range(C))
    bp = BP(Blur(WELL_CONDITIONED, (H, W)), to_t(y), sigma=0.0, eps1=0.0, eps2=0.0)
    # PROTOCOL: mean over (channel, frequency, re/im) = ||.||^2 / (2 C) by Parseval
    assert float(bp(to_t(x))[0]) == pytest.approx(eq7 / (2 * C), rel=1e-5)


def test_regularised_bp_equals_dense_inverse_square_root(problem):
    x, y = problem
    k = make_kernel("gaussian", size=5, std=1.6)  # ill-conditioned on purpose
    sigma, eps1, eps2 = 2.0 / 255, 0.01, 1e-3
    A = dense_blur(k, H, W)
    evals, evecs = np.linalg.eigh(A @ A.T + (eps1 * sigma**2 + eps2) * np.eye(H * W))
    inv_sqrt = evecs @ np.diag(evals**-0.5) @ evecs.T
    r = y - np.stack([(A @ x[..., c].ravel()).reshape(H, W) for c in range(C)], -1)
    eq8 = sum(np.sum((inv_sqrt @ r[..., c].ravel()) ** 2) for c in range(C))
    bp = BP(Blur(k, (H, W)), to_t(y), sigma=sigma, eps1=eps1, eps2=eps2)
    assert float(bp(to_t(x))[0]) == pytest.approx(eq8 / (2 * C), rel=1e-5)


@pytest.mark.parametrize("kernel", ["uniform", "radial", "gaussian"])
def test_bp_matches_protocol_full_spectrum_definition(kernel, rng):
    """PROTOCOL: mean over (channel, frequency, re/im) of |W R|^2, full complex FFT."""
    h, w = 21, 18
    x, y = rng.random((h, w, C)), rng.random((h, w, C))
    k = make_kernel(kernel)
    blur = Blur(k, (h, w))
    Hf = blur.H_full
    sigma = np.sqrt(2.0) / 255
    Wf = 1 / np.sqrt(np.abs(Hf) ** 2 + 0.01 * sigma**2 + 1e-3)
    R = np.fft.fft2(y, axes=(0, 1)) - Hf[..., None] * np.fft.fft2(x, axes=(0, 1))
    ref_bp = np.mean(np.stack([(Wf[..., None] * R).real, (Wf[..., None] * R).imag]) ** 2)
    ref_ls = np.mean(np.stack([R.real, R.imag]) ** 2)
    got_bp = float(BP(blur, to_t(y), sigma)(to_t(x))[0])
    got_ls = float(LS(blur, to_t(y))(to_t(x))[0])
    assert got_bp == pytest.approx(ref_bp, rel=1e-5)
    assert got_ls == pytest.approx(ref_ls, rel=1e-5)


def test_ls_is_half_hw_times_pixel_mse(problem):
    x, y = problem
    k = make_kernel("uniform", size=3)
    Ax = np.stack([ndimage.convolve(x[..., c], k, mode="wrap") for c in range(C)], -1)
    expected = (H * W / 2) * np.mean((y - Ax) ** 2)
    assert float(LS(Blur(k, (H, W)), to_t(y))(to_t(x))[0]) == pytest.approx(expected, rel=1e-5)


def test_tv_hand_worked():
    # channel 0: [[0, 1, 1], [3, 3, 0]]  vertical |3-0|+|3-1|+|0-1| = 6, horizontal 1+0+0+3 = 4
    # channel 1: twice channel 0 -> 20; channel 2: constant -> 0.   Total 30.
    c0 = torch.tensor([[0.0, 1.0, 1.0], [3.0, 3.0, 0.0]])
    x = torch.stack([c0, 2 * c0, torch.full_like(c0, 5.0)])[None]
    assert float(tv(x)[0]) == 30.0
    # no wrap-around: a ramp has TV from its steps only
    ramp = torch.arange(4.0).repeat(3, 4, 1)[None]
    assert float(tv(ramp)[0]) == 3 * 4 * 3


def test_loss_adds_weighted_tv_per_sample(rng):
    h, w = 16, 15
    blur = Blur(make_kernel("radial", size=5), (h, w))
    y = torch.from_numpy(rng.random((2, 3, h, w))).float()
    x = torch.from_numpy(rng.random((2, 3, h, w))).float()
    fid = BP(blur, y, sigma=0.01)
    loss = Loss(fid, tv_weight=1e-3)
    values = loss(x)
    assert values.shape == (2,)
    torch.testing.assert_close(values, fid(x) + 1e-3 * tv(x))
    # per-sample: each value only depends on its own sample
    single = BP(blur, y[1:], sigma=0.01)
    torch.testing.assert_close(values[1], (single(x[1:]) + 1e-3 * tv(x[1:]))[0])
    via_config = make_loss("bp", blur, y, 0.01, tv_weight=1e-3, eps1=0.01, eps2=1e-3)
    torch.testing.assert_close(via_config(x), values)


def test_bad_loss_settings():
    blur = Blur(WELL_CONDITIONED, (8, 8))
    y = torch.zeros(1, 3, 8, 8)
    with pytest.raises(ValueError, match="unknown loss.fidelity 'l2'"):
        make_loss("l2", blur, y, 0.0)
    with pytest.raises(ValueError, match="tv_weight must be >= 0"):
        make_loss("ls", blur, y, 0.0, tv_weight=-1)
    with pytest.raises(ValueError, match="eps1 and loss.eps2 must be >= 0"):
        make_loss("bp", blur, y, 0.0, eps2=-1e-3)
    with pytest.raises(ValueError, match="OTF has zeros"):
        make_loss("bp", Blur(np.ones((2, 1)), (8, 8)), y, 0.0, eps1=0.0, eps2=0.0)
