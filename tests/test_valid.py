"""The valid blur (issue 19) and BP by conjugate gradients, against dense matrices built
from scipy's linear convolution and numpy's solver: A, A^T, the preconditioner, the solve,
BP's value and gradient; and for a circular blur the CG path against the FFT loss."""

import logging

import numpy as np
import pytest
import torch
from scipy.signal import convolve2d

from bpdip.losses import BP, LS
from bpdip.physics import Blur, make_kernel
from bpdip.physics.cg import CGStats, pcg
from bpdip.physics.valid import ValidBlur, degrade_valid

C = 3
Y_SHAPE = (7, 9)  # y's frame: odd, non-square


def _kernel(shape, seed):
    k = np.random.default_rng(seed).random(shape)
    return k / k.sum()


KERNELS = {"3x3": _kernel((3, 3), 0), "2x4": _kernel((2, 4), 1), "4x3": _kernel((4, 3), 2),
           "gauss5": make_kernel("gaussian", size=5, std=1.6)}


def dense_valid(k, y_shape):
    """Column j: scipy's valid convolution of the basis image e_j of x's grid."""
    xh, xw = y_shape[0] + k.shape[0] - 1, y_shape[1] + k.shape[1] - 1
    cols = []
    for j in range(xh * xw):
        e = np.zeros(xh * xw)
        e[j] = 1.0
        cols.append(convolve2d(e.reshape(xh, xw), k, mode="valid").ravel())
    return np.stack(cols, axis=1)


def t64(a, shape):
    return torch.from_numpy(np.ascontiguousarray(a).reshape(C, *shape))[None]


@pytest.fixture(params=[(k, g) for k in sorted(KERNELS) for g in ("fast", "x")], ids=lambda p: "-".join(p))
def case(request, rng):
    name, grid = request.param
    k = KERNELS[name]
    op = ValidBlur(k, Y_SHAPE, cg_tol=1e-12, cg_max_iter=500, fft_grid=grid)
    if grid == "fast" and name == "3x3":
        assert op.grid == (9, 12) != op.in_shape  # x is 9x11: the FFTs run on a larger grid
    A = dense_valid(k, Y_SHAPE)
    x = rng.random((C, A.shape[1]))
    y = rng.random((C, A.shape[0]))
    return k, op, A, x, y


def test_shapes_and_frame(case):
    k, op, A, _, _ = case
    kh, kw = k.shape
    assert op.in_shape == (7 + kh - 1, 9 + kw - 1) and op.out_shape == Y_SHAPE
    assert A.shape == (63, op.in_shape[0] * op.in_shape[1])
    assert op.frame == ((kh - 1) // 2, (kw - 1) // 2, 7, 9)


def test_A_is_scipy_valid_convolution_and_A_adjoint_its_transpose(case, rng):
    k, op, A, x, y = case
    tol = {"rtol": 1e-6, "atol": 1e-8}  # the OTF is complex64: float32-accurate taps
    xi = rng.random(op.in_shape)
    got = op.A(torch.from_numpy(xi)[None, None])[0, 0].numpy()
    np.testing.assert_allclose(got, convolve2d(xi, k, mode="valid"), **tol)
    np.testing.assert_allclose(op.A(t64(x, op.in_shape))[0].reshape(C, -1).numpy(), x @ A.T, **tol)
    np.testing.assert_allclose(op.A_adjoint(t64(y, op.out_shape))[0].reshape(C, -1).numpy(), y @ A, **tol)
    xt, yt = t64(x, op.in_shape), t64(y, op.out_shape)
    assert float((op.A(xt) * yt).sum()) == pytest.approx(float((xt * op.A_adjoint(yt)).sum()), rel=1e-12)


def test_degrade_valid_is_the_valid_convolution_plus_seeded_noise(rng):
    k = KERNELS["2x4"]
    x = rng.random((9, 12, 3))
    y = degrade_valid(x, k, 2.0, seed=5)
    clean = np.stack([convolve2d(x[..., c], k, mode="valid") for c in range(3)], -1)
    noise = np.sqrt(2.0) / 255 * np.random.default_rng(5).standard_normal(clean.shape)
    np.testing.assert_allclose(y, clean + noise, atol=1e-12)


@pytest.mark.parametrize("eps", [1e-3, 0.1])
def test_gram_apply_preconditioner_and_solve_equal_dense_matrices(case, eps):
    k, op, A, _, y = case
    G = A @ A.T + eps * np.eye(A.shape[0])
    yt = t64(y, op.out_shape)
    np.testing.assert_allclose(op.gram_apply(yt, eps)[0].reshape(C, -1).numpy(), y @ G, rtol=1e-6, atol=1e-8)
    # the preconditioner: the frame's block of the inverse circulant of the FFT grid (SPD)
    big = Blur(k, op.grid)
    n = op.grid[0] * op.grid[1]
    Hd = np.stack([big.A(torch.from_numpy(np.eye(n)[j].reshape(op.grid))[None, None])[0, 0].numpy().ravel()
                   for j in range(n)], axis=1)
    inv = np.linalg.inv(Hd @ Hd.T + eps * np.eye(n))
    top, left, h, w = op.frame
    idx = np.array([(top + i) * op.grid[1] + left + j for i in range(h) for j in range(w)])
    P = inv[np.ix_(idx, idx)]
    assert np.linalg.eigvalsh((P + P.T) / 2).min() > 0
    np.testing.assert_allclose(op.gram_precondition(yt, eps)[0].reshape(C, -1).numpy(), y @ P.T,
                               rtol=1e-5, atol=1e-8)
    stats = CGStats()
    u = op.gram_solve(yt, eps, stats=stats)
    assert u.dtype == torch.float64
    # exact to the tolerance for the operator's own (float32-tap) matrix, which the dense
    # scipy matrix matches to 1e-6 (above); cond ~ 1/eps amplifies that gap in the solve
    G_op = np.stack([op.gram_apply(torch.from_numpy(e.reshape(op.out_shape))[None, None], eps)[0, 0].numpy().ravel()
                     for e in np.eye(63)], axis=1)
    np.testing.assert_allclose(u[0].reshape(C, -1).numpy(), np.linalg.solve(G_op, y.T).T, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(u[0].reshape(C, -1).numpy(), np.linalg.solve(G, y.T).T, rtol=1e-4, atol=1e-6)
    s = stats.summary()
    assert s["solves"] == 1 and 0 < s["iterations_max"][0] < 63 and s["residual_max"][0] <= 1e-12


def test_bp_value_and_gradient_equal_the_dense_formula(case):
    k, op, A, x, y = case
    eps1, eps2, sigma = 0.01, 1e-3, 0.02
    eps = eps1 * sigma**2 + eps2
    M = np.linalg.inv(A @ A.T + eps * np.eye(A.shape[0]))
    r = y - x @ A.T
    scale, n = 63 / 2, C * 63
    xt = t64(x, op.in_shape).requires_grad_(True)
    bp = BP(op, t64(y, op.out_shape), sigma, eps1, eps2)
    assert bp.solved
    value = bp(xt)
    assert float(value[0].detach()) == pytest.approx(scale / n * np.sum(r * (r @ M.T)), rel=1e-5)
    value.sum().backward()
    grad = -2 * scale / n * (r @ M.T) @ A
    np.testing.assert_allclose(xt.grad[0].reshape(C, -1).numpy(), grad, rtol=1e-4, atol=1e-5 * np.abs(grad).max())
    # LS with the valid operator: (h*w/2) * mean over y's frame of r^2
    assert float(LS(op, t64(y, op.out_shape))(t64(x, op.in_shape))[0]) == pytest.approx(
        scale / n * np.sum(r**2), rel=1e-6)


def test_bp_gradcheck_in_float64(rng):
    op = ValidBlur(KERNELS["2x4"], (4, 5), cg_tol=1e-13, cg_max_iter=500)
    y = torch.from_numpy(rng.random((2, 1, 4, 5)))  # two samples, one channel: 80 inputs
    bp = BP(op, y, 0.01)
    bp.y = y  # float64 measurements, so that the whole function is float64
    x = torch.from_numpy(rng.random((2, 1, *op.in_shape))).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: bp(v), (x,), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_forced_cg_on_a_circular_blur_equals_the_fft_loss(rng):
    k = make_kernel("gaussian", size=5, std=1.6)
    op = Blur(k, (11, 13))
    op.cg_tol = 1e-9  # the 1e-6 agreement, from a solve tighter than boundary.cg_tol's 1e-4 default
    y = torch.from_numpy(rng.random((2, C, 11, 13))).float()
    x = torch.from_numpy(rng.random((2, C, 11, 13))).float()
    fft, cg = BP(op, y, 0.02), BP(op, y, 0.02, solver="cg")
    assert not fft.solved and cg.solved
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    va, vb = fft(xa), cg(xb)
    torch.testing.assert_close(vb, va, rtol=1e-6, atol=0)
    va.sum().backward()
    vb.sum().backward()
    torch.testing.assert_close(xb.grad, xa.grad, rtol=1e-5, atol=1e-6 * float(xa.grad.abs().max()))


def test_warm_start_saves_iterations_and_converged_samples_stop(rng):
    op = ValidBlur(make_kernel("gaussian"), (24, 20))
    eps = 1e-3
    r = torch.from_numpy(rng.standard_normal((2, C, 24, 20)))
    r[1] = 0.0  # a sample with nothing to solve: u = 0, no iteration
    u, its, rel, done = pcg(lambda v: op.gram_apply(v, eps), lambda v: op.gram_precondition(v, eps), r, tol=1e-6)
    assert done and its[1] == 0 and float(u[1].abs().max()) == 0 and rel[0] <= 1e-6 and its[0] > 2
    # the true residual, not only CG's recursive one, meets the tolerance
    true = (op.gram_apply(u, eps) - r)[0].norm() / r[0].norm()
    assert float(true) <= 2e-6
    r2 = r + 1e-3 * torch.from_numpy(rng.standard_normal(r.shape))
    _, cold, _, _ = pcg(lambda v: op.gram_apply(v, eps), lambda v: op.gram_precondition(v, eps), r2, tol=1e-6)
    _, warm, _, _ = pcg(lambda v: op.gram_apply(v, eps), lambda v: op.gram_precondition(v, eps), r2, x0=u, tol=1e-6)
    assert warm[0] < cold[0]
    # the preconditioner pays: plain CG needs more iterations for the same tolerance
    _, plain, _, _ = pcg(lambda v: op.gram_apply(v, eps), lambda v: v, r, tol=1e-6, max_iter=1000)
    assert its[0] < plain[0]


def test_how_often_cg_checks_convergence_changes_nothing_it_returns(rng):
    """check_every only decides when the loop notices that every block converged: a block
    stops moving the iteration it converges, so u, the iteration counts and the residuals
    are bit-identical for any check_every (the CPU checks every iteration, a GPU every 4)."""
    op = ValidBlur(make_kernel("gaussian"), (17, 20))
    eps = 1e-3
    r = torch.from_numpy(rng.standard_normal((3, C, 17, 20)))
    r[1] *= 1e-3  # same relative tolerance, but a smoother block converges at another iteration
    r[2] = torch.from_numpy(np.cumsum(np.cumsum(rng.standard_normal((C, 17, 20)), -1), -2))
    runs = [pcg(lambda v: op.gram_apply(v, eps), lambda v: op.gram_precondition(v, eps), r, tol=1e-5,
                check_every=every) for every in (1, 3, 4, None)]
    assert len({tuple(its.tolist()) for _, its, _, _ in runs}) == 1 and len(set(runs[0][1].tolist())) > 1
    for u, its, rel, done in runs[1:]:
        assert torch.equal(u, runs[0][0]) and torch.equal(rel, runs[0][2]) and done


def test_missing_the_tolerance_warns_once_and_goes_on(rng, caplog):
    op = ValidBlur(make_kernel("gaussian"), (24, 20), cg_tol=1e-12, cg_max_iter=2)
    y = torch.from_numpy(rng.random((1, C, 24, 20))).float()
    bp = BP(op, y, 0.0)
    with caplog.at_level(logging.WARNING, logger="bpdip"):
        for _ in range(3):
            x = torch.from_numpy(rng.random((1, C, *op.in_shape))).float()
            assert torch.isfinite(bp(x)).all()
    warnings = [r for r in caplog.records if "conjugate gradients" in r.getMessage()]
    assert len(warnings) == 1 and "relative residual" in warnings[0].getMessage()
    s = bp.cg.summary()
    assert s["solves"] == 3 and s["iterations_max"] == [2.0] and s["residual_max"][0] > 1e-12
