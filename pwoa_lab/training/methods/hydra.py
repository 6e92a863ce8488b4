"""HYDRA (Sehwag et al., NeurIPS 2020): learned importance scores, then TRADES fine-tuning of the kept weights
(`pwoa_lab.pruning.scores`, `pwoa_lab.core.trades`)."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import torch.nn as nn
import torch.nn.functional as F

from pwoa_lab.core.attacks import pgd_step_size
from pwoa_lab.core.data import TensorData, dataset_info
from pwoa_lab.core.trades import trades_adversarial, trades_objective
from pwoa_lab.pruning.masks import SCOPES, apply_masks, remove_masks
from pwoa_lab.pruning.scores import add_scores, remove_scores
from pwoa_lab.training.loop import Phase, RunConfig
from pwoa_lab.training.methods.base import MethodBase, trainable_copy
from pwoa_lab.training.registry import MethodSpec, method_spec, register
from pwoa_lab.utils import check_choice, check_rate


@dataclass
class HydraConfig(RunConfig):
    """Everything that determines a HYDRA run (Sehwag et al. 2020; pwoa_lab.pruning.scores, pwoa_lab.core.trades)."""
    PRESET_KEY: ClassVar[str] = "hydra"
    BUDGET_LRS: ClassVar[tuple[str, ...]] = ("lr_score", "lr_finetune")
    BUDGET_EPOCHS: ClassVar[tuple[str, ...]] = ("score_epochs", "finetune_epochs")
    optimizer: str = "sgd"
    weight_decay: float = 1e-4
    lr_schedule: str = "cosine"        # in both phases
    rate: float = 4.0
    scope: str = "all"
    score_epochs: int = 20
    finetune_epochs: int = 100
    lr_score: float = 0.1
    lr_finetune: float = 0.01
    beta: float = 6.0                  # TRADES weight of the KL term
    adv_steps: int | None = None       # TRADES inner-max steps; None: the dataset's train_pgd_steps
    adv_alpha: float | None = None     # None: 2.5 eps / adv_steps

    method = "hydra"                   # a class attribute: tables that mix HYDRA rows with others

    def resolved(self) -> "HydraConfig":
        """Validated copy with the dataset defaults filled in (a resolved config is returned as is)."""
        if self.is_resolved():
            return self
        self.check()
        check_choice(self.scope, SCOPES, "scope")
        eps = self.resolved_eps()
        info = dataset_info(self.dataset)
        steps = info.train_pgd_steps if self.adv_steps is None else self.adv_steps
        if steps < 1:
            raise ValueError(f"adv_steps must be >= 1; got {steps}")
        alpha = pgd_step_size(eps, steps) if self.adv_alpha is None else self.adv_alpha
        return replace(self, **self.budget_applied(), rate=check_rate(self.rate),
                       mix_ratio=self.resolved_mix(method_spec("hydra").mix_ratio),
                       eps=eps, adv_steps=steps, adv_alpha=alpha, select=self.select or "best_val_pgd")._mark_resolved()

    def phases(self) -> list[Phase]:
        return [Phase("score", self.score_epochs, self.lr_score, self.lr_schedule, selectable=False),
                Phase("finetune", self.finetune_epochs, self.lr_finetune, self.lr_schedule)]

    def make_student(self, teacher: nn.Module) -> nn.Module:
        return trainable_copy(teacher)

    def make_method(self, teacher: nn.Module, student: nn.Module, train: TensorData) -> "HydraPruning":
        return HydraPruning(self)


class HydraPruning(MethodBase):
    """Scores (weights frozen, straight-through top-k mask), the hard prune to top-k(|s|), fine-tuning.

    Loss: TRADES, CE(f(x), y) + beta KL(f(x) || f(x_adv)), where x_adv is TRADES' KL-PGD (the adversarial hook);
    a batch the mix ratio left natural has no x_adv and its loss is CE(f(x), y)."""

    def __init__(self, config: HydraConfig):
        self.config, self.name = config, f"hydra {config.rate:g}x"

    def begin_phase(self, phase, student):
        if phase.name == "score":
            add_scores(student, self.config.rate, self.config.scope)
        else:
            apply_masks(student, remove_scores(student))

    def adversarial(self, student, x, y, step):
        return trades_adversarial(student, x, self.config.eps, self.config.adv_alpha, self.config.adv_steps)

    def loss(self, student, batch, phase):
        if batch.x_adv is None:
            loss = F.cross_entropy(student(batch.x), batch.y)
            return loss, {"ce": loss.item()}
        return trades_objective(student(batch.x), student(batch.x_adv), batch.y, self.config.beta)

    def finish(self, student):
        return remove_masks(student)


register(MethodSpec("hydra", HydraConfig, mix_ratio=1.0, order=60, cost=3, label="HYDRA", color="tab:purple",
                    marker="v", help="learned scores + TRADES (Sehwag et al. 2020)"), replace=True)
