"""HYDRA (Sehwag et al., NeurIPS 2020): robust pruning by learning which weights to keep, the paper's baseline.

    student <- copy of the robust teacher
    phase 1, score (score_epochs):  every pruned layer computes with W * m(s), m(s) = top-k(|s|) (exactly
                                    k = keep_count(numel, rate) ones per layer); W is frozen, only the
                                    importance scores s train, through a straight-through gradient
                                    (d loss / d s := d loss / d m); s starts at sqrt(6 / fan_in) W / max|W|;
                                    biases and BatchNorm affine parameters are frozen too (BatchNorm
                                    running statistics still update)
    hard prune to m(s) (pruning.apply_masks: pruned weights are exactly 0 from here on)
    phase 2, finetune (finetune_epochs): the kept weights train with the mask frozen; then remove_masks

Loss in both phases: TRADES (Zhang et al. 2019), an adversarial-example loss,

    L = CE(f(x), y) + beta * KL( softmax(f(x)) || softmax(f(x_adv)) ),   beta = 6,

x_adv from PGD-k on that KL, started at x + 0.001 N(0, 1), model in eval mode while attacking.
This module holds the pieces (scores, TRADES); the run itself is `pwoa_lab.methods.HydraConfig` /
`HydraPruning` in the one training loop. Mix ratio r there: with probability r a batch gets its TRADES
adversarial counterpart; a batch without one has x_adv = x, where TRADES is plain CE (r = 1 is standard HYDRA).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attacks import check_images, eval_mode
from .pruning import keep_count, prunable_modules, topk_mask
from .utils import check_eps, check_rate

# PGD steps of the TRADES inner maximisation while training (the dataset's evaluation steps are larger)
TRAIN_PGD_STEPS = {"digits": 10, "mnist": 10, "fashion_mnist": 10, "cifar10": 10, "cifar100": 10}


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


# ----------------------------------------------------------------------------------------------- scores


def initial_scores(weight: torch.Tensor) -> torch.Tensor:
    """HYDRA's score init sqrt(6 / fan_in) * W / max|W| (same shape as W; fan_in = W[0].numel())."""
    w = weight.detach()
    scale = w.abs().max().clamp_min(1e-12)
    return (6.0 / w[0].numel()) ** 0.5 * w / scale


class TopKStraightThrough(torch.autograd.Function):
    """Forward: the 0/1 mask of the k largest |scores| (float, scores' shape). Backward: identity."""

    @staticmethod
    def forward(ctx, scores: torch.Tensor, k: int) -> torch.Tensor:
        return topk_mask(scores, k).to(scores.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad, None


class ScoredLayer(nn.Module):
    """A conv/linear layer that computes with W * top-k(|scores|); holds the original `layer` and `scores`."""

    def __init__(self, layer: nn.Module, k: int) -> None:
        super().__init__()
        self.layer = layer
        self.k = k
        self.scores = nn.Parameter(initial_scores(layer.weight))

    def mask(self) -> torch.Tensor:
        """The current mask (0/1, the weight's shape), with the straight-through gradient to `scores`."""
        return TopKStraightThrough.apply(self.scores, self.k)

    def masked_weight(self) -> torch.Tensor:
        return self.layer.weight * self.mask()


class ScoredConv2d(ScoredLayer):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer._conv_forward(x, self.masked_weight(), self.layer.bias)  # handles padding modes


class ScoredLinear(ScoredLayer):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.masked_weight(), self.layer.bias)


def add_scores(model: nn.Module, rate: float, scope: str = "all") -> dict[str, ScoredLayer]:
    """In place: freeze every parameter of `model`, then replace each prunable layer by a Scored layer
    keeping k = keep_count(numel, rate) weights. Returns {weight name ("conv1.weight"): scored layer}."""
    rate = check_rate(rate)
    for p in model.parameters():
        p.requires_grad_(False)
    layers = prunable_modules(model, scope)
    if not layers:
        raise ValueError(f"the model has no prunable layers for scope={scope!r}")
    scored = {}
    for key, layer in layers.items():
        cls = ScoredConv2d if isinstance(layer, nn.Conv2d) else ScoredLinear
        scored[key] = cls(layer, keep_count(layer.weight.numel(), rate))
        _replace_module(model, key[: -len(".weight")], scored[key])
    return scored


def score_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """{weight name: BoolTensor}, the top-k(|scores|) mask of every Scored layer (exactly k True each)."""
    return {f"{name}.weight": topk_mask(m.scores, m.k) for name, m in model.named_modules()
            if isinstance(m, ScoredLayer)}


def remove_scores(model: nn.Module) -> dict[str, torch.Tensor]:
    """In place: put the plain layers back (weights unchanged, all parameters trainable); returns
    `score_masks` for `pruning.apply_masks`."""
    masks = score_masks(model)
    for key in masks:
        name = key[: -len(".weight")]
        _replace_module(model, name, model.get_submodule(name).layer)
    for p in model.parameters():
        p.requires_grad_(True)
    return masks


def _replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """model.<name> = new, for dotted names ("blocks.0.conv1")."""
    if not name:
        raise ValueError("the model itself is a single layer; wrap it in an nn.Sequential")
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent), child, new)
