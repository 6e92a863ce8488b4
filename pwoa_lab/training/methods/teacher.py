"""Teachers: adversarial training from a seeded initialisation (`TeacherConfig`, `AdversarialTraining`)."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import torch.nn as nn
import torch.nn.functional as F

from pwoa_lab.core.adversarial_training import AT_METHODS, adversarial_batch
from pwoa_lab.core.data import TensorData
from pwoa_lab.core.models import build_model
from pwoa_lab.training.loop import Phase, RunConfig
from pwoa_lab.training.methods.base import MethodBase
from pwoa_lab.utils import check_choice


@dataclass
class TeacherConfig(RunConfig):
    """Everything that determines a teacher run: adversarial training from a seeded initialisation.

    min_theta E max_{||delta|| <= eps} CE(f(x + delta), y), the inner max by `method` (pgd: PGD-k with random
    start; fgsm_rs: one FGSM step of 1.25 eps from a random start; none: natural images); eps ramps up linearly
    over the first `eps_ramp_epochs` epochs; the weights of the best validation epoch are kept (PGD accuracy,
    natural accuracy for `none`)."""
    BUDGET_LRS: ClassVar[tuple[str, ...]] = ("lr",)
    BUDGET_EPOCHS: ClassVar[tuple[str, ...]] = ("epochs",)
    lr_schedule: str = "constant"      # constant | cosine (per batch, to 0 at the end)
    val_n: int = 1000
    val_pgd_steps: int = 20
    model: str | None = None           # None: the dataset's default model
    scale: float = 1.0                 # every hidden width of the model times this (the capacity control: narrower)
    method: str = "pgd"
    epochs: int = 10
    lr: float = 1e-3
    adv_steps: int = 10                # inner PGD steps
    adv_alpha: float | None = None     # None: 2.5 eps / adv_steps
    eps_ramp_epochs: float = 2.0

    def resolved(self) -> "TeacherConfig":
        """Validated copy with the dataset defaults filled in (a resolved config is returned as is)."""
        if self.is_resolved():
            return self
        self.check()
        check_choice(self.method, AT_METHODS, "training method")
        check_choice(self.lr_schedule, ("constant", "cosine"), "lr schedule")
        if isinstance(self.scale, bool) or not isinstance(self.scale, (int, float)) or not 0 < self.scale <= 1:
            raise ValueError(f"scale (the width multiplier of the model) must lie in (0, 1]; got {self.scale!r}")
        best = "best_val_natural" if self.method == "none" else "best_val_pgd"
        mix = self.resolved_mix(0.0 if self.method == "none" else 1.0)
        if self.method == "none" and mix > 0:
            raise ValueError(f"mix_ratio {mix} needs adversarial batches, but method 'none' trains on natural images "
                             "only: use method pgd or fgsm_rs, or leave mix_ratio unset")
        return replace(self, **self.budget_applied(), eps=self.resolved_eps(), mix_ratio=mix,
                       select=self.select or best)._mark_resolved()

    def phases(self) -> list[Phase]:
        return [Phase("train", self.epochs, self.lr, self.lr_schedule, schedule_per_batch=True)]

    def make_student(self, teacher: nn.Module | None) -> nn.Module:
        return build_model(self.model, self.dataset, scale=self.scale)

    def make_method(self, teacher, student: nn.Module, train: TensorData) -> "AdversarialTraining":
        return AdversarialTraining(self, -(-len(train) // self.batch_size))


class AdversarialTraining(MethodBase):
    """CE on the adversarial batch (PGD or FGSM-RS at the ramped eps), or on natural images for `none`."""

    def __init__(self, config: TeacherConfig, steps_per_epoch: int):
        self.config, self.name = config, f"teacher {config.method}"
        self.ramp_steps = max(1, int(config.eps_ramp_epochs * steps_per_epoch))

    def eps_at(self, step: int) -> float:
        """eps after `step` batches: a linear ramp over the first eps_ramp_epochs epochs."""
        c = self.config
        return c.eps * min(1.0, (step + 1) / self.ramp_steps) if c.eps_ramp_epochs > 0 else c.eps

    def adversarial(self, student, x, y, step):
        c = self.config
        return adversarial_batch(student, x, y, c.method, self.eps_at(step), c.adv_steps, c.adv_alpha)

    def loss(self, student, batch, phase):
        loss = F.cross_entropy(student(batch.inputs), batch.y)
        return loss, {"ce": loss.item()}
