"""ADMM towards the sparsity set: auxiliary variables Z, U and penalty weights rho (Zhang et al. 2018).

`ADMM.masks()` gives the masks of the hard prune that follows (`pwoa_lab.pruning.masks.apply_masks`).
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from pwoa_lab.pruning.masks import effective_weight, keep_count, prunable_modules, topk_mask
from pwoa_lab.utils import check_rate

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


