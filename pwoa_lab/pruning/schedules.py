"""The pruning design space of the ADMM pipeline: what is removed, by which importance, on which schedule.

`PruneConfig` (``pwoa_lab.training.methods``) has three fields for it; the defaults are the paper's pipeline, which
`AdmmPruning` runs itself, bit for bit as before. Any other choice goes through `PruneSchedule` here, whose
hooks `AdmmPruning` calls. Whatever the choice, the loss (naive, kd, pwoa, advprune, the mix ratio) is the same.

    structure   "weight":      single weights (masks; the model keeps its dense shape)
                "structured":  whole channels (Torch-Pruning; a physically smaller model, no masks).
                               Rate R: at most 1/R of the dense model's parameters (``structured.fraction_for_rate``)
    importance  "magnitude":   |w| (structured: the filter's squared L2 norm)
                "gradient":    |w * dL/dw|, L = cross-entropy on 512 natural training images (first-order Taylor,
                               SNIP-style; structured: summed over the filter, Molchanov et al. 2019)
    schedule    "admm":        phases admm (admm_epochs) + retrain (retrain_epochs): ADMM pulls the weights to the
                               sparse set, then one hard prune (the paper). The hard prune keeps the ADMM support
                               (magnitude) or the top weights / channels by gradient importance
                               ("gradient": the importance of the weights ADMM ended with). Structured: ADMM
                               towards row sparsity (``structured.ChannelADMM``).
                "oneshot":     one phase retrain (admm_epochs + retrain_epochs, the same training budget): the hard
                               prune by importance first, then fine-tuning with the loss. (The *method* "oneshot"
                               is something else: no training at all.)
                "iterative":   phases gradual (admm_epochs) + retrain (retrain_epochs): the sparsity (structured: the
                               fraction of channels removed) grows on the cubic schedule of Zhu & Gupta (2017),
                               s_t = s_f (1 - (1 - t / n)^3), t = 1..n, one step at the start of each gradual epoch;
                               the masks are recomputed by importance at each step among the weights still kept
                               (pruned weights stay at 0, the sparsity never goes down); retrain goes on at s_f.
                               Structured: channel masks while gradual, the physical removal when retrain begins.

The structured student is rebuilt in place (same object, new Parameters) only at a phase start, in
`begin_phase`, before the loop creates that phase's optimizer; the teacher, its cached logits and the HSIC
terms (``forward_features``) are unaffected.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from pwoa_lab.core.data import TensorData, dataset_info
from pwoa_lab.pruning.admm import ADMM
from pwoa_lab.pruning.importance import cubic_sparsity, gradient_importance, importance_masks
from pwoa_lab.pruning.masks import (
    apply_masks,
    current_masks,
    is_masked,
    magnitude_masks,
    prunable_weights,
    remove_masks,
)
from pwoa_lab.pruning.structured import (
    ChannelADMM,
    channel_groups,
    channel_masks,
    channel_scores,
    channels_to_remove,
    fraction_for_rate,
    prune_channels,
)

STRUCTURES = ("weight", "structured")
IMPORTANCES = ("magnitude", "gradient")
SCHEDULES = ("admm", "oneshot", "iterative")
IMPORTANCE_IMAGES = 512  # natural training images for the gradient importance


def is_default(config) -> bool:
    """True for the paper's pipeline (weight, magnitude, admm), which `AdmmPruning` runs without this module."""
    return (config.structure, config.importance, config.schedule) == ("weight", "magnitude", "admm")


def importance_batch(train: TensorData, n: int, seed: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded random subset of `n` natural training images (x [n, C, H, W], y [n]) on `device`."""
    idx = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:n]
    return train.x[idx].to(device), train.y[idx].to(device)


class PruneSchedule:
    """The hooks of a non-default pruning design (see the module docstring); `AdmmPruning` delegates to it."""

    def __init__(self, config, student: nn.Module, train: TensorData):
        self.config = config
        self.device = next(student.parameters()).device
        self.x, self.y = importance_batch(train, IMPORTANCE_IMAGES, config.seed, self.device) \
            if config.importance == "gradient" else (None, None)
        self.step = 0                                   # gradual steps taken
        self.removed: dict[str, list[int]] | None = None   # structured: channels removed so far (original numbering)
        self.pruned = False                             # the final hard prune happened
        self.admm: ADMM | None = None
        if config.structure == "structured":
            self.input_shape = tuple(dataset_info(config.dataset).shape)
            self.scope = config.scope
            self.groups = channel_groups(student, self.input_shape, self.scope)
            self.fraction = fraction_for_rate(student, self.input_shape, config.rate, self.scope)
            if config.schedule == "admm":
                self.admm = ChannelADMM(student, self.groups, self.fraction, config.rho0, config.rho_growth)
        elif config.schedule == "admm" and config.mode == "layer":
            self.admm = ADMM(student, config.rate, config.scope, config.rho0, config.rho_growth)

    # --------------------------------------------------------------------------------------- hooks

    def begin_phase(self, phase, student: nn.Module) -> None:
        if phase.name == "gradual":
            self.step = 0
            self.gradual_step(student, phase.epochs)
        elif phase.name == "retrain":
            self.hard_prune(student)

    def end_epoch(self, phase, epoch_in_phase: int, student: nn.Module) -> dict[str, float]:
        """After a gradual epoch: the next step of the cubic schedule (the last epoch is already at s_f)."""
        if phase.name != "gradual":
            return {}
        row = {"target_sparsity": self.target(self.step, phase.epochs)}
        if epoch_in_phase < phase.epochs:
            self.gradual_step(student, phase.epochs)
        return row

    def finish(self, student: nn.Module) -> dict[str, torch.Tensor]:
        if not self.pruned:  # no retraining phase ran (method oneshot, or retrain_epochs=0): prune now
            self.hard_prune(student)
        return remove_masks(student)

    def state_dict(self) -> dict[str, Any]:
        out = {"step": self.step, "pruned": self.pruned,
               "removed": {k: list(v) for k, v in self.removed.items()} if self.removed is not None else None}
        if self.admm is not None:
            out["admm"] = self.admm.state_dict()
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step, self.pruned, self.removed = state["step"], state["pruned"], state["removed"]
        if self.admm is not None:
            self.admm.load_state_dict(state["admm"])

    # --------------------------------------------------------------------------------------- pruning

    def target(self, step: int, total: int) -> float:
        """The gradual schedule's target after `step` of `total`: weight sparsity, or channel fraction."""
        final = self.fraction if self.config.structure == "structured" else 1.0 - 1.0 / self.config.rate
        return cubic_sparsity(step, total, final)

    def weight_scores(self, student: nn.Module, scope: str) -> dict[str, torch.Tensor]:
        """|w| or |w * dL/dw| of every weight of `scope` (effective weights: a pruned one scores 0)."""
        if self.config.importance == "gradient":
            return gradient_importance(student, self.x, self.y, scope=scope)
        return {k: w.abs() for k, w in prunable_weights(student, scope).items()}

    def gradual_step(self, student: nn.Module, total: int) -> None:
        """Step t -> t + 1 of the cubic schedule: prune among what is still kept, by importance."""
        self.step += 1
        c = self.config
        if c.structure == "structured":
            scores = channel_scores(student, self.groups, c.importance,
                                    self.weight_scores(student, "all") if c.importance == "gradient" else None)
            self.removed = channels_to_remove(scores, self.target(self.step, total), self.removed)
            apply_masks(student, channel_masks(student, self.groups, self.removed))
            return
        rate = c.rate if self.step == total else 1.0 / (1.0 - self.target(self.step, total))
        if rate <= 1.0:
            return
        within = current_masks(student) or None
        apply_masks(student, importance_masks(self.weight_scores(student, c.scope), rate, c.mode, within))

    def hard_prune(self, student: nn.Module) -> None:
        """To the final rate: weight masks, or the physical removal of channels."""
        c = self.config
        if c.structure == "structured":
            self.removed = self.final_channels(student)
            if is_masked(student):
                remove_masks(student)
            prune_channels(student, self.input_shape, self.removed)
        elif not (c.schedule == "iterative" and self.step > 0 and self.at_final(student)):
            apply_masks(student, self.final_masks(student))
        self.pruned = True

    def at_final(self, student: nn.Module) -> bool:
        """The gradual phase ended at the final sparsity (its last step used the config's rate)."""
        return is_masked(student) and self.step >= self.config.admm_epochs

    def final_masks(self, student: nn.Module) -> dict[str, torch.Tensor]:
        c = self.config
        if c.importance == "magnitude" and c.schedule == "admm" and c.mode == "layer":
            return self.admm.masks()
        if c.importance == "magnitude" and not is_masked(student):
            return magnitude_masks(student, c.rate, c.scope, c.mode)
        return importance_masks(self.weight_scores(student, c.scope), c.rate, c.mode, current_masks(student) or None)

    def final_channels(self, student: nn.Module) -> dict[str, list[int]]:
        c = self.config
        if c.schedule == "admm" and c.importance == "magnitude":
            return self.admm.removed()
        scores = channel_scores(student, self.groups, c.importance,
                                self.weight_scores(student, "all") if c.importance == "gradient" else None)
        return channels_to_remove(scores, self.fraction, self.removed)

