"""What every method shares: the hooks `fit` calls (`MethodBase`) and the student as a trainable copy."""
from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn as nn

from pwoa_lab.training.loop import Batch, Phase


class MethodBase:
    """Do-nothing defaults for every hook of `pwoa_lab.training.loop.fit`; a method overrides what it needs."""
    name = "method"

    def begin_phase(self, phase: Phase, student: nn.Module) -> None:
        """Called before the first epoch of `phase` (and again when a resumed run rebuilds its structure)."""

    def adversarial(self, student: nn.Module, x: torch.Tensor, y: torch.Tensor, step: int) -> torch.Tensor:
        """The adversarial batch of a mixed batch: PGD against the current student (its mode is restored)."""
        raise NotImplementedError(f"{type(self).__name__} has no adversarial batch; use mix_ratio 0")

    def loss(self, student: nn.Module, batch: Batch, phase: Phase) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def before_step(self, student: nn.Module) -> None:
        """Between backward and the optimizer step (e.g. to regularize or edit gradients)."""

    def end_epoch(self, phase: Phase, epoch_in_phase: int) -> dict[str, float]:
        """After each epoch; returns extra history columns."""
        return {}

    def finish(self, student: nn.Module) -> dict[str, torch.Tensor]:
        """After the last epoch; returns the masks of a pruned model ({} for a dense one)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def trainable_copy(teacher: nn.Module) -> nn.Module:
    student = copy.deepcopy(teacher).train()
    for p in student.parameters():
        p.requires_grad_(True)
    return student
