"""Every way the kit trains a model, each a config (what determines the run) plus a method (a loss and hooks).

| config | method | phases | loss |
| --- | --- | --- | --- |
| `PruneConfig` (naive, kd, pwoa, advprune, oneshot) | `AdmmPruning` | admm, retrain (global mode: retrain) | its loss |
| `HydraConfig` | `HydraPruning` | score, finetune | TRADES |
| `TeacherConfig` (pgd, fgsm_rs, none) | `AdversarialTraining` | train | CE |

The losses of the ADMM pipeline (the paper's ablations; the student starts as a copy of the teacher):

    oneshot   no loss, no training: magnitude pruning of the teacher (the control "pruning without fine-tuning")
    naive     L_CE = CE(f(x), y)                         the paper's "L_CE": pruning destroys robustness
    kd        L_D  = T^2 KL(f_teacher(x)/T || f(x)/T)    self-distillation from the dense teacher
    pwoa      L_D + L_H,  L_H = sum_j lx nHSIC(X, Z_j) - ly nHSIC(Y, Z_j)   (HBaR)
    advprune  CE on PGD examples (Ye et al. 2019): mix ratio 1 by default

ADMM pipeline: phase "admm" adds sum_l rho_l/2 ||W_l - Z_l + U_l||^2 to the loss and every `admm_every`
epochs updates Z <- top-k(W + U), U <- U + W - Z, rho <- rho_growth rho; "retrain" starts with the hard
prune to the support of Z (or one global magnitude threshold in mode "global") and trains with the pruned
weights held at exactly 0.

The pruning design space (`PruneConfig.structure`, `importance`, `schedule`; defaults: the pipeline above):
weight or structured (whole channels, a physically smaller model), magnitude or gradient importance, and
the schedules admm, oneshot (prune, then fine-tune) or iterative (cubic sparsity growth). `pwoa_lab.pruning.schedules`
says exactly what each does; the losses are the same whatever the choice ("PwoA-S": pwoa, structured).

Adding a method is one registration (`pwoa_lab.training.registry.register`): a loss
`(student, batch, phase, ctx) -> (loss, terms)` with `PruneConfig` when it fits the ADMM pipeline; otherwise a
config class (fields, `phases()`, `make_method()`) and a `MethodBase` subclass with the hooks it needs (see
`pwoa_lab.training.loop` for when each hook runs). The loop itself does not change. The built-in methods are
registered at the end of this module.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, fields, replace
from typing import Any, Callable, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from pwoa_lab.core.adversarial_training import AT_METHODS, adversarial_batch
from pwoa_lab.core.attacks import default_attack_options, pgd_linf
from pwoa_lab.core.data import TensorData, dataset_info
from pwoa_lab.core.distillation import kd_loss
from pwoa_lab.core.hsic import hbar_loss
from pwoa_lab.core.models import build_model, logits_and_hiddens
from pwoa_lab.core.trades import TRAIN_PGD_STEPS, trades_adversarial, trades_objective
from pwoa_lab.pruning.admm import ADMM
from pwoa_lab.pruning.masks import MODES, SCOPES, apply_masks, is_masked, magnitude_masks, remove_masks
from pwoa_lab.pruning.schedules import IMPORTANCES, SCHEDULES, STRUCTURES, PruneSchedule, is_default
from pwoa_lab.pruning.scores import add_scores, remove_scores
from pwoa_lab.pruning.structured import STRUCTURED_SCOPES
from pwoa_lab.training.loop import Batch, Phase, RunConfig
from pwoa_lab.training.registry import MethodSpec, method_names, method_spec, register
from pwoa_lab.utils import check_choice, check_rate


class MethodBase:
    """Do-nothing defaults for every hook of `pwoa_lab.loop.fit`; a method overrides what it needs."""
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


# ----------------------------------------------------------------------------------------------- losses

@dataclass
class LossContext:
    """What a loss of the ADMM pipeline may use besides the batch."""
    config: "PruneConfig"
    teacher: nn.Module
    teacher_logits: Callable[[Batch], torch.Tensor]
    num_classes: int


def ce_loss(student: nn.Module, batch: Batch, phase: Phase, ctx: LossContext):
    """L_CE on the batch the mix ratio gave (natural for naive, PGD for advprune)."""
    loss = F.cross_entropy(student(batch.inputs), batch.y)
    return loss, {"ce": loss.item()}


def distillation_loss(student: nn.Module, batch: Batch, phase: Phase, ctx: LossContext):
    """L_D: T^2 KL from the frozen dense teacher."""
    loss = kd_loss(student(batch.inputs), ctx.teacher_logits(batch), ctx.config.temperature)
    return loss, {"kd": loss.item()}


def pwoa_loss(student: nn.Module, batch: Batch, phase: Phase, ctx: LossContext):
    """L_D + L_H (HBaR over every hidden layer; in the retraining phase, or in both with hsic_phase="both")."""
    c = ctx.config
    if phase.name != "retrain" and c.hsic_phase != "both":
        return distillation_loss(student, batch, phase, ctx)
    x = batch.inputs
    logits, hiddens = logits_and_hiddens(student, x)
    loss = kd_loss(logits, ctx.teacher_logits(batch), c.temperature)
    terms = {"kd": loss.item()}
    h, _ = hbar_loss(x, batch.y, hiddens, ctx.num_classes, c.lambda_x, c.lambda_y, c.sigma, c.centering)
    terms["hsic"] = h.item()
    return loss + h, terms




# ----------------------------------------------------------------------------------------------- ADMM pruning

@dataclass
class PruneConfig(RunConfig):
    """Everything that determines a run of the ADMM pipeline (naive, kd, pwoa, advprune, oneshot)."""
    PRESET_KEY: ClassVar[str] = "admm"  # its schedule in a preset block (pwoa_lab.training.presets)
    BUDGET_LRS: ClassVar[tuple[str, ...]] = ("lr_admm", "lr_retrain")
    BUDGET_EPOCHS: ClassVar[tuple[str, ...]] = ("admm_epochs", "retrain_epochs")
    lr_schedule: str = "multistep"     # of the retraining phase (the ADMM phase keeps its LR)
    method: str = "pwoa"
    rate: float = 4.0                  # keep 1/rate of every pruned weight tensor
    scope: str = "all"                 # all | hidden | convs (see pwoa_lab.pruning)
    mode: str = "layer"                # layer: ADMM, uniform per layer (paper); global: one magnitude threshold
    structure: str = "weight"          # weight | structured: whole channels, a smaller model (pwoa_lab.prune_schedules)
    importance: str = "magnitude"      # magnitude |w| | gradient |w dL/dw| on natural images
    schedule: str = "admm"             # admm (paper) | oneshot: prune, then fine-tune | iterative: cubic (Zhu & Gupta)
    admm_epochs: int = 10
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
                       adv_alpha=self.adv_alpha or default_attack_options(self.dataset, eps)["pgd"]["alpha"]
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
        return _trainable_copy(teacher)

    def make_method(self, teacher: nn.Module, student: nn.Module, train: TensorData) -> "AdmmPruning":
        return AdmmPruning(self, teacher, student, train)


def _trainable_copy(teacher: nn.Module) -> nn.Module:
    student = copy.deepcopy(teacher).train()
    for p in student.parameters():
        p.requires_grad_(True)
    return student


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


# ----------------------------------------------------------------------------------------------- HYDRA

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
    adv_steps: int | None = None       # TRADES inner-max steps; None: TRAIN_PGD_STEPS of the dataset
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
        steps = TRAIN_PGD_STEPS.get(self.dataset, info.pgd_steps) if self.adv_steps is None else self.adv_steps
        if steps < 1:
            raise ValueError(f"adv_steps must be >= 1; got {steps}")
        alpha = 2.5 * eps / steps if self.adv_alpha is None else self.adv_alpha
        return replace(self, **self.budget_applied(), rate=check_rate(self.rate),
                       mix_ratio=self.resolved_mix(method_spec("hydra").mix_ratio),
                       eps=eps, adv_steps=steps, adv_alpha=alpha, select=self.select or "best_val_pgd")._mark_resolved()

    def phases(self) -> list[Phase]:
        return [Phase("score", self.score_epochs, self.lr_score, self.lr_schedule, selectable=False),
                Phase("finetune", self.finetune_epochs, self.lr_finetune, self.lr_schedule)]

    def make_student(self, teacher: nn.Module) -> nn.Module:
        return _trainable_copy(teacher)

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


# ----------------------------------------------------------------------------------------------- teachers

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
        return build_model(self.model, self.dataset)

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


# ----------------------------------------------------------------------------------------------- the built-in methods

# fields the built-in losses never read (see MethodSpec.ignores)
_LOSS_FREE = ("temperature", "lambda_x", "lambda_y", "hsic_phase")
for _spec in (
    MethodSpec("oneshot", PruneConfig, loss=None, trains=False, ignores=_LOSS_FREE, order=10,
               label="one-shot, no training", color="tab:gray", marker="x",
               help="magnitude pruning of the teacher, no training (the control)"),
    MethodSpec("naive", PruneConfig, loss=ce_loss, ignores=_LOSS_FREE, order=20,
               label="naive (L_CE)", color="tab:red", marker="o", help="CE on natural images (the paper's L_CE)"),
    MethodSpec("kd", PruneConfig, loss=distillation_loss, uses_teacher=True, ignores=_LOSS_FREE[1:], order=30,
               label="L_D (distillation)", color="tab:orange", marker="s",
               help="self-distillation from the dense teacher (L_D)"),
    MethodSpec("pwoa", PruneConfig, loss=pwoa_loss, uses_teacher=True, order=40,
               label="PwoA (L_D + L_H)", color="tab:blue", marker="D", help="L_D + HBaR (the paper's method)"),
    MethodSpec("advprune", PruneConfig, loss=ce_loss, mix_ratio=1.0, ignores=_LOSS_FREE, order=50,
               label="AdvPrune", color="tab:green", marker="^",
               help="CE on PGD examples (Ye et al. 2019)"),
    MethodSpec("hydra", HydraConfig, mix_ratio=1.0, order=60, label="HYDRA", color="tab:purple",
               marker="v", help="learned scores + TRADES (Sehwag et al. 2020)"),
):
    register(_spec, replace=True)
