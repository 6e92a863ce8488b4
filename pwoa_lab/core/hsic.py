"""HSIC: the Hilbert-Schmidt Independence Criterion, and the HBaR loss built on it.

What HSIC measures
------------------
Given a batch of m paired samples (a_i, b_i), build one kernel (similarity)
matrix per variable, K for A and L for B, both m x m. HSIC is, roughly, the
squared covariance between the two similarity structures: it is large when
samples that look alike in A also look alike in B, and zero in the population
limit exactly when A and B are independent (for characteristic kernels such as
the Gaussian). Kernels used here:

* Gaussian for inputs X and hidden layers Z_j (flattened),
  K_ij = exp(-||a_i - a_j||^2 / (2 sigma^2 d)), d = feature dimension;
  dividing by d keeps the bandwidth sensible for layers of any width.
* Linear for labels Y: one-hot Y (m x C), K = Y Y^T ("same class or not").

Centering
---------
HSIC compares *centered* kernels, with H = I - (1/m) 1 1^T. The textbook
(HBaR paper) form is two-sided, K~ = H K H, and that is our default
("hkh"). The reference HBaR/PwoA code centers on one side only, K~ = K H;
it is available as centering="kh" to reproduce its numbers. In exact
arithmetic the two give the *same* nHSIC and HSIC_b: inside a trace every K
is followed by an idempotent H, so tr(f(KH) g(LH)) = tr(f(HKH) g(HLH)).
They differ only by round-off, and HKH (symmetric) is the better conditioned
of the two, which shows in float32.

Why normalized
--------------
The plain (biased) estimator HSIC_b = tr(K H L H) / (m-1)^2 (Gretton et al.
2005) depends on the scale of each kernel, so values for different layers are
not comparable. HBaR uses the normalized HSIC

    nHSIC(A, B) = tr(R_A R_B),   R = K~ (K~ + eps m I)^(-1),

where R is a "soft projection" onto the directions K~ resolves above the ridge
eps*m. It is scale-free and (for HKH) lies in [0, m-1].

Teaching point
--------------
nHSIC is a good *regularizer signal* but a poor *independence test* on small
batches. With the wide, dimension-scaled Gaussian kernel, K~ of a random
batch has many eigenvalues above the tiny ridge eps*m, so each R is close to
a projection onto a large subspace, and two such projections overlap a lot
whether or not the variables are related: at m = 128 nHSIC is about the same
for independent data as for z = f(x) + noise. The biased HSIC_b, in contrast,
separates the two cases clearly. Use HSIC_b when you want to see dependence;
use nHSIC when you want the HBaR loss.

HBaR loss
---------
    loss = sum_j [ lambda_x * nHSIC(X, Z_j) - lambda_y * nHSIC(Y, Z_j) ]

i.e. squeeze out information about the input (compression, robustness) while
keeping information about the label. Everything runs on the inputs' device and
dtype and is differentiable.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
from torch import Tensor

CENTERINGS = ("hkh", "kh")


# -----------------------------------------------------------------------------
# argument checks


def _check_centering(centering: str) -> None:
    if centering not in CENTERINGS:
        raise ValueError(f"centering must be one of {CENTERINGS}, got {centering!r}")


def _check_sigma(sigma: float) -> None:
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")


def _check_batch(*tensors: Tensor) -> int:
    """Return the common batch size m of `tensors`; it must be >= 2."""
    sizes = [t.shape[0] if t.dim() > 0 else 0 for t in tensors]
    if len(set(sizes)) != 1:
        raise ValueError(f"all inputs must share the batch size, got sizes {sizes}")
    m = sizes[0]
    if m < 2:
        raise ValueError(f"HSIC needs a batch of at least 2 samples, got {m}")
    return m


# -----------------------------------------------------------------------------
# kernels


def flatten(a: Tensor) -> Tensor:
    """(m, ...) -> (m, d) with d = a[0].numel(); integer inputs become float."""
    if not a.is_floating_point():
        a = a.to(torch.get_default_dtype())
    return a.reshape(a.shape[0], -1)


class _Gram(torch.autograd.Function):
    """G = a @ a.T with the backward (dG + dG^T) @ a: one matrix product instead of autograd's two."""

    @staticmethod
    def forward(ctx, a: Tensor) -> Tensor:
        ctx.save_for_backward(a)
        return a @ a.T

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        a, = ctx.saved_tensors
        return (grad + grad.T) @ a


def pairwise_sq_dists(a: Tensor) -> Tensor:
    """Squared Euclidean distances, (m, d) -> (m, m), >= 0 with exact 0 diagonal.

    Everything comes from the Gram matrix G = a a^T (squared norms = its diagonal), so the only work on the
    (m, d) activations is one matrix product forward and one backward (bench/bench_hbar_step.py)."""
    g = _Gram.apply(a)                                   # (m, m)
    sq = torch.diagonal(g)                               # (m,) = ||a_i||^2
    d2 = sq[:, None] + sq[None, :] - 2.0 * g             # (m, m)
    d2 = d2.clamp_min(0.0)                               # round-off can go < 0
    eye = torch.eye(a.shape[0], dtype=torch.bool, device=a.device)
    return d2.masked_fill(eye, 0.0)


def gaussian_kernel(a: Tensor, sigma: float = 5.0) -> Tensor:
    """K_ij = exp(-||a_i - a_j||^2 / (2 sigma^2 d)); a: (m, ...) -> K: (m, m)."""
    _check_sigma(sigma)
    _check_batch(a)
    a = flatten(a)
    d = a.shape[1]
    return torch.exp(-pairwise_sq_dists(a) / (2.0 * sigma**2 * d))


def one_hot(y: Tensor, num_classes: int, dtype: torch.dtype | None = None) -> Tensor:
    """Integer labels (m,) -> one-hot (m, num_classes) in `dtype` (default float)."""
    if y.dim() != 1 or y.is_floating_point():
        raise ValueError(f"labels must be a 1-D integer tensor, got shape {tuple(y.shape)} "
                         f"dtype {y.dtype}")
    dtype = dtype or torch.get_default_dtype()
    return torch.nn.functional.one_hot(y.long(), num_classes).to(dtype)


def label_kernel(y: Tensor, num_classes: int, dtype: torch.dtype | None = None) -> Tensor:
    """Linear kernel Y Y^T of one-hot labels; y: (m,) ints or (m, C) encoded -> (m, m)."""
    _check_batch(y)
    if y.dim() == 1:
        y = one_hot(y, num_classes, dtype)
    else:
        y = y.to(dtype) if dtype is not None else flatten(y)
    return y @ y.T


# -----------------------------------------------------------------------------
# centering and normalization


def center(k: Tensor, centering: str = "hkh") -> Tensor:
    """Centered kernel, (m, m) -> (m, m): H K H ("hkh") or K H ("kh"), H = I - 11^T/m.

    K H subtracts each row's mean; H K H also subtracts each column's mean
    (equivalently: remove row means, remove column means, add back the grand mean).
    """
    _check_centering(centering)
    kh = k - k.mean(dim=1, keepdim=True)                 # K H
    if centering == "kh":
        return kh
    return kh - kh.mean(dim=0, keepdim=True)             # H (K H)


def soft_projection(kc: Tensor, eps: float = 1e-5) -> Tensor:
    """R = K~ (K~ + eps m I)^(-1) for a centered kernel K~: (m, m) -> (m, m).

    K~ and K~ + eps m I commute, so R = (K~ + eps m I)^(-1) K~, computed with a solve.
    """
    m = kc.shape[0]
    eye = torch.eye(m, dtype=kc.dtype, device=kc.device)
    return torch.linalg.solve(kc + eps * m * eye, kc)


def trace_of_product(a: Tensor, b: Tensor) -> Tensor:
    """tr(A B) for (m, m) matrices without forming A B: sum_ij A_ij B_ji."""
    return (a * b.T).sum()


# -----------------------------------------------------------------------------
# HSIC estimators


def normalized_hsic_from_kernels(k: Tensor, l: Tensor, centering: str = "hkh",
                                 eps: float = 1e-5) -> Tensor:
    """nHSIC = tr(R_K R_L) from two raw (uncentered) kernels (m, m) -> scalar (<= m-1 for hkh)."""
    _check_centering(centering)
    _check_batch(k, l)
    rk = soft_projection(center(k, centering), eps)
    rl = soft_projection(center(l, centering), eps)
    return trace_of_product(rk, rl)


def normalized_hsic(a: Tensor, b: Tensor, sigma: float = 5.0, centering: str = "hkh",
                    eps: float = 1e-5) -> Tensor:
    """nHSIC(A, B) with Gaussian kernels on both; a: (m, ...), b: (m, ...) -> scalar."""
    _check_batch(a, b)
    return normalized_hsic_from_kernels(gaussian_kernel(a, sigma), gaussian_kernel(b, sigma),
                                        centering, eps)


def biased_hsic_from_kernels(k: Tensor, l: Tensor) -> Tensor:
    """HSIC_b = tr(K H L H) / (m-1)^2 (Gretton et al. 2005); k, l: (m, m) -> scalar."""
    m = _check_batch(k, l)
    # tr(K H L H) = tr((H K H)(H L H)) because H is idempotent; both are symmetric.
    return (center(k, "hkh") * center(l, "hkh")).sum() / (m - 1) ** 2


def biased_hsic(a: Tensor, b: Tensor, sigma: float = 5.0) -> Tensor:
    """HSIC_b(A, B) with Gaussian kernels on both; a: (m, ...), b: (m, ...) -> scalar."""
    _check_batch(a, b)
    return biased_hsic_from_kernels(gaussian_kernel(a, sigma), gaussian_kernel(b, sigma))


# -----------------------------------------------------------------------------
# the HBaR loss


class HSICTerms(NamedTuple):
    """Per-hidden-layer nHSIC values as plain floats (the information plane).

    A NamedTuple, so both `terms.hsic_xz` and `xz, yz = terms` work.
    """

    hsic_xz: list[float]
    hsic_yz: list[float]


def _hbar_terms(x: Tensor, y: Tensor, hiddens: Sequence[Tensor], num_classes: int,
                sigma: float, centering: str, eps: float) -> tuple[list[Tensor], list[Tensor]]:
    """Per-layer nHSIC(X, Z_j) and nHSIC(Y, Z_j) as scalar tensors (with grad)."""
    _check_centering(centering)
    _check_sigma(sigma)
    if len(hiddens) == 0:
        raise ValueError("hiddens must contain at least one hidden-layer tensor")
    _check_batch(x, y, *hiddens)
    kx = gaussian_kernel(x, sigma)
    # X and Y projections are shared by every layer: compute them once.
    rx = soft_projection(center(kx, centering), eps)
    ry = soft_projection(center(label_kernel(y, num_classes, kx.dtype), centering), eps)
    xz, yz = [], []
    for z in hiddens:
        rz = soft_projection(center(gaussian_kernel(z, sigma), centering), eps)
        xz.append(trace_of_product(rx, rz))
        yz.append(trace_of_product(ry, rz))
    return xz, yz


def hbar_loss(x: Tensor, y: Tensor, hiddens: Sequence[Tensor], num_classes: int,
              lambda_x: float, lambda_y: float, sigma: float = 5.0, centering: str = "hkh",
              eps: float = 1e-5) -> tuple[Tensor, HSICTerms]:
    """HBaR loss sum_j [lambda_x nHSIC(X, Z_j) - lambda_y nHSIC(Y, Z_j)].

    x: (m, ...) inputs, y: (m,) integer labels (or (m, C) one-hot),
    hiddens: list of (m, ...) activations. Returns (scalar loss, per-layer floats).
    """
    xz, yz = _hbar_terms(x, y, hiddens, num_classes, sigma, centering, eps)
    loss = sum(lambda_x * a - lambda_y * b for a, b in zip(xz, yz))
    terms = HSICTerms([t.item() for t in xz], [t.item() for t in yz])
    return loss, terms


@torch.no_grad()
def hsic_xz_yz(x: Tensor, y: Tensor, hiddens: Sequence[Tensor], num_classes: int,
               sigma: float = 5.0, centering: str = "hkh", eps: float = 1e-5) -> HSICTerms:
    """Per-layer nHSIC(X, Z_j) and nHSIC(Y, Z_j) as floats, without building a graph."""
    xz, yz = _hbar_terms(x, y, hiddens, num_classes, sigma, centering, eps)
    return HSICTerms([t.item() for t in xz], [t.item() for t in yz])
