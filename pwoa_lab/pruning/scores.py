"""HYDRA's learned importance scores (Sehwag et al., NeurIPS 2020): robust pruning by learning which weights to keep.

    student <- copy of the robust teacher
    phase 1, score (score_epochs):  every pruned layer computes with W * m(s), m(s) = top-k(abs(s)) (exactly
                                    k = keep_count(numel, rate) ones per layer); W is frozen, only the
                                    importance scores s train, through a straight-through gradient
                                    (d loss / d s := d loss / d m); s starts at sqrt(6 / fan_in) W / max abs(W);
                                    biases and BatchNorm affine parameters are frozen too (BatchNorm
                                    running statistics still update)
    hard prune to m(s) (pruning.apply_masks: pruned weights are exactly 0 from here on)
    phase 2, finetune (finetune_epochs): the kept weights train with the mask frozen; then remove_masks

The loss of both phases is TRADES (`pwoa_lab.core.trades`); the run is `HydraConfig` / `HydraPruning` in
`pwoa_lab.training.methods`, in the one training loop.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from pwoa_lab.pruning.masks import keep_count, prunable_modules, topk_mask
from pwoa_lab.utils import check_rate

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
