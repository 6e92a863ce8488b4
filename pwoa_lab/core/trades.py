"""TRADES (Zhang et al. 2019): the adversarial objective HYDRA trains with (HYDRA itself: `pwoa_lab.pruning.scores`
for its learned scores, `pwoa_lab.training.methods.HydraConfig` for the run).

    L = CE(f(x), y) + beta * KL( softmax(f(x)) || softmax(f(x_adv)) ),   beta = 6,

x_adv from PGD-k on that KL, started at x + 0.001 N(0, 1), model in eval mode while attacking. In the training loop
the mix ratio r decides per batch whether it gets its TRADES adversarial counterpart; a batch without one has
x_adv = x, where TRADES is plain CE (r = 1 is standard HYDRA).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from pwoa_lab.core.attacks import check_images, eval_mode
from pwoa_lab.utils import check_eps



# ----------------------------------------------------------------------------------------------- TRADES


def trades_adversarial(model: nn.Module, x: torch.Tensor, eps: float, alpha: float, steps: int,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """TRADES inner max: PGD-`steps` (step `alpha`) on KL(softmax(f(x)) || softmax(f(x_adv))).

    x [B, C, H, W] in [0, 1]; starts at x + 0.001 N(0, 1); every iterate is projected on the eps-ball
    and [0, 1]. The model runs in eval mode (its mode is restored). Returns a detached x_adv [B, C, H, W].
    """
    eps = check_eps(eps)
    check_images(x)
    if steps < 1:
        raise ValueError(f"steps must be >= 1; got {steps}")
    x = x.detach()
    with eval_mode(model):
        with torch.no_grad():
            p_clean = F.softmax(model(x), dim=1)
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        x_adv = _project(x + 0.001 * noise, x, eps)
        for _ in range(steps):
            x_adv.requires_grad_(True)
            kl = F.kl_div(F.log_softmax(model(x_adv), dim=1), p_clean, reduction="sum")
            grad, = torch.autograd.grad(kl, x_adv)
            x_adv = _project(x_adv.detach() + alpha * grad.sign(), x, eps)
    return x_adv.detach()


def _project(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Clip x_adv to the L-inf eps-ball around x and to [0, 1]."""
    return torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)


def trades_objective(logits: torch.Tensor, logits_adv: torch.Tensor, y: torch.Tensor,
                     beta: float = 6.0) -> tuple[torch.Tensor, dict[str, float]]:
    """CE(logits, y) + beta * KL(softmax(logits) || softmax(logits_adv)), KL averaged over the batch.

    logits, logits_adv [B, C]; y [B]. Returns (scalar loss, {"ce", "kl"} as floats).
    """
    ce = F.cross_entropy(logits, y)
    kl = F.kl_div(F.log_softmax(logits_adv, dim=1), F.log_softmax(logits, dim=1), reduction="batchmean",
                  log_target=True)
    return ce + beta * kl, {"ce": ce.item(), "kl": kl.item()}


def trades_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, alpha: float, steps: int,
                beta: float = 6.0) -> tuple[torch.Tensor, dict[str, float]]:
    """The TRADES loss of one batch: x_adv by `trades_adversarial`, then `trades_objective` (model as given,
    usually train mode). Returns (scalar loss, {"ce", "kl"})."""
    x_adv = trades_adversarial(model, x, eps, alpha, steps)
    return trades_objective(model(x), model(x_adv), y, beta)


