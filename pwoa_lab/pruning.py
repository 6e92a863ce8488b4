"""Magnitude pruning, ADMM, masked training and sparse export.

A pruning rate R keeps 1/R of each pruned weight tensor: k = max(1, round(numel / R)) entries survive,
so each pruned layer ends at sparsity 1 - 1/R (exactly so when numel is divisible by R).

Read top to bottom:

1. Which weights are pruned (``SCOPES``):

   - ``"all"`` (the default): every ``nn.Conv2d`` / ``nn.Linear`` ``.weight``.
   - ``"hidden"``: all but the first layer and the last linear layer (a common convention: those two are
     the smallest layers, 288 and 1,280 weights in the digits CNN, and at 8x they alone cost most of the
     robustness).
   - ``"convs"``: ``nn.Conv2d`` weights only.
   - ``"reference"``: the PwoA reference code's rule: a weight is pruned if it is a conv weight or its
     name contains ``"fc.weight"``. The rule depends on layer names: on LeNet-3 (``fc1``, ``fc2``) it
     selects the two convs only (52,000 of 3,273,504 weights, so at 4x the network is 1.2% sparse); on
     ResNet-18 and WRN (classifier named ``fc``) it selects every conv, shortcuts included, plus ``fc``.

   The rate R applies to the selected layers only; ``network_sparsity`` gives the fraction of zeros over
   every conv and linear weight, whatever the scope, and ``rate_label`` puts both in one label.
   Biases are never pruned. Weights are named like parameters, e.g. ``"conv1.weight"`` or
   ``"module.features.0.weight"``.
2. Masks: ``project_topk`` (projection onto the sparsity set) and ``magnitude_masks`` (per layer, as in
   the paper, or with one global threshold).
3. ``ADMM``: the auxiliary variables Z, U and penalty weights rho used while the network is pushed
   towards the sparsity set; ``ADMM.masks()`` gives the masks for the hard prune that follows.
4. Hard prune + masked fine-tuning with ``torch.nn.utils.prune``: ``apply_masks`` turns ``weight`` into
   ``weight_orig * weight_mask`` so pruned weights stay exactly 0 whatever the optimizer (momentum,
   weight decay, Adam) does to ``weight_orig``. ``remove_masks`` makes it permanent.
5. ``sparsity_report``: a table of per-layer sparsity; ``network_sparsity`` and ``rate_label``.
6. Export: ``dense_state_dict`` (a plain state dict) and ``save_sparse`` / ``load_sparse`` (a compact
   file: packed bitmask + surviving values for each pruned weight).
7. Other importances and schedules: ``gradient_importance`` (|w * dL/dw|, first-order Taylor / SNIP),
   ``importance_masks`` (top-k of any score, per layer or global), ``cubic_sparsity`` (gradual pruning).
   Structured (channel) pruning lives in ``pwoa_lab.structured``.

Optimizer caveat: ``apply_masks`` re-registers the existing ``weight`` Parameter object as
``weight_orig`` (and ``remove_masks`` puts the same object back as ``weight``), so an optimizer built
before still updates the right tensors. Still, build the optimizer *after* ``apply_masks`` for the
fine-tuning phase (fresh momentum / Adam moments); ``check_optimizer`` tells you if one misses a parameter.
"""
from __future__ import annotations

import copy
import math
import numbers
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn.utils import prune

from .utils import atomic_write, check_choice, check_rate

__all__ = [
    "SCOPES", "MODES", "keep_count", "prunable_modules", "effective_weight", "prunable_weights",
    "project_topk", "topk_mask", "magnitude_masks", "ADMM",
    "apply_masks", "prune_by_magnitude", "remove_masks", "is_masked", "current_masks", "check_optimizer",
    "sparsity_report", "network_sparsity", "rate_label",
    "plain_state_dict", "dense_state_dict", "save_sparse", "load_sparse",
    "gradient_importance", "importance_masks", "cubic_sparsity",
]

SCOPES = ("all", "hidden", "convs", "reference")
REFERENCE_NAME = "fc.weight"  # scope "reference": a linear weight is pruned iff its name contains this
MODES = ("layer", "global")
SPARSE_FORMAT = "pwoa-lab-sparse"
SPARSE_VERSION = 1


# ----------------------------------------------------------------------------------------------- which weights

def keep_count(numel: int, rate: float) -> int:
    """How many of `numel` weights survive pruning at rate R: max(1, round(numel / R))."""
    return max(1, round(numel / check_rate(rate)))


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


# ----------------------------------------------------------------------------------------------- ADMM

class ADMM:
    """ADMM state for pruning: min loss(W) s.t. each W_l has at most k_l nonzeros (scaled form).

    Per pruned layer l: Z_l (sparse copy, init = project_topk(W_l)), U_l (scaled dual, init 0) and
    rho_l (init rho0). The training loss adds ``penalty()``; every ``admm_every`` epochs the engine
    calls ``update()``. After ADMM, ``masks()`` gives the support to hard-prune with ``apply_masks``.
    """

    def __init__(self, model: nn.Module, rate: float, scope: str = "all", rho0: float = 0.01,
                 rho_growth: float = 1.35, rho_max: float = 1.0) -> None:
        self.rate = check_rate(rate)
        self._set_rho_schedule(rho0, rho_growth, rho_max)
        self.modules = prunable_modules(model, scope)
        if not self.modules:
            raise ValueError(f"the model has no prunable layers for scope={scope!r}")
        self._start(rho0)

    def _set_rho_schedule(self, rho0: float, rho_growth: float, rho_max: float) -> None:
        if not (rho0 > 0 and rho_growth >= 1 and rho_max >= rho0):
            raise ValueError(f"need rho0 > 0, rho_growth >= 1, rho_max >= rho0; got {rho0}, {rho_growth}, {rho_max}")
        self.rho_growth, self.rho_max = float(rho_growth), float(rho_max)

    def _start(self, rho0: float) -> None:
        """Z_l <- projection of W_l (`_set_z`), U_l <- 0, rho_l <- rho0 for every layer in `self.modules`."""
        self.Z: dict[str, torch.Tensor] = {}
        self.U: dict[str, torch.Tensor] = {}
        self.rho: dict[str, float] = {}
        self._support: dict[str, torch.Tensor] = {}
        for key, module in self.modules.items():
            w = effective_weight(module).detach()
            self._set_z(key, w)
            self.U[key] = torch.zeros_like(w)
            self.rho[key] = float(rho0)

    def _set_z(self, key: str, v: torch.Tensor) -> None:
        """Z_key <- project_topk(v), remembering the kept support (exactly k entries)."""
        self._support[key] = topk_mask(v, keep_count(v.numel(), self.rate))
        self.Z[key] = torch.where(self._support[key], v, torch.zeros_like(v))

    def _weight(self, key: str) -> torch.Tensor:
        """W_key (with grad), moving Z, U, support along if the model changed device."""
        w = effective_weight(self.modules[key])
        if self.Z[key].device != w.device:
            self.Z[key], self.U[key] = self.Z[key].to(w.device), self.U[key].to(w.device)
            self._support[key] = self._support[key].to(w.device)
        return w

    def penalty(self) -> torch.Tensor:
        """sum_l rho_l / 2 * ||W_l - Z_l + U_l||^2, a scalar differentiable in the weights."""
        terms = [self.rho[k] / 2 * (self._weight(k) - self.Z[k] + self.U[k]).pow(2).sum() for k in self.modules]
        return torch.stack(terms).sum()

    @torch.no_grad()
    def update(self) -> None:
        """One ADMM round, in this order (standard scaled form, then the rho schedule):

        Z_l <- project_topk(W_l + U_l);  U_l <- U_l + W_l - Z_l;  rho_l <- min(rho_max, rho_growth * rho_l).
        U is not rescaled when rho grows (as in the reference ADMM-pruning code).
        """
        for key in self.modules:
            w = self._weight(key).detach()
            self._set_z(key, w + self.U[key])
            self.U[key] = self.U[key] + w - self.Z[key]
            self.rho[key] = min(self.rho_max, self.rho_growth * self.rho[key])

    @torch.no_grad()
    def primal_residual(self) -> float:
        """sum_l ||W_l - Z_l||^2 / sum_l ||W_l||^2: how far W is from its sparse copy (0 = on the set)."""
        num = sum(float((self._weight(k).detach() - self.Z[k]).pow(2).sum()) for k in self.modules)
        den = sum(float(self._weight(k).detach().pow(2).sum()) for k in self.modules)
        return num / max(den, 1e-30)

    def masks(self) -> dict[str, torch.Tensor]:
        """{weight name: BoolTensor}: the support of the current Z (exactly k_l entries per layer)."""
        return {key: mask.clone() for key, mask in self._support.items()}

    def state_dict(self) -> dict[str, Any]:
        """Z, U, rho, the kept support and settings, for resuming (plain tensors / floats)."""
        return {"rate": self.rate, "rho_growth": self.rho_growth, "rho_max": self.rho_max,
                "Z": dict(self.Z), "U": dict(self.U), "rho": dict(self.rho), "support": dict(self._support)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what ``state_dict`` returned (same model layout)."""
        if set(state["Z"]) != set(self.modules):
            raise ValueError(f"ADMM state is for layers {sorted(state['Z'])}, not {sorted(self.modules)}")
        self.rate, self.rho_growth, self.rho_max = state["rate"], state["rho_growth"], state["rho_max"]
        for key in self.modules:
            self.Z[key], self.U[key] = state["Z"][key].clone(), state["U"][key].clone()
            self._support[key] = state["support"][key].clone()
            self.rho[key] = float(state["rho"][key])


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


# ----------------------------------------------------------------------------------------------- export

def plain_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Turn a masked model's state dict (``x_orig`` + ``x_mask``) into a plain one (``x``, zeros applied).

    Plain state dicts pass through unchanged. Tensors are detached copies.
    """
    out = {}
    for key, value in state_dict.items():
        base = key[: -len("_orig")]
        if key.endswith("_orig") and f"{base}_mask" in state_dict:
            mask = state_dict[f"{base}_mask"].bool()
            out[base] = torch.where(mask, value, torch.zeros_like(value)).detach().clone()
        elif key.endswith("_mask") and f"{key[: -len('_mask')]}_orig" in state_dict:
            continue
        else:
            out[key] = value.detach().clone()
    return out


def dense_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """A plain state dict (pruned weights with zeros) that loads strictly into an unpruned copy.

    Works whether or not `model` is masked; `model` is not changed.
    """
    return plain_state_dict(model.state_dict())


def _sparse_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """Masks to store: the applied masks, else the nonzero support of each prunable weight."""
    masks = {key: w != 0 for key, w in prunable_weights(model, "all").items()}
    masks.update(current_masks(model))
    return masks


def _check_plain(value: Any, where: str) -> None:
    """Metadata must be plain (None/bool/int/float/str, lists, str-keyed dicts) to load with weights_only."""
    if value is None or type(value) in (bool, int, float, str):
        return
    if type(value) in (list, tuple):
        for item in value:
            _check_plain(item, where)
    elif type(value) is dict and all(type(k) is str for k in value):
        for k, item in value.items():
            _check_plain(item, f"{where}[{k!r}]")
    else:
        raise TypeError(f"{where} holds {type(value).__name__}; use only None, bool, int, float, str, "
                        "lists and dicts with str keys")


def sparse_payload(model: nn.Module, metadata: dict | None = None) -> dict[str, Any]:
    """The compact form of `model` that `save_sparse` writes, as plain tensors and containers (it can travel
    between processes or machines and be written by `write_sparse`).

    Each prunable weight is stored as shape + packed bitmask (numpy.packbits of the flattened mask, uint8) + its
    kept values in mask order (the weight's own dtype, float32 for usual models); every other tensor as is.
    """
    metadata = dict(metadata or {})
    _check_plain(metadata, "metadata")
    state = dense_state_dict(model)
    masks = _sparse_masks(model)
    dense, sparse = {}, {}
    for key, value in state.items():
        if key not in masks:
            dense[key] = value.cpu()
            continue
        mask = masks[key].cpu()
        bits = np.packbits(mask.flatten().numpy().astype(np.uint8))
        sparse[key] = {"shape": list(value.shape), "bits": torch.from_numpy(bits),
                       "values": value.cpu()[mask].clone()}
    return {"format": SPARSE_FORMAT, "version": SPARSE_VERSION, "order": list(state),
            "dense": dense, "sparse": sparse, "metadata": metadata}


def write_sparse(payload: dict[str, Any], path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write a `sparse_payload` to `path` atomically; an existing file is kept (FileExistsError) unless
    ``overwrite=True``."""
    if not isinstance(payload, dict) or payload.get("format") != SPARSE_FORMAT:
        raise ValueError(f"not a sparse payload (no format marker {SPARSE_FORMAT!r}); make it with sparse_payload")
    with atomic_write(path, overwrite=overwrite) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def save_sparse(model: nn.Module, path: str | os.PathLike, metadata: dict | None = None,
                overwrite: bool = False) -> Path:
    """Save `model` compactly (`sparse_payload`); returns the path. Written atomically; an existing file is kept
    (FileExistsError) unless ``overwrite=True``. Read it back with ``load_sparse``."""
    return write_sparse(sparse_payload(model, metadata), path, overwrite=overwrite)


def _not_sparse(path: Any, why: str) -> ValueError:
    return ValueError(f"{path} is not a pwoa-lab sparse checkpoint ({why})")


def load_sparse(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict]:
    """Read a ``save_sparse`` file: (plain state dict on CPU, {weight name: BoolTensor mask}, metadata).

    The state dict equals ``dense_state_dict`` of the saved model bit for bit. A truncated or foreign
    file raises ValueError naming the path.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, pickle errors, disallowed objects ...
        raise _not_sparse(path, f"cannot read it: {type(err).__name__}: {err}") from err
    if not isinstance(payload, dict) or payload.get("format") != SPARSE_FORMAT:
        raise _not_sparse(path, f"no format marker {SPARSE_FORMAT!r}")
    if payload.get("version") != SPARSE_VERSION:
        raise _not_sparse(path, f"version {payload.get('version')!r}, this code reads {SPARSE_VERSION}")
    try:
        state, masks = {}, {}
        for key in payload["order"]:
            if key in payload["dense"]:
                state[key] = payload["dense"][key]
                continue
            entry = payload["sparse"][key]
            numel = int(np.prod(entry["shape"]))
            mask = torch.from_numpy(np.unpackbits(entry["bits"].numpy(), count=numel).astype(bool))
            values = entry["values"]
            if int(mask.sum()) != values.numel():
                raise ValueError(f"{key}: mask keeps {int(mask.sum())} entries, {values.numel()} values stored")
            weight = torch.zeros(numel, dtype=values.dtype)
            weight[mask] = values
            state[key], masks[key] = weight.view(entry["shape"]), mask.view(entry["shape"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise _not_sparse(path, f"malformed content: {type(err).__name__}: {err}") from err
    return state, masks, dict(payload["metadata"])


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
