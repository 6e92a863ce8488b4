"""The inner maximisation of adversarial training (the expensive step PwoA wants to avoid repeating).

    min_theta E_(x,y) max_{||delta||_inf <= eps} CE(f_theta(x + delta), y)

- `pgd`: the inner max by PGD-k with random start (Madry et al. 2018).
- `fgsm_rs`: one FGSM step of 1.25 eps from a random start ("fast" AT, Wong et al. 2020): cheap, but on
  LeNet-3/MNIST it plateaus far below PGD-AT (see the method doc), so the digits and MNIST teachers use `pgd`.
  The CIFAR-10 teacher uses it (one epoch of PGD-10 AT would cost about 6 of FGSM-RS on a CPU). Its known failure,
  catastrophic overfitting (PGD accuracy falls to ~0 within an epoch while FGSM accuracy soars), is guarded by the
  teacher's selection: the weights kept are those of the best validation-PGD epoch, so a collapse rolls back.
- `none`: plain cross-entropy on natural images (the undefended model of the sanity checks).

Teachers are trained by the one training loop: `pwoa_lab.training.methods.TeacherConfig` (eps ramp, best-validation
selection) and `pwoa_lab.experiments.runs.train_teacher`.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from pwoa_lab.core.attacks import eval_mode, pgd_linf, pgd_step_size

AT_METHODS = ("pgd", "fgsm_rs", "none")


def fgsm_rs(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """FGSM from a random start with step 1.25 eps, projected back on the eps-ball and [0, 1]."""
    with eval_mode(model):
        delta = (torch.rand_like(x) * 2 - 1) * eps
        x_adv = (x + delta).clamp(0, 1).requires_grad_(True)
        grad, = torch.autograd.grad(F.cross_entropy(model(x_adv), y), x_adv)
        x_adv = x_adv.detach() + 1.25 * eps * grad.sign()
        return torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)


def adversarial_batch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, method: str, eps: float,
                      steps: int = 10, alpha: float | None = None) -> torch.Tensor:
    """The training inputs of one batch for an AT method (natural inputs for `none` or eps = 0)."""
    if method == "none" or eps == 0:
        return x
    if method == "fgsm_rs":
        return fgsm_rs(model, x, y, eps)
    return pgd_linf(model, x, y, eps, alpha=alpha if alpha is not None else pgd_step_size(eps, steps), steps=steps)
