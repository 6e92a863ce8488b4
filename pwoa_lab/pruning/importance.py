"""Other importances and schedules: gradient importance (the magnitude of w * dL/dw), top-k masks of any score,
the cubic sparsity schedule of gradual pruning."""
from __future__ import annotations

import copy
from typing import Mapping

import torch
from torch import nn

from pwoa_lab.pruning.masks import MODES, is_masked, keep_count, prunable_modules, remove_masks
from pwoa_lab.utils import check_choice, check_rate

# ----------------------------------------------------------------------------------------------- importance

def gradient_importance(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn=None, scope: str = "all",
                        batch_size: int = 128) -> dict[str, torch.Tensor]:
    """First-order Taylor (SNIP-style) importance of every prunable weight: {weight name: |w * dL/dw|}.

    x [N, C, H, W] natural images in [0, 1], y [N] labels; L = loss_fn(model(x), y) averaged over all N images
    (default: cross-entropy), computed in chunks of `batch_size` on a copy of `model` in eval mode, so `model`
    (its gradients, BatchNorm statistics, masks) is not touched. On a masked model the effective weights are
    used: a pruned weight (w = 0) scores exactly 0. Each score has its weight's shape, on the model's device.
    """
    loss_fn = loss_fn or torch.nn.functional.cross_entropy
    work = copy.deepcopy(model).eval()
    if is_masked(work):
        remove_masks(work)
    layers = prunable_modules(work, scope)
    for p in work.parameters():
        p.requires_grad_(False)
    for module in layers.values():
        module.weight.requires_grad_(True)
        module.weight.grad = None
    device = next(work.parameters()).device
    n = len(x)
    for i in range(0, n, batch_size):
        xb, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
        (loss_fn(work(xb), yb) * (len(xb) / n)).backward()  # sum of chunk means weighted by size = mean over N
    return {key: (module.weight.detach() * module.weight.grad).abs() for key, module in layers.items()}


def importance_masks(scores: Mapping[str, torch.Tensor], rate: float, mode: str = "layer",
                     within: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Masks {weight name: BoolTensor} keeping the entries of highest score, True = kept.

    scores: {weight name: tensor >= 0 of the weight's shape} (``|w|``, ``gradient_importance``, ...).
    mode="layer": each tensor keeps max(1, round(numel / R)); mode="global": one threshold over all tensors,
    keeping max(1, round(total / R)). `within` (current masks): entries already pruned score below every
    kept one, so a mask can only shrink (iterative pruning never revives a weight while enough remain).
    ``importance_masks({k: w.abs()}, R, mode)`` equals ``magnitude_masks`` for the same weights.
    """
    check_rate(rate)
    check_choice(mode, MODES, "mode")
    if within is not None:
        scores = {k: torch.where(within[k].to(s.device), s, torch.full_like(s, -1.0)) for k, s in scores.items()}
    if mode == "layer":
        return {key: _topk_signed(s, rate) for key, s in scores.items()}
    flat = torch.cat([s.flatten() for s in scores.values()])
    pieces = _topk_signed(flat, rate).split([s.numel() for s in scores.values()])
    return {key: piece.view(s.shape) for (key, s), piece in zip(scores.items(), pieces)}


def _topk_signed(s: torch.Tensor, rate: float) -> torch.Tensor:
    """Like topk_mask(s, k) but on the signed scores (so a score of -1 ranks below 0)."""
    flat = torch.zeros(s.numel(), dtype=torch.bool, device=s.device)
    flat[torch.topk(s.detach().flatten(), keep_count(s.numel(), rate), sorted=False).indices] = True
    return flat.view(s.shape)


def cubic_sparsity(step: int, total_steps: int, final_sparsity: float, initial: float = 0.0) -> float:
    """Gradual pruning's cubic schedule (Zhu & Gupta 2017): the sparsity after `step` of `total_steps`.

    s_t = s_f + (s_i - s_f) (1 - t / n)^3 for t in [0, n] (clamped outside): s_0 = s_i, s_n = s_f exactly, never
    decreasing when s_f >= s_i; fast at first, slow at the end, when fewer weights are left to remove.
    """
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1; got {total_steps}")
    if not (0.0 <= initial <= final_sparsity < 1.0):
        raise ValueError(f"need 0 <= initial <= final_sparsity < 1; got {initial}, {final_sparsity}")
    t = min(max(step, 0), total_steps) / total_steps
    return final_sparsity + (initial - final_sparsity) * (1.0 - t) ** 3
