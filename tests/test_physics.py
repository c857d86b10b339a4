"""Kernels, the FFT blur operator and the degradation, against direct computations."""

import numpy as np
import pytest
import torch
from scipy import ndimage

from bpdip.physics import Blur, degrade, derive_seed, load_kernel, make_kernel, noise_sigma, otf

PAPER_KERNELS = ["uniform", "radial", "gaussian"]


def circular_convolve(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Direct circular convolution y[i] = sum_a k[a] x[i - (a - c)], c = k.shape // 2."""
    out = np.zeros_like(x)
    c0, c1 = k.shape[0] // 2, k.shape[1] // 2
    for a in range(k.shape[0]):
        for b in range(k.shape[1]):
            out += k[a, b] * np.roll(x, (a - c0, b - c1), axis=(0, 1))
    return out


@pytest.mark.parametrize("name", PAPER_KERNELS)
def test_fft_blur_equals_direct_circular_convolution(name, rng):
    k = make_kernel(name)
    x = rng.random((17, 23, 3))  # odd, non-square, smaller than a period of 2 kernels
    direct = circular_convolve(x, k)
    blur = Blur(k, x.shape[:2])
    got = blur.A(torch.from_numpy(x).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(got, direct, atol=1e-12)
    # scipy's wrap-mode convolution is a second, independent reference
    ref = np.stack([ndimage.convolve(x[..., c], k, mode="wrap") for c in range(3)], -1)
    np.testing.assert_allclose(direct, ref, atol=1e-12)


def test_nonsymmetric_kernel_is_convolution_not_correlation(rng):
    k = rng.random((3, 5))
    k /= k.sum()
    x = rng.random((11, 14, 3))
    blur = Blur(k, x.shape[:2])
    got = blur.A(torch.from_numpy(x).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()
    ref = np.stack([ndimage.convolve(x[..., c], k, mode="wrap") for c in range(3)], -1)
    np.testing.assert_allclose(got, ref, atol=1e-12)


def test_adjoint_identity_and_otf_dc(rng):
    k = rng.random((5, 3))
    k /= k.sum()
    blur = Blur(k, (13, 10))
    x = torch.from_numpy(rng.random((1, 3, 13, 10)))
    y = torch.from_numpy(rng.random((1, 3, 13, 10)))
    lhs = (blur.A(x) * y).sum()
    rhs = (x * blur.A_adjoint(y)).sum()
    assert torch.allclose(lhs, rhs, rtol=1e-12)
    assert abs(otf(k, (13, 10))[0, 0] - 1.0) < 1e-12  # H(0) = sum(h) = 1


def test_paper_kernel_values():
    r = make_kernel("radial")
    grid = np.arange(-7, 8)
    norm = sum(1.0 / (1 + a * a + b * b) for a in grid for b in grid)
    assert r.shape == (15, 15)
    assert r[7, 7] == pytest.approx(1.0 / norm, rel=1e-12)
    assert r[7, 8] == pytest.approx(0.5 / norm, rel=1e-12)  # 1 / (1 + 0 + 1)
    u = make_kernel("uniform")
    assert u.shape == (9, 9) and np.allclose(u, 1 / 81)
    g = make_kernel("gaussian")
    assert g[7, 8] / g[7, 7] == pytest.approx(np.exp(-1 / (2 * 1.6**2)), rel=1e-12)
    for k in (r, u, g):
        assert k.sum() == pytest.approx(1.0, abs=1e-14)
        np.testing.assert_allclose(k, k[::-1, ::-1])
        np.testing.assert_allclose(k, k.T)


def test_user_kernel_files(tmp_path):
    k = np.array([[0.0, 1.0, 0.0], [1.0, 4.0, 1.0], [0.0, 1.0, 0.0]])
    np.save(tmp_path / "k.npy", k)
    (tmp_path / "k.txt").write_text("0 1 0\n1, 4, 1\n0 1 0\n")
    for f in ("k.npy", "k.txt"):
        np.testing.assert_allclose(load_kernel(tmp_path / f), k / 8)
    from PIL import Image

    Image.fromarray((k * 50).astype(np.uint8)).save(tmp_path / "k.png")
    np.testing.assert_allclose(load_kernel(tmp_path / "k.png"), k / 8)
    np.testing.assert_allclose(make_kernel("file", path=tmp_path / "k.npy"), k / 8)


@pytest.mark.parametrize(
    "content, message",
    [
        (np.ones((2, 2, 2)), "must be 2-D"),
        (np.array([[1.0, np.nan]]), "NaN or infinite"),
        (np.array([[1.0, -1.0]]), "sums to 0"),
        (np.array([[-1.0, 0.5]]), "sums to -0.5"),
        (np.array([[0.0, -0.5, 0.0], [-0.5, 3.0, -0.5], [0.0, -0.5, 0.0]]), "4 entries are negative .smallest -0.5.; a blur kernel must be non-negative"),
    ],
)
def test_bad_kernel_files(tmp_path, content, message):
    np.save(tmp_path / "bad.npy", content)
    with pytest.raises(ValueError, match=message):
        load_kernel(tmp_path / "bad.npy")


def test_only_the_interpolation_kernels_have_negative_lobes():
    """bicubic and lanczos2 are signed by definition (imresize, DIP); every blur is not."""
    for name in ("bicubic", "lanczos2"):
        assert make_kernel(name, factor=4).min() < 0
    for name in ("uniform", "radial", "gaussian", "shake"):
        assert make_kernel(name).min() >= 0


def test_kernel_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="kernel file not found"):
        load_kernel(tmp_path / "nope.npy")
    (tmp_path / "ragged.txt").write_text("1 2\n3\n")
    with pytest.raises(ValueError, match="cannot read kernel file"):
        load_kernel(tmp_path / "ragged.txt")
    with pytest.raises(ValueError, match="kernel=file needs kernel.path"):
        make_kernel("file")
    with pytest.raises(ValueError, match="larger than the"):
        otf(np.ones((15, 15)), (10, 40))


def test_noise_statistics_and_reproducibility(rng):
    x = rng.random((96, 80, 3))
    k = make_kernel("gaussian")
    clean = degrade(x, k, 0.0, seed=1)
    np.testing.assert_allclose(clean, circular_convolve(x, k), atol=1e-12)
    for var in (0.3, 2.0, 4.0):
        e = degrade(x, k, var, seed=7) - clean
        assert e.std() == pytest.approx(np.sqrt(var) / 255, rel=0.03)
        assert abs(e.mean()) < 4 * e.std() / np.sqrt(e.size)
    np.testing.assert_array_equal(degrade(x, k, 2.0, seed=7), degrade(x, k, 2.0, seed=7))
    assert not np.array_equal(degrade(x, k, 2.0, seed=7), degrade(x, k, 2.0, seed=8))
    assert noise_sigma(4.0) == pytest.approx(2 / 255)
    # y is neither clipped nor quantised (PROTOCOL "Degradation")
    white = degrade(np.ones((40, 40, 3)), k, 4.0, seed=3)
    assert white.max() > 1.0
    assert not np.allclose(white * 255, np.round(white * 255))


def test_seed_derivation_is_pinned_and_name_dependent():
    assert derive_seed(123, "face", "noise") != derive_seed(123, "comic", "noise")
    # literal values (computed once, when the scheme was fixed): a changed hash, separator
    # or bit shift would silently change every published y and every run id
    assert derive_seed(0, "x") == 9140116420975132322
    assert derive_seed(123, "face", "noise") == 5559446702900652960
    assert derive_seed(0, "face", "noise") == 1975064145080766889


def test_degraded_y_is_pinned():
    """A few samples of y for a fixed image, kernel, variance and derived seed, as literals
    (computed once): any change to the blur, the noise generator, its seeding or the order
    in which the noise is drawn changes a published y and fails here."""
    i, j, c = np.meshgrid(np.arange(16), np.arange(20), np.arange(3), indexing="ij")
    x = ((7 * i + 3 * j + 5 * c) % 11) / 10.0  # a fixed image with no RNG in it
    k = make_kernel("gaussian")
    seed = derive_seed(123, "face", "noise")
    y = degrade(x, k, 2.0, seed)
    pinned = {(0, 0, 0): 0.5422343571275737, (5, 11, 1): 0.49222832649617865, (15, 19, 2): 0.5022666242073213}
    for pos, value in pinned.items():
        assert y[pos] == pytest.approx(value, abs=1e-12, rel=0)
    # the noise part is sigma times numpy's PCG64 normals for that seed, in (H, W, C) order
    e = (y - circular_convolve(x, k)) / noise_sigma(2.0)
    np.testing.assert_allclose(e, np.random.default_rng(seed).standard_normal(x.shape), atol=1e-9)
    noise = {(0, 0, 0): 1.0461250285810615, (5, 11, 1): -0.5645888578802183, (15, 19, 2): -0.6948403634684684}
    for pos, value in noise.items():
        assert e[pos] == pytest.approx(value, abs=1e-9)


@pytest.mark.parametrize("var", [-0.1, float("nan"), float("inf")])
def test_negative_noise_refused(var):
    with pytest.raises(ValueError, match="noise.var must be"):
        noise_sigma(var)


def test_motion_kernel_is_a_centred_line_of_its_length():
    """issue 19's motion kernel: sums to 1, point-symmetric about the centre (so convolution
    and correlation agree, like the paper's kernels), and its spread along the line is a
    uniform segment's, length^2 / 12 (+ 1/6 from the bilinear splat), ~0 across it."""
    for length, angle in ((11, 30), (7, 0), (9, 90)):
        k = make_kernel("shake", length=length, angle=angle)
        assert k.shape[0] == k.shape[1] and k.shape[0] % 2 == 1 and k.sum() == pytest.approx(1.0)
        np.testing.assert_allclose(k, k[::-1, ::-1], atol=1e-12)
        c = k.shape[0] // 2
        r, q = np.meshgrid(np.arange(k.shape[0]) - c, np.arange(k.shape[1]) - c, indexing="ij")
        a = np.deg2rad(angle)
        along, across = q * np.cos(a) - r * np.sin(a), q * np.sin(a) + r * np.cos(a)
        assert (k * along).sum() == pytest.approx(0, abs=1e-12)
        assert (k * along**2).sum() == pytest.approx(length**2 / 12 + 1 / 6, rel=0.05)
        assert (k * across**2).sum() < 0.2
    with pytest.raises(ValueError, match="kernel.length"):
        make_kernel("shake", length=0)
