"""The ADMM pipeline of the paper: `PruneConfig` (what determines a run) and `AdmmPruning` (ADMM towards the
sparsity set, the hard prune, masked retraining). The loss is the registered method's (`naive`, `kd`, `pwoa`,
`advprune`, `oneshot`: one module each in this package), called with the batch and a `LossContext`.

ADMM: phase "admm" adds sum_l rho_l/2 ||W_l - Z_l + U_l||^2 to the loss and every `admm_every` epochs updates
Z <- top-k(W + U), U <- U + W - Z, rho <- rho_growth rho; "retrain" starts with the hard prune to the support of Z
(or one global magnitude threshold in mode "global") and trains with the pruned weights held at exactly 0.
The pruning design space (`structure`, `importance`, `schedule`) is `pwoa_lab.pruning.schedules`.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Callable, ClassVar

import torch
import torch.nn as nn

from pwoa_lab import defaults
from pwoa_lab.core.attacks import attack_options, pgd_linf
from pwoa_lab.core.data import TensorData, dataset_info
from pwoa_lab.pruning.admm import ADMM
from pwoa_lab.pruning.masks import MODES, SCOPES, apply_masks, is_masked, magnitude_masks, remove_masks
from pwoa_lab.pruning.schedules import IMPORTANCES, SCHEDULES, STRUCTURES, PruneSchedule, is_default
from pwoa_lab.pruning.structured import STRUCTURED_SCOPES
from pwoa_lab.training.loop import Batch, Phase, RunConfig
from pwoa_lab.training.methods.base import MethodBase, trainable_copy
from pwoa_lab.training.registry import method_names, method_spec
from pwoa_lab.utils import check_choice, check_rate


# the config fields only the built-in losses read (a method that ignores them lists them in MethodSpec.ignores)
LOSS_FIELDS = ("temperature", "lambda_x", "lambda_y", "hsic_phase")


@dataclass
class LossContext:
    """What a loss of the ADMM pipeline may use besides the batch."""
    config: "PruneConfig"
    teacher: nn.Module
    teacher_logits: Callable[[Batch], torch.Tensor]
    num_classes: int


@dataclass
class PruneConfig(RunConfig):
    """Everything that determines a run of the ADMM pipeline (every method registered with this config class)."""
    PRESET_KEY: ClassVar[str] = "admm"  # its schedule in a preset block (pwoa_lab.training.presets)
    BUDGET_LRS: ClassVar[tuple[str, ...]] = ("lr_admm", "lr_retrain")
    BUDGET_EPOCHS: ClassVar[tuple[str, ...]] = ("admm_epochs", "retrain_epochs")
    lr_schedule: str = "multistep"     # of the retraining phase (the ADMM phase keeps its LR)
    method: str = defaults.METHOD
    rate: float = 4.0                  # keep 1/rate of every pruned weight tensor
    scope: str = "all"                 # all | hidden | convs (see pwoa_lab.pruning)
    mode: str = "layer"                # layer: ADMM, uniform per layer (paper); global: one magnitude threshold
    structure: str = "weight"          # weight | structured: whole channels, a smaller model (pruning.schedules)
    importance: str = "magnitude"      # magnitude |w| | gradient |w dL/dw| on natural images
    schedule: str = "admm"             # admm (paper) | oneshot: prune, then fine-tune | iterative: cubic (Zhu & Gupta)
    admm_epochs: int = 10              # a short CPU schedule; the paper's (50 + 100) is the `paper` preset's
    admm_every: int = 3
    rho0: float = 0.01
    rho_growth: float = 1.35
    retrain_epochs: int = 10
    lr_admm: float = 5e-4
    lr_retrain: float = 1e-3
    temperature: float = 30.0
    lambda_x: float = 2e-4
    lambda_y: float = 5e-5
    hsic_phase: str = "retrain"        # retrain (reference scripts) | both
    adv_steps: int | None = None       # PGD steps of a mixed-in adversarial batch; None: the dataset's
    adv_alpha: float | None = None     # their step; None: the dataset's PGD step
    cache_teacher: bool = True         # compute the frozen teacher's logits once (no augmentation)

    def resolved(self) -> "PruneConfig":
        """Validated copy with the dataset and method defaults filled in (a resolved config is returned as is)."""
        if self.is_resolved():
            return self
        self.check()
        spec = method_spec(self.method)
        if spec.config is not PruneConfig:
            raise ValueError(f"method {self.method!r} runs with {spec.config.__name__}, not PruneConfig; valid here: "
                             f"{', '.join(method_names(PruneConfig))}")
        check_choice(self.hsic_phase, ("retrain", "both"), "hsic_phase")
        check_choice(self.mode, MODES, "pruning mode")
        check_choice(self.scope, SCOPES, "scope")
        check_choice(self.structure, STRUCTURES, "structure")
        check_choice(self.importance, IMPORTANCES, "importance")
        check_choice(self.schedule, SCHEDULES, "schedule")
        if self.structure == "structured":
            check_choice(self.scope, STRUCTURED_SCOPES, "scope of structured pruning")
        eps = self.resolved_eps()
        seed = self.seed if spec.trains else 0  # no training, nothing random: one run for any seed
        # fields the method never reads go back to their defaults, so that a sweep over lambda_x runs naive pruning
        # once, not once per value it ignores
        unused = {f.name: f.default for f in fields(PruneConfig) if f.name in spec.ignores}
        budget = self.budget_applied() if spec.trains else {"lr_factor": 1.0, "epoch_factor": 1.0}
        return replace(self, **unused, **budget, rate=check_rate(self.rate), eps=eps,
                       select=self.select or "best_val_pgd", seed=seed, mix_ratio=self.resolved_mix(spec.mix_ratio),
                       adv_steps=self.adv_steps or dataset_info(self.dataset).pgd_steps,
                       adv_alpha=self.adv_alpha or attack_options(self.dataset, eps)["pgd"]["alpha"]
                       )._mark_resolved()

    def phases(self) -> list[Phase]:
        if not method_spec(self.method).trains:
            return []  # the hard prune happens in `finish`: the teacher's own weights, magnitude-pruned
        if self.schedule == "oneshot":   # the same training budget as admm + retrain
            return [Phase("retrain", self.admm_epochs + self.retrain_epochs, self.lr_retrain, self.lr_schedule)]
        if self.schedule == "iterative":
            return [Phase("gradual", self.admm_epochs, self.lr_admm, selectable=False),
                    Phase("retrain", self.retrain_epochs, self.lr_retrain, self.lr_schedule)]
        admm = [Phase("admm", self.admm_epochs, self.lr_admm, selectable=False)] if self.mode == "layer" else []
        return admm + [Phase("retrain", self.retrain_epochs, self.lr_retrain, self.lr_schedule)]

    def make_student(self, teacher: nn.Module) -> nn.Module:
        return trainable_copy(teacher)

    def make_method(self, teacher: nn.Module, student: nn.Module, train: TensorData) -> "AdmmPruning":
        return AdmmPruning(self, teacher, student, train)


class AdmmPruning(MethodBase):
    """ADMM towards the sparsity set, the hard prune, masked retraining; the loss is the registered method's."""

    def __init__(self, config: PruneConfig, teacher: nn.Module, student: nn.Module, train: TensorData):
        self.config, self.name, self.student = config, f"{config.method} {config.rate:g}x", student
        self.spec = method_spec(config.method)
        self.plan = None if is_default(config) else PruneSchedule(config, student, train)
        self.admm = ADMM(student, config.rate, config.scope, config.rho0, config.rho_growth) \
            if self.plan is None else self.plan.admm
        self.device = next(student.parameters()).device
        info = dataset_info(config.dataset)
        self._cache = None
        if self.spec.uses_teacher and config.cache_teacher and not info.augment:
            # in batches of the training batch size: CPU kernels may round differently for other batch sizes, and
            # then the cached logits would not be bit-identical to those of a per-batch teacher forward
            b = config.batch_size
            with torch.no_grad():
                self._cache = torch.cat([teacher(train.x[i:i + b].to(self.device)) for i in range(0, len(train), b)])
        self.ctx = LossContext(config, teacher, self._teacher_logits, info.num_classes)

    def _teacher_logits(self, batch: Batch) -> torch.Tensor:
        if self._cache is not None and batch.x_adv is None:
            return self._cache[batch.index.to(self.device)]
        with torch.no_grad():
            return self.ctx.teacher(batch.inputs)

    def begin_phase(self, phase: Phase, student: nn.Module) -> None:
        if self.plan is not None:
            self.plan.begin_phase(phase, student)
        elif phase.name == "retrain":
            self.hard_prune(student)

    def hard_prune(self, student: nn.Module) -> None:
        """To the ADMM support (before any ADMM update: per-layer magnitude), or one global magnitude threshold."""
        masks = self.admm.masks() if self.config.mode == "layer" else \
            magnitude_masks(student, self.config.rate, self.config.scope, "global")
        apply_masks(student, masks)

    def adversarial(self, student, x, y, step):
        if self.spec.adversarial is not None:
            return self.spec.adversarial(student, x, y, self.config)
        return pgd_linf(student, x, y, self.config.eps, alpha=self.config.adv_alpha, steps=self.config.adv_steps)

    def loss(self, student, batch, phase):
        loss, terms = self.spec.loss(student, batch, phase, self.ctx)
        if phase.name == "admm":
            penalty = self.admm.penalty()
            terms["admm"] = penalty.item()
            loss = loss + penalty
        return loss, terms

    def end_epoch(self, phase, epoch_in_phase):
        if phase.name == "gradual":
            return self.plan.end_epoch(phase, epoch_in_phase, self.student)
        if phase.name != "admm":
            return {}
        row = {"admm_residual": self.admm.primal_residual()}
        if epoch_in_phase % self.config.admm_every == 0:
            self.admm.update()
        return row

    def finish(self, student):
        if self.plan is not None:
            return self.plan.finish(student)
        if not is_masked(student):  # no retraining phase ran (oneshot, or retrain_epochs=0): prune now
            self.hard_prune(student)
        return remove_masks(student)

    def state_dict(self):
        return {"admm": self.admm.state_dict()} if self.plan is None else {"plan": self.plan.state_dict()}

    def load_state_dict(self, state):
        if self.plan is not None:
            return self.plan.load_state_dict(state["plan"])
        self.admm.load_state_dict(state["admm"])
