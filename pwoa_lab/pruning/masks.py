"""Which weights a scope prunes, top-k masks, the hard prune with torch.nn.utils.prune, and the sparsity report.

A pruning rate R keeps 1/R of each pruned weight tensor: k = max(1, round(numel / R)) entries survive.
`check_rate_fits` refuses a rate that would leave fewer than `defaults.MIN_KEPT_WEIGHTS` (10) weights in a pruned
layer (in mode "global": in all of them together), naming the largest rate that keeps them.
"""
from __future__ import annotations

import copy
import math
import numbers
from typing import Mapping

import pandas as pd
import torch
from torch import nn
from torch.nn.utils import prune

from pwoa_lab import defaults
from pwoa_lab.utils import check_choice, check_rate

SCOPES = ("all", "hidden", "convs", "reference")
REFERENCE_NAME = "fc.weight"  # scope "reference": a linear weight is pruned iff its name contains this
MODES = ("layer", "global")


# ----------------------------------------------------------------------------------------------- which weights

def keep_count(numel: int, rate: float) -> int:
    """How many of `numel` weights survive pruning at rate R: max(1, round(numel / R))."""
    return max(1, round(numel / check_rate(rate)))


def largest_rate(model: nn.Module, scope: str = "all", mode: str = "layer",
                 min_kept: int = defaults.MIN_KEPT_WEIGHTS) -> tuple[float, str, int]:
    """The largest rate that leaves `min_kept` weights in every layer `scope` prunes (mode "global": in all of
    them together), rounded down to 0.1: (rate, the layer that limits it, its number of weights)."""
    check_choice(mode, MODES, "mode")
    sizes = {key: module.weight.numel() for key, module in prunable_modules(model, scope).items()}
    if not sizes:
        raise ValueError(f"scope {scope!r} prunes no layer of this model; use scope 'all'")
    if mode == "global":
        key, numel = "all pruned layers together", sum(sizes.values())
    else:
        key = min(sizes, key=sizes.get)
        numel = sizes[key]
    # keep_count rounds numel / R: it keeps min_kept weights down to numel / R = min_kept - 0.5
    return math.floor(10 * numel / (min_kept - 0.5)) / 10, key, numel


def check_rate_fits(model: nn.Module, rate: float, scope: str = "all", mode: str = "layer") -> float:
    """`rate` if every layer `scope` prunes keeps at least `defaults.MIN_KEPT_WEIGHTS` weights at it, else a
    ValueError with the largest rate that does (checked before training: past it the model is at chance level)."""
    rate = check_rate(rate)
    most, key, numel = largest_rate(model, scope, mode)
    kept = keep_count(numel, rate)
    if kept < defaults.MIN_KEPT_WEIGHTS:
        raise ValueError(
            f"rate {rate:g} would leave {kept} of the {numel:,} weights of {key} (scope {scope}); the kit refuses "
            f"rates that leave fewer than {defaults.MIN_KEPT_WEIGHTS} weights in a pruned layer (such a model is at "
            f"chance level). The largest rate here is {most:g}: use a rate of at most {most:g}"
            + (", or a scope that leaves the small layers dense (e.g. hidden)" if scope in ("all", "convs",
                                                                                             "reference") else ""))
    return rate


def _layer_types(scope: str) -> tuple[type[nn.Module], ...]:
    check_choice(scope, SCOPES, "scope")
    return (nn.Conv2d,) if scope == "convs" else (nn.Conv2d, nn.Linear)


def prunable_modules(model: nn.Module, scope: str = "all") -> dict[str, nn.Module]:
    """The layers whose ``.weight`` is pruned, keyed by weight name (``"conv1.weight"``), in model order.

    scope="hidden" drops the first conv/linear layer and the last linear layer of "all" (model order);
    scope="reference" keeps every conv and the linear layers whose weight name contains "fc.weight"."""
    types = _layer_types(scope)
    layers = {f"{name}.weight" if name else "weight": module
              for name, module in model.named_modules() if isinstance(module, types)}
    if scope == "reference":
        layers = {key: module for key, module in layers.items()
                  if isinstance(module, nn.Conv2d) or REFERENCE_NAME in key}
    if scope == "hidden":
        keys = list(layers)
        last_linear = [k for k in keys if isinstance(layers[k], nn.Linear)][-1:]
        for key in keys[:1] + last_linear:
            layers.pop(key, None)
    return layers


def effective_weight(module: nn.Module, name: str = "weight") -> torch.Tensor:
    """The weight the layer computes with, differentiable: ``orig * mask`` if masked, else the Parameter.

    Unlike ``module.weight`` on a masked layer (refreshed only at the next forward), this is never stale.
    """
    mask = getattr(module, f"{name}_mask", None)
    if mask is not None and f"{name}_orig" in module._parameters:
        return module._parameters[f"{name}_orig"] * mask
    return getattr(module, name)


def prunable_weights(model: nn.Module, scope: str = "all") -> dict[str, torch.Tensor]:
    """Detached effective weights of the prunable layers, keyed by weight name."""
    return {key: effective_weight(module).detach() for key, module in prunable_modules(model, scope).items()}


# ----------------------------------------------------------------------------------------------- masks

def topk_mask(w: torch.Tensor, k: int) -> torch.Tensor:
    """A bool mask of w's shape that is True at exactly k entries of largest |w| (ties broken by topk)."""
    flat = torch.zeros(w.numel(), dtype=torch.bool, device=w.device)
    flat[torch.topk(w.detach().abs().flatten(), k, sorted=False).indices] = True
    return flat.view(w.shape)


def project_topk(w: torch.Tensor, rate: float) -> torch.Tensor:
    """Euclidean projection onto {at most k nonzeros}: keep the k largest |w|, zero the rest. Same shape."""
    mask = topk_mask(w, keep_count(w.numel(), rate))
    return torch.where(mask, w, torch.zeros_like(w))


def magnitude_masks(model: nn.Module, rate: float, scope: str = "all",
                    mode: str = "layer") -> dict[str, torch.Tensor]:
    """Magnitude masks {weight name: BoolTensor}, True = kept.

    mode="layer": each layer keeps max(1, round(numel / R)) of its weights (uniform, as in the paper).
    mode="global": one |w| threshold over all pruned layers, keeping max(1, round(total / R)) overall;
    some layers then end sparser than others.
    """
    check_rate(rate)
    check_choice(mode, MODES, "mode")
    weights = prunable_weights(model, scope)
    if mode == "layer":
        return {key: topk_mask(w, keep_count(w.numel(), rate)) for key, w in weights.items()}
    flat = torch.cat([w.flatten() for w in weights.values()])
    pieces = topk_mask(flat, keep_count(flat.numel(), rate)).split([w.numel() for w in weights.values()])
    return {key: piece.view(w.shape) for (key, w), piece in zip(weights.items(), pieces)}


# ----------------------------------------------------------------------------------------------- hard prune

class _DeepcopyMasked:
    """Installed as ``module.__deepcopy__`` on layers masked by ``apply_masks``.

    torch.nn.utils.prune keeps ``module.weight = weight_orig * weight_mask`` as a plain attribute; after a
    forward with grad it is a non-leaf tensor, which ``copy.deepcopy`` refuses. This copies the layer
    with that attribute detached, then recomputes it from the copied ``weight_orig`` and ``weight_mask``.
    """

    def __init__(self, module: nn.Module) -> None:
        self.module = module

    def __call__(self, memo: dict) -> nn.Module:
        module = self.module
        clone = module.__class__.__new__(module.__class__)
        memo[id(module)] = clone
        for key, value in module.__dict__.items():
            if key == "__deepcopy__":
                continue
            if isinstance(value, torch.Tensor) and not value.is_leaf:
                value = value.detach()
            clone.__dict__[key] = copy.deepcopy(value, memo)
        clone.__dict__["__deepcopy__"] = _DeepcopyMasked(clone)
        for hook in _pruning_hooks(clone):
            setattr(clone, hook._tensor_name, hook.apply_mask(clone))
        return clone


def _pruning_hooks(module: nn.Module) -> list[prune.BasePruningMethod]:
    return [h for h in module._forward_pre_hooks.values() if isinstance(h, prune.BasePruningMethod)]


def _split_key(model: nn.Module, key: str) -> tuple[nn.Module, str]:
    """'features.0.weight' -> (model.features[0], 'weight')."""
    module_name, _, tensor_name = key.rpartition(".")
    return model.get_submodule(module_name), tensor_name


def is_masked(model: nn.Module) -> bool:
    """True if any layer carries a torch.nn.utils.prune reparametrization (``weight_orig`` + mask)."""
    return prune.is_pruned(model)


def apply_masks(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> nn.Module:
    """Hard-prune in place: ``weight`` becomes ``weight_orig * weight_mask`` (torch prune.custom_from_mask).

    Pruned entries of the effective weight are exactly 0 from now on, whatever the optimizer does to
    ``weight_orig``. A layer that is already masked gets its mask replaced. Parameters are then named
    ``...weight_orig``: build the fine-tuning optimizer after this call. Returns `model`.
    """
    for key, mask in masks.items():
        module, name = _split_key(model, key)
        weight = effective_weight(module, name)
        if tuple(mask.shape) != tuple(weight.shape):
            raise ValueError(f"mask for {key} has shape {tuple(mask.shape)}, weight has {tuple(weight.shape)}")
        if hasattr(module, f"{name}_mask"):
            prune.remove(module, name)
        prune.custom_from_mask(module, name, mask.to(device=weight.device, dtype=torch.bool))
        module.__dict__["__deepcopy__"] = _DeepcopyMasked(module)
    return model


def prune_by_magnitude(model: nn.Module, rate: float, scope: str = "all",
                       mode: str = "layer") -> dict[str, torch.Tensor]:
    """``apply_masks(model, magnitude_masks(...))`` in one call; returns the masks."""
    masks = magnitude_masks(model, rate, scope, mode)
    apply_masks(model, masks)
    return masks


def current_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """{weight name: BoolTensor} of every masked tensor (empty for an unmasked model)."""
    masks = {}
    for module_name, module in model.named_modules():
        for hook in _pruning_hooks(module):
            key = f"{module_name}.{hook._tensor_name}" if module_name else hook._tensor_name
            masks[key] = getattr(module, f"{hook._tensor_name}_mask").detach().bool().clone()
    return masks


def remove_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """Make pruning permanent in place: plain ``weight`` Parameters with exact zeros. Returns the masks.

    The ``weight`` Parameter is the same object that was ``weight_orig``, so optimizers stay valid.
    """
    masks = current_masks(model)
    for key, mask in masks.items():
        module, name = _split_key(model, key)
        prune.remove(module, name)
        with torch.no_grad():  # orig * mask leaves -0.0 where orig < 0; store a clean +0.0
            getattr(module, name).masked_fill_(~mask, 0.0)
        if not _pruning_hooks(module):
            module.__dict__.pop("__deepcopy__", None)
    return masks


def check_optimizer(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Raise ValueError if `optimizer` does not hold every trainable parameter of `model` (e.g. stale)."""
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    missing = [name for name, p in model.named_parameters() if p.requires_grad and id(p) not in held]
    if missing:
        raise ValueError(f"optimizer does not hold parameters {missing}; build it after apply_masks")


# ----------------------------------------------------------------------------------------------- report

def sparsity_report(model: nn.Module, scope: str = "all") -> pd.DataFrame:
    """One row per prunable layer (layer = weight name) + a final "total" row.

    Columns: layer, shape (e.g. "6x1x5x5"), params (weights only, no biases), nonzero, sparsity
    (fraction of zeros in the effective weight). Works on masked and plain models.
    """
    rows = []
    for key, w in prunable_weights(model, scope).items():
        rows.append({"layer": key, "shape": "x".join(map(str, w.shape)), "params": w.numel(),
                     "nonzero": int(torch.count_nonzero(w))})
    params, nonzero = sum(r["params"] for r in rows), sum(r["nonzero"] for r in rows)
    rows.append({"layer": "total", "shape": "", "params": params, "nonzero": nonzero})
    table = pd.DataFrame(rows, columns=["layer", "shape", "params", "nonzero"])
    table["sparsity"] = (1.0 - table["nonzero"] / table["params"]).where(table["params"] > 0, 0.0)
    return table


def network_sparsity(model: nn.Module) -> float:
    """Fraction in [0, 1] of ALL conv and linear weights (effective weights, biases excluded) that are
    exactly zero, whatever scope was pruned: the network's real sparsity.

    Equals the "total" row of ``sparsity_report(model, "all")``. Raises ValueError for a model without
    conv or linear layers.
    """
    weights = prunable_weights(model, "all")
    total = sum(w.numel() for w in weights.values())
    if total == 0:
        raise ValueError(f"{type(model).__name__} has no nn.Conv2d / nn.Linear weights")
    return 1.0 - sum(int(torch.count_nonzero(w)) for w in weights.values()) / total


def rate_words(rate: float) -> str:
    """A pruning rate both ways, as the literature writes it: ``rate_words(8) == "8x (87.5%)"``, the share of each
    pruned layer's weights that are zero (a rate of 10, 20, 100 is 90%, 95%, 99% sparsity)."""
    rate = check_rate(rate)
    return f"{rate:g}x ({100 * (1 - 1 / rate):.3g}%)"


def rate_label(rate: float, sparsity: float) -> str:
    """A label for tables and plots: the pruning rate and the network's real sparsity (in %).

    ``rate_label(8, 0.1234) == "8x (net 12.3%)"``; rate 1 (the dense teacher) is allowed:
    ``"1x (net 0.0%)"``. `sparsity` is a fraction in [0, 1], e.g. from ``network_sparsity``.
    """
    for value, name in ((rate, "rate"), (sparsity, "sparsity")):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number; got {value!r}")
    if rate < 1:
        raise ValueError(f"rate must be >= 1 (1 = dense, R keeps 1/R of the pruned weights); got {rate}")
    if not 0.0 <= sparsity <= 1.0:
        raise ValueError(f"sparsity must be a fraction in [0, 1] (not a percentage); got {sparsity}")
    return f"{float(rate):g}x (net {100.0 * float(sparsity):.1f}%)"


