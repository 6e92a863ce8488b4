"""Tests for pwoa_lab.core.hsic against independent numpy float64 references."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pwoa_lab.core.hsic import (biased_hsic, biased_hsic_from_kernels, center, gaussian_kernel, hbar_loss, hsic_xz_yz,
                                label_kernel, normalized_hsic, normalized_hsic_from_kernels, one_hot,
                                pairwise_sq_dists)

# -----------------------------------------------------------------------------
# independent numpy references (explicit H, explicit inverse, explicit loops)


def ref_gaussian(a: np.ndarray, sigma: float) -> np.ndarray:
    a = a.reshape(a.shape[0], -1)
    m, d = a.shape
    k = np.empty((m, m))
    for i in range(m):
        for j in range(m):
            k[i, j] = np.exp(-np.sum((a[i] - a[j]) ** 2) / (2 * sigma**2 * d))
    return k


def ref_label_kernel(y: np.ndarray, c: int) -> np.ndarray:
    oh = np.eye(c)[y]
    return oh @ oh.T


def ref_H(m: int) -> np.ndarray:
    return np.eye(m) - np.ones((m, m)) / m


def ref_center(k: np.ndarray, centering: str) -> np.ndarray:
    h = ref_H(k.shape[0])
    return h @ k @ h if centering == "hkh" else k @ h


def ref_R(kc: np.ndarray, eps: float) -> np.ndarray:
    m = kc.shape[0]
    return kc @ np.linalg.inv(kc + eps * m * np.eye(m))


def ref_nhsic(k: np.ndarray, l: np.ndarray, centering: str = "hkh", eps: float = 1e-5) -> float:
    rk, rl = ref_R(ref_center(k, centering), eps), ref_R(ref_center(l, centering), eps)
    return float(np.trace(rk @ rl))


def ref_biased(k: np.ndarray, l: np.ndarray) -> float:
    m = k.shape[0]
    h = ref_H(m)
    return float(np.trace(k @ h @ l @ h) / (m - 1) ** 2)


def rand(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype)


TOL = {torch.float64: dict(rtol=1e-9, atol=1e-11), torch.float32: dict(rtol=2e-3, atol=1e-5)}

# -----------------------------------------------------------------------------
# kernels


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("sigma", [5.0, 0.7])
def test_gaussian_kernel_matches_reference(dtype, sigma):
    a = rand(9, 2, 3, seed=1, dtype=dtype)  # flattened d = 6
    k = gaussian_kernel(a, sigma)
    assert k.dtype == dtype and k.shape == (9, 9)
    ref = ref_gaussian(a.double().numpy(), sigma)
    np.testing.assert_allclose(k.double().numpy(), ref, **TOL[dtype])
    assert torch.all(torch.diagonal(k) == 1.0)


def test_pairwise_sq_dists_safe():
    a = rand(7, 4, seed=2) * 1e3
    a[3] = a[5]  # duplicate rows: distance must be exactly 0, never negative
    d2 = pairwise_sq_dists(a)
    assert torch.all(d2 >= 0)
    assert torch.all(torch.diagonal(d2) == 0)
    assert d2[3, 5] == 0 and d2[5, 3] == 0
    ref = ((a[:, None, :] - a[None, :, :]) ** 2).sum(-1)
    torch.testing.assert_close(d2, ref, rtol=1e-9, atol=1e-6)


def test_pairwise_sq_dists_gradient_matches_autograd_reference():
    """The Gram matrix's hand-written backward ((dG + dG^T) a) equals autograd through the plain formula."""
    a = rand(9, 5, seed=3).requires_grad_(True)
    torch.autograd.gradcheck(pairwise_sq_dists, (a,))
    w = rand(9, 9, seed=4)
    grad, = torch.autograd.grad((pairwise_sq_dists(a) * w).sum(), a)
    b = a.detach().clone().requires_grad_(True)
    ref = ((b[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    ref_grad, = torch.autograd.grad((ref * w).sum(), b)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-9, atol=1e-9)


def test_one_hot_and_label_kernel():
    y = torch.tensor([0, 2, 1, 2])
    oh = one_hot(y, 3, torch.float64)
    assert oh.tolist() == [[1, 0, 0], [0, 0, 1], [0, 1, 0], [0, 0, 1]]
    k = label_kernel(y, 3, torch.float64)
    np.testing.assert_array_equal(k.numpy(), ref_label_kernel(y.numpy(), 3))
    # already-encoded labels give the same kernel
    torch.testing.assert_close(label_kernel(oh, 3), k)


@pytest.mark.parametrize("centering", ["hkh", "kh"])
def test_center_matches_explicit_H(centering):
    k = gaussian_kernel(rand(8, 5, seed=3), 1.0)
    ref = ref_center(k.numpy(), centering)
    np.testing.assert_allclose(center(k, centering).numpy(), ref, rtol=1e-10, atol=1e-13)


# -----------------------------------------------------------------------------
# estimators vs reference


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("centering", ["hkh", "kh"])
def test_normalized_hsic_matches_reference(dtype, centering):
    a, b = rand(16, 10, seed=4, dtype=dtype), rand(16, 3, 4, seed=5, dtype=dtype)
    got = normalized_hsic(a, b, sigma=5.0, centering=centering).item()
    ref = ref_nhsic(ref_gaussian(a.double().numpy(), 5.0), ref_gaussian(b.double().numpy(), 5.0),
                    centering)
    tol = TOL[dtype] if (dtype == torch.float64 or centering == "hkh") else dict(rtol=5e-3)
    np.testing.assert_allclose(got, ref, **tol)
    assert 0 < got <= 16 - 1 + 1e-6


@pytest.mark.parametrize("centering", ["hkh", "kh"])
def test_normalized_hsic_with_labels_matches_reference(centering):
    z = rand(12, 6, seed=6)
    y = torch.randint(0, 4, (12,), generator=torch.Generator().manual_seed(6))
    got = normalized_hsic_from_kernels(label_kernel(y, 4, torch.float64), gaussian_kernel(z),
                                       centering, eps=1e-4).item()
    ref = ref_nhsic(ref_label_kernel(y.numpy(), 4), ref_gaussian(z.numpy(), 5.0), centering, 1e-4)
    np.testing.assert_allclose(got, ref, rtol=1e-9)


def test_kh_equals_hkh_in_exact_arithmetic():
    # Inside the trace every K is followed by an idempotent H, so both centerings agree.
    a, b = rand(20, 7, seed=7), rand(20, 3, seed=8)
    for sigma in (5.0, 0.5):
        torch.testing.assert_close(normalized_hsic(a, b, sigma, "kh"),
                                   normalized_hsic(a, b, sigma, "hkh"), rtol=1e-8, atol=0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_biased_hsic_matches_reference(dtype):
    a, b = rand(15, 4, seed=9, dtype=dtype), rand(15, 2, 2, seed=10, dtype=dtype)
    for sigma in (5.0, 0.5):
        got = biased_hsic(a, b, sigma).item()
        ref = ref_biased(ref_gaussian(a.double().numpy(), sigma),
                         ref_gaussian(b.double().numpy(), sigma))
        np.testing.assert_allclose(got, ref, **TOL[dtype])


# -----------------------------------------------------------------------------
# properties


def test_symmetry():
    a, b = rand(14, 5, seed=11), rand(14, 8, seed=12)
    torch.testing.assert_close(normalized_hsic(a, b), normalized_hsic(b, a), rtol=1e-10, atol=0)
    torch.testing.assert_close(biased_hsic(a, b, 1.0), biased_hsic(b, a, 1.0), rtol=1e-12, atol=0)
    k, l = gaussian_kernel(a), gaussian_kernel(b)
    torch.testing.assert_close(biased_hsic_from_kernels(k, l), biased_hsic_from_kernels(l, k))


@pytest.mark.parametrize("centering", ["hkh", "kh"])
def test_joint_permutation_invariance(centering):
    a, b = rand(13, 5, seed=13), rand(13, 2, seed=14)
    p = torch.randperm(13, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(normalized_hsic(a[p], b[p], 1.0, centering),
                               normalized_hsic(a, b, 1.0, centering), rtol=1e-9, atol=0)
    torch.testing.assert_close(biased_hsic(a[p], b[p], 1.0), biased_hsic(a, b, 1.0),
                               rtol=1e-10, atol=0)
    # a permutation of only one side breaks the pairing and changes the value
    assert not torch.isclose(biased_hsic(a[p], b, 1.0), biased_hsic(a, b, 1.0), rtol=1e-3)


def _dependent_and_independent(m: int, seed: int):
    x = rand(m, 20, seed=seed)
    w = rand(20, 10, seed=seed + 100)
    z_dep = torch.tanh(x @ w / 20**0.5) * 3 + 0.05 * rand(m, 10, seed=seed + 200)
    z_ind = torch.tanh(rand(m, 20, seed=seed + 300) @ w / 20**0.5) * 3
    return x, z_dep, z_ind


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_biased_hsic_detects_dependence(seed):
    x, z_dep, z_ind = _dependent_and_independent(128, seed)
    dep, ind = biased_hsic(x, z_dep).item(), biased_hsic(x, z_ind).item()
    assert dep > 4 * ind


def test_normalized_hsic_does_not_separate_small_batches():
    """Teaching point: with the wide dimension-scaled kernel nHSIC is about the same
    for independent and dependent data at m = 128 -- it is not an independence test."""
    x, z_dep, z_ind = _dependent_and_independent(128, 0)
    dep, ind = normalized_hsic(x, z_dep).item(), normalized_hsic(x, z_ind).item()
    assert ind > 1.0 and dep > 1.0
    assert 0.5 < dep / ind < 2.0


# -----------------------------------------------------------------------------
# gradients and the HBaR loss


def test_gradcheck_normalized_hsic():
    a = rand(6, 3, seed=15).requires_grad_()
    b = rand(6, 2, seed=16)
    for sigma, centering in [(5.0, "hkh"), (0.5, "hkh"), (0.5, "kh")]:
        assert torch.autograd.gradcheck(
            lambda t: normalized_hsic(t, b, sigma, centering, eps=1e-3), (a,))


def _toy_batch(dtype=torch.float64):
    x = rand(10, 1, 4, 4, seed=17, dtype=dtype)
    y = torch.randint(0, 3, (10,), generator=torch.Generator().manual_seed(17))
    z1 = rand(10, 8, seed=18, dtype=dtype)
    z2 = rand(10, 2, 3, 3, seed=19, dtype=dtype)
    return x, y, [z1, z2]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_hbar_loss_backward(dtype):
    x, y, (z1, z2) = _toy_batch(dtype)
    z1.requires_grad_()
    loss, terms = hbar_loss(x, y, [z1, z2], num_classes=3, lambda_x=1.0, lambda_y=2.0, sigma=1.0)
    assert loss.dtype == dtype and loss.dim() == 0
    loss.backward()
    assert torch.isfinite(z1.grad).all()
    assert z1.grad.abs().sum() > 0
    assert all(isinstance(v, float) for v in terms.hsic_xz + terms.hsic_yz)


@pytest.mark.parametrize("centering", ["hkh", "kh"])
def test_hbar_loss_equals_hand_sum(centering):
    x, y, hiddens = _toy_batch()
    lx, ly, sigma = 0.3, 1.7, 2.0
    loss, terms = hbar_loss(x, y, hiddens, 3, lx, ly, sigma=sigma, centering=centering)
    xz = [normalized_hsic(x, z, sigma, centering).item() for z in hiddens]
    yz = [normalized_hsic_from_kernels(label_kernel(y, 3, torch.float64),
                                       gaussian_kernel(z, sigma), centering).item()
          for z in hiddens]
    np.testing.assert_allclose(terms.hsic_xz, xz, rtol=1e-10)
    np.testing.assert_allclose(terms.hsic_yz, yz, rtol=1e-10)
    expected = sum(lx * a - ly * b for a, b in zip(xz, yz))
    np.testing.assert_allclose(loss.item(), expected, rtol=1e-10)
    # and against the numpy reference
    ref_xz = [ref_nhsic(ref_gaussian(x.numpy(), sigma), ref_gaussian(z.numpy(), sigma), centering)
              for z in hiddens]
    np.testing.assert_allclose(terms.hsic_xz, ref_xz, rtol=1e-8)
    # the logging helper returns the same numbers, without a graph
    logged = hsic_xz_yz(x, y, hiddens, 3, sigma=sigma, centering=centering)
    np.testing.assert_allclose(logged.hsic_xz, xz, rtol=1e-10)
    xz2, yz2 = logged
    np.testing.assert_allclose(yz2, yz, rtol=1e-10)


def test_hbar_loss_zero_lambdas():
    x, y, hiddens = _toy_batch()
    loss, terms = hbar_loss(x, y, hiddens, 3, lambda_x=0.0, lambda_y=0.0)
    assert loss.item() == 0.0
    assert all(v > 0 for v in terms.hsic_xz)  # terms are still logged


def test_hsic_xz_yz_no_grad():
    x, y, (z1, z2) = _toy_batch()
    z1.requires_grad_()
    out = hsic_xz_yz(x, y, [z1, z2], 3)
    assert len(out.hsic_xz) == 2 and len(out.hsic_yz) == 2
    assert all(type(v) is float for v in out.hsic_xz + out.hsic_yz)
    assert torch.is_grad_enabled()  # the no_grad context is left again
    loss, _ = hbar_loss(x, y, [z1, z2], 3, 1.0, 1.0)
    assert loss.requires_grad  # ...so the training loss still builds a graph


# -----------------------------------------------------------------------------
# bad arguments


def test_bad_centering():
    a = rand(5, 3)
    with pytest.raises(ValueError, match="hkh.*kh"):
        normalized_hsic(a, a, centering="hk")
    with pytest.raises(ValueError, match="centering"):
        center(gaussian_kernel(a), "bogus")
    x, y, hiddens = _toy_batch()
    with pytest.raises(ValueError, match="centering"):
        hbar_loss(x, y, hiddens, 3, 1.0, 1.0, centering="HKH")


def test_mismatched_batch_sizes():
    with pytest.raises(ValueError, match="batch size"):
        normalized_hsic(rand(5, 3), rand(6, 3))
    with pytest.raises(ValueError, match="batch size"):
        biased_hsic(rand(5, 3), rand(4, 3))
    x, y, hiddens = _toy_batch()
    with pytest.raises(ValueError, match="batch size"):
        hbar_loss(x, y[:-1], hiddens, 3, 1.0, 1.0)
    with pytest.raises(ValueError, match="batch size"):
        hsic_xz_yz(x, y, [hiddens[0], hiddens[1][:5]], 3)


@pytest.mark.parametrize("sigma", [0.0, -1.0])
def test_bad_sigma(sigma):
    with pytest.raises(ValueError, match="sigma"):
        gaussian_kernel(rand(5, 3), sigma)
    with pytest.raises(ValueError, match="sigma"):
        normalized_hsic(rand(5, 3), rand(5, 3), sigma=sigma)
    x, y, hiddens = _toy_batch()
    with pytest.raises(ValueError, match="sigma"):
        hbar_loss(x, y, hiddens, 3, 1.0, 1.0, sigma=sigma)


def test_batch_too_small():
    with pytest.raises(ValueError, match="at least 2"):
        normalized_hsic(rand(1, 3), rand(1, 3))
    with pytest.raises(ValueError, match="at least 2"):
        biased_hsic(rand(1, 3), rand(1, 3))
    with pytest.raises(ValueError, match="at least 2"):
        hbar_loss(rand(1, 3), torch.tensor([0]), [rand(1, 4)], 2, 1.0, 1.0)


def test_empty_hiddens():
    x, y, _ = _toy_batch()
    with pytest.raises(ValueError, match="hiddens"):
        hbar_loss(x, y, [], 3, 1.0, 1.0)
