"""One prune-and-finetune engine; the methods differ only in their loss.

    student <- copy of the robust teacher (the teacher stays frozen, in eval mode)
    phase 1, ADMM (admm_epochs):  loss(batch) + sum_l rho_l/2 ||W_l - Z_l + U_l||^2,
                                  every admm_every epochs: Z <- top-k(W + U), U <- U + W - Z, rho <- 1.35 rho
    hard prune to the support of Z (keep 1/rate of every pruned weight tensor)
    phase 2, masked retraining (retrain_epochs): loss(batch), pruned weights held at exactly 0

Losses (`method`):
    naive     L_CE = CE(f(x), y)                         the paper's "L_CE": pruning destroys robustness
    kd        L_D  = T^2 KL(f_teacher(x)/T || f(x)/T)    self-distillation from the dense teacher
    pwoa      L_D + L_H,  L_H = sum_j lx nHSIC(X, Z_j) - ly nHSIC(Y, Z_j)   (HBaR)
    advprune  CE on PGD examples (Ye et al. 2019): mix ratio 1 by default

Mix ratio r: per batch, with probability r the whole batch is replaced by PGD examples made against the
current student (in eval mode); every loss term then uses that batch. r = 0 is pure PwoA.

Every run records, per epoch: training wall time (evaluation excluded), validation natural and PGD
accuracy, the loss terms, and nHSIC(X, Z_j), nHSIC(Y, Z_j) per layer on a fixed validation batch.
"""
from __future__ import annotations

import copy
import math
import pickle
import time
import warnings
from pathlib import Path
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable

import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from .attacks import accuracy, default_attack_options, pgd_linf
from .data import TensorData, augment_batch, dataset_info, load_dataset
from .distillation import frozen_teacher, kd_loss
from .hsic import hbar_loss, hsic_xz_yz
from .models import logits_and_hiddens
from .pruning import ADMM, apply_masks, current_masks, is_masked, magnitude_masks, remove_masks, sparsity_report
from .utils import (atomic_write, check_choice, check_eps, check_mix_ratio, check_rate, config_key, forked_rng,
                    get_device, model_fingerprint, set_seed)

METHODS = ("naive", "kd", "pwoa", "advprune")
PRESET_NAMES = ("smoke", "quick", "paper")


@dataclass
class PruneConfig:
    """Everything that determines a prune-and-finetune run (its cache key)."""
    dataset: str = "digits"
    method: str = "pwoa"
    rate: float = 4.0
    scope: str = "all"                 # all: every conv + linear weight; convs: the reference code's choice
    mode: str = "layer"                # layer: uniform per layer (paper); global: one magnitude threshold
    admm_epochs: int = 10
    admm_every: int = 3
    rho0: float = 0.01
    rho_growth: float = 1.35
    retrain_epochs: int = 10
    batch_size: int = 128
    optimizer: str = "adam"            # adam | sgd
    lr_admm: float = 5e-4
    lr_retrain: float = 1e-3
    lr_schedule: str = "multistep"     # retraining: multistep (x0.1 at 75% and 90%) | cosine | constant
    momentum: float = 0.9
    weight_decay: float = 0.0
    temperature: float = 30.0
    lambda_x: float = 2e-4
    lambda_y: float = 5e-5
    hsic_phase: str = "retrain"        # retrain (reference scripts) | both
    sigma: float = 5.0
    centering: str = "hkh"
    mix_ratio: float | None = None     # None: 1 for advprune, 0 otherwise
    mix_pgd_steps: int | None = None   # None: the dataset's PGD steps
    mix_pgd_alpha: float | None = None
    eps: float | None = None           # None: the dataset's eps
    n_per_class: int | None = None     # training subset (quick presets)
    val_n: int = 500
    val_pgd_steps: int = 10
    eval_every: int = 1                # validate every k epochs (and at the end of each phase)
    cache_teacher: bool = True         # compute the frozen teacher's logits once (no augmentation)
    seed: int = 1234
    device: str | None = None
    extra: dict = field(default_factory=dict)

    def resolved(self) -> "PruneConfig":
        """Validated copy with the dataset defaults filled in."""
        check_choice(self.method, METHODS, "method")
        check_choice(self.optimizer, ("adam", "sgd"), "optimizer")
        check_choice(self.lr_schedule, ("multistep", "cosine", "constant"), "lr schedule")
        check_choice(self.hsic_phase, ("retrain", "both"), "hsic_phase")
        check_choice(self.mode, ("layer", "global"), "pruning mode")
        info = dataset_info(self.dataset)
        mix = (1.0 if self.method == "advprune" else 0.0) if self.mix_ratio is None else self.mix_ratio
        return replace(self, rate=check_rate(self.rate), mix_ratio=check_mix_ratio(mix),
                       eps=check_eps(info.eps if self.eps is None else self.eps),
                       mix_pgd_steps=self.mix_pgd_steps or info.pgd_steps,
                       mix_pgd_alpha=self.mix_pgd_alpha or default_attack_options(
                           self.dataset, info.eps if self.eps is None else self.eps)["pgd"]["alpha"])

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("device")  # where a run happens does not change what it computes
        return d


# Schedules. quick: CPU minutes; paper: the reference schedule (GPU hours); smoke: seconds (tests, CI).
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "smoke": {
        "digits": dict(admm_epochs=2, admm_every=1, rho0=0.1, retrain_epochs=2, batch_size=64, lr_admm=5e-4,
                       lr_retrain=5e-4, lr_schedule="constant", val_n=100, val_pgd_steps=5, mix_pgd_steps=3),
        "mnist": dict(admm_epochs=1, admm_every=1, retrain_epochs=1, n_per_class=50, val_n=100, val_pgd_steps=5,
                      lr_schedule="constant"),
    },
    "quick": {
        "digits": dict(admm_epochs=6, admm_every=1, rho0=0.1, retrain_epochs=12, batch_size=32, lr_admm=5e-4,
                       lr_retrain=5e-4, lr_schedule="constant", val_n=179, val_pgd_steps=10, eval_every=3),
        # PGD-10 (step 2.5 eps / 10) instead of the paper's PGD-40 for mixed-in adversarial batches: CPU minutes.
        # rho0 is the paper's 0.01: with 0.1, PwoA's validation PGD at 8x fell from 91 to 5 in the 2 ADMM epochs
        # and ended at 46 (test PGD-40); with 0.01 it stays at 77-80 and ends at 77 (README, "Figure 1, MNIST").
        # Validation (every epoch, 500 images) uses PGD-5: with PGD-10 it cost more than the test-set PGD-40
        "mnist": dict(admm_epochs=2, admm_every=1, rho0=0.01, retrain_epochs=3, n_per_class=600, lr_admm=5e-4,
                      lr_retrain=5e-4, lr_schedule="constant", val_n=500, val_pgd_steps=5, mix_pgd_steps=10,
                      mix_pgd_alpha=0.075),
        "cifar10": dict(admm_epochs=2, admm_every=1, retrain_epochs=3, n_per_class=500, optimizer="sgd",
                        lr_admm=0.01, lr_retrain=5e-3, lr_schedule="cosine", weight_decay=1e-4, lambda_x=2e-5,
                        lambda_y=1e-4, val_n=500),
    },
    "paper": {
        "digits": dict(admm_epochs=50, admm_every=3, retrain_epochs=100, lr_admm=5e-4, lr_retrain=1e-3),
        "mnist": dict(admm_epochs=50, admm_every=3, retrain_epochs=100, lr_admm=5e-4, lr_retrain=1e-3,
                      val_n=5000, val_pgd_steps=40),
        "fashion_mnist": dict(admm_epochs=50, admm_every=3, retrain_epochs=100, lr_admm=5e-4, lr_retrain=1e-3),
        "cifar10": dict(admm_epochs=50, admm_every=3, retrain_epochs=100, optimizer="sgd", lr_admm=0.01,
                        lr_retrain=5e-3, lr_schedule="cosine", weight_decay=1e-4, lambda_x=2e-5, lambda_y=1e-4,
                        val_n=1000),
        "cifar100": dict(admm_epochs=50, admm_every=3, retrain_epochs=100, optimizer="sgd", lr_admm=0.01,
                         lr_retrain=5e-3, lr_schedule="cosine", weight_decay=1e-4, lambda_x=5e-7, lambda_y=2e-6,
                         val_n=1000),
    },
}


def preset_config(dataset: str, preset: str = "quick", **overrides: Any) -> PruneConfig:
    """The PruneConfig of a preset for a dataset, with `overrides` (method, rate, seed, ...) applied."""
    check_choice(preset, PRESETS, "preset")
    dataset_info(dataset)
    if dataset not in PRESETS[preset]:
        raise ValueError(f"preset {preset!r} has no schedule for {dataset!r}; it has: "
                         f"{', '.join(PRESETS[preset])}")
    unknown = set(overrides) - set(PruneConfig.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown PruneConfig fields {sorted(unknown)}; valid: "
                         f"{', '.join(PruneConfig.__dataclass_fields__)}")
    return PruneConfig(dataset=dataset, **{**PRESETS[preset][dataset], **overrides})


@dataclass
class PruneResult:
    """A pruned student (plain weights with exact zeros, eval mode) and how it was made."""
    model: nn.Module
    masks: dict[str, torch.Tensor]
    history: pd.DataFrame
    config: PruneConfig
    train_seconds: float

    def sparsity(self) -> pd.DataFrame:
        return sparsity_report(self.model, self.config.scope)


class NonFiniteLoss(FloatingPointError):
    """A loss term became NaN or inf."""


# ----------------------------------------------------------------------------------------------- pieces


def make_optimizer(params, config: PruneConfig, lr: float) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=config.momentum, weight_decay=config.weight_decay)
    return torch.optim.Adam(params, lr=lr, weight_decay=config.weight_decay)


def make_scheduler(opt: torch.optim.Optimizer, config: PruneConfig, epochs: int):
    """Per-epoch LR schedule of the retraining phase."""
    if config.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1))
    if config.lr_schedule == "multistep":
        milestones = sorted({max(1, round(f * epochs)) for f in (0.75, 0.9)})
        return torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=0.1)
    return None


def batch_loss(method: str, student: nn.Module, x: torch.Tensor, y: torch.Tensor,
               teacher_logits: torch.Tensor | None, config: PruneConfig, use_hsic: bool,
               num_classes: int) -> tuple[torch.Tensor, dict[str, float]]:
    """The method's loss on one batch and its terms (floats, for the history)."""
    if method in ("naive", "advprune"):
        logits = student(x)
        loss = F.cross_entropy(logits, y)
        return loss, {"ce": loss.item()}
    if method == "pwoa" and use_hsic:
        logits, hiddens = logits_and_hiddens(student, x)
    else:
        logits, hiddens = student(x), None
    loss = kd_loss(logits, teacher_logits, config.temperature)
    terms = {"kd": loss.item()}
    if hiddens is not None:
        h, _ = hbar_loss(x, y, hiddens, num_classes, config.lambda_x, config.lambda_y, config.sigma,
                         config.centering)
        terms["hsic"] = h.item()
        loss = loss + h
    return loss, terms


def check_finite(terms: dict[str, float], phase: str, epoch: int) -> None:
    for name, value in terms.items():
        if not math.isfinite(value):
            raise NonFiniteLoss(f"loss term {name!r} became {value} in the {phase} phase, epoch {epoch}; lower "
                                "the learning rate or the lambdas (with a state_path, as in the cached "
                                "experiments, the last completed epoch is kept there)")


def validation_metrics(model: nn.Module, val: TensorData, eps: float, steps: int,
                       hsic_batch: tuple[torch.Tensor, torch.Tensor] | None, num_classes: int,
                       config: PruneConfig) -> dict[str, float]:
    """Natural and PGD-`steps` accuracy (%) on `val`, and per-layer nHSIC on a fixed batch.

    The PGD random start draws from a forked RNG: validating more or less often never changes the training."""
    with forked_rng():
        row = {"val_natural": 100 * accuracy(model, val.x, val.y),
               "val_pgd": 100 * accuracy(model, pgd_linf(model, val.x, val.y, eps, alpha=2.5 * eps / steps,
                                                          steps=steps), val.y)}
    if hsic_batch is not None and hasattr(getattr(model, "module", model), "forward_features"):
        model.eval()
        with torch.no_grad():
            xb, yb = hsic_batch
            _, hiddens = logits_and_hiddens(model, xb)
            terms = hsic_xz_yz(xb, yb, hiddens, num_classes, config.sigma, config.centering)
        for j, (hx, hy) in enumerate(zip(terms.hsic_xz, terms.hsic_yz), 1):
            row[f"hsic_xz_{j}"], row[f"hsic_yz_{j}"] = hx, hy
    return row


# ----------------------------------------------------------------------------------------------- resume

def _state_key(config: PruneConfig, teacher: nn.Module) -> str:
    return config_key({"config": config.to_dict(), "teacher": model_fingerprint(teacher)})


def _save_state(path: str | Path, key: str, state: dict) -> None:
    with atomic_write(path, overwrite=True) as tmp:
        torch.save({"format": "pwoa-lab-train-state", "key": key, **state}, tmp)


def _load_state(path: str | Path, key: str) -> dict | None:
    """The saved training state for this config, or None (missing, damaged or another config's)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError):
        return None
    if not isinstance(state, dict) or state.get("format") != "pwoa-lab-train-state" or \
            state.get("key") != key:
        return None
    return state


# ----------------------------------------------------------------------------------------------- engine


def prune_and_finetune(teacher: nn.Module, config: PruneConfig, train: TensorData | None = None,
                       val: TensorData | None = None, root: str | None = None, progress: bool = True,
                       on_epoch: Callable[[dict], None] | None = None,
                       state_path: str | Path | None = None) -> PruneResult:
    """Prune a copy of `teacher` with `config` (see the module docstring); returns a PruneResult.

    `train`/`val` default to the dataset's train (subset per `n_per_class`) and validation splits.
    `state_path`: after every completed epoch the full training state is written there (atomically); a
    run started again with the same config and teacher resumes after the last completed epoch, and a run
    stopped by a non-finite loss leaves the last good epoch there.
    """
    config = config.resolved()
    info = dataset_info(config.dataset)
    device = get_device(config.device)
    set_seed(config.seed)
    if train is None:
        train = load_dataset(config.dataset, "train", root, n_per_class=config.n_per_class, seed=config.seed)
    if val is None:
        val = load_dataset(config.dataset, "val", root)
    val = val.head(config.val_n).take(slice(None))
    val = TensorData(val.x.to(device), val.y.to(device), val.name, "val")
    hsic_batch = (val.x[:128], val.y[:128]) if len(val) >= 2 else None

    teacher = frozen_teacher(teacher).to(device)
    student = copy.deepcopy(teacher).train()
    for p in student.parameters():
        p.requires_grad_(True)
    uses_teacher = config.method in ("kd", "pwoa")
    teacher_cache = None
    if uses_teacher and config.cache_teacher and not info.augment:
        # in batches of the training batch size: CPU kernels may round differently for other batch sizes, and
        # then the cached logits would not be bit-identical to those of a per-batch teacher forward
        b = config.batch_size
        with torch.no_grad():
            teacher_cache = torch.cat([teacher(train.x[i:i + b].to(device)) for i in range(0, len(train), b)])

    gen = torch.Generator().manual_seed(config.seed)           # batch order, augmentation
    mix_gen = torch.Generator().manual_seed(config.seed + 1)   # which batches become adversarial
    history: list[dict] = []
    train_seconds = 0.0

    def run_epoch(phase: str, epoch: int, opt, admm: ADMM | None, use_hsic: bool, last: bool) -> dict:
        nonlocal train_seconds
        student.train()
        start = time.perf_counter()
        order = torch.randperm(len(train), generator=gen)
        sums: dict[str, float] = {}
        n_batches = n_adv = 0
        bar = tqdm(range(0, len(train), config.batch_size), desc=f"{config.method} {config.rate:g}x {phase} {epoch}",
                   disable=not progress, leave=False)
        for i in bar:
            index = order[i:i + config.batch_size]
            x, y = train.x[index], train.y[index]
            if info.augment:
                x = augment_batch(x, gen)
            x, y = x.to(device), y.to(device)
            adversarial = config.mix_ratio > 0 and torch.rand((), generator=mix_gen).item() < config.mix_ratio
            if adversarial:
                x = pgd_linf(student, x, y, config.eps, alpha=config.mix_pgd_alpha, steps=config.mix_pgd_steps)
                student.train()
                n_adv += 1
            t_logits = None
            if uses_teacher:
                if teacher_cache is not None and not adversarial and not info.augment:
                    t_logits = teacher_cache[index.to(device)]
                else:
                    with torch.no_grad():
                        t_logits = teacher(x)
            loss, terms = batch_loss(config.method, student, x, y, t_logits, config, use_hsic, info.num_classes)
            if admm is not None:
                penalty = admm.penalty()
                terms["admm"] = penalty.item()
                loss = loss + penalty
            check_finite(terms, phase, epoch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            n_batches += 1
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v
        train_seconds += time.perf_counter() - start
        row = {"phase": phase, "epoch": epoch, "train_seconds": train_seconds,
               "adv_batch_fraction": n_adv / max(n_batches, 1),
               **{f"loss_{k}": v / max(n_batches, 1) for k, v in sums.items()}}
        if admm is not None:
            row["admm_residual"] = admm.primal_residual()
        if last or epoch % max(config.eval_every, 1) == 0:
            row.update(validation_metrics(student, val, config.eps, config.val_pgd_steps, hsic_batch,
                                          info.num_classes, config))
        history.append(row)
        if on_epoch is not None:
            on_epoch(row)
        return row

    # the schedule: ADMM epochs (layer mode only), then masked retraining
    schedule = [("admm", e) for e in range(1, config.admm_epochs + 1) if config.mode == "layer"]
    schedule += [("retrain", e) for e in range(1, config.retrain_epochs + 1)]
    admm = ADMM(student, config.rate, config.scope, config.rho0, config.rho_growth)
    opt = make_optimizer(student.parameters(), config, config.lr_admm)
    sched = None
    done = 0
    state_key = _state_key(config, teacher) if state_path is not None else ""
    saved = _load_state(state_path, state_key) if state_path is not None else None
    if saved is not None:  # resume after the last completed epoch
        done, history[:], train_seconds = saved["done"], saved["history"], saved["train_seconds"]
        if saved["masks"] is not None:
            apply_masks(student, saved["masks"])
            opt = make_optimizer(student.parameters(), config, config.lr_retrain)
            sched = make_scheduler(opt, config, config.retrain_epochs)
        student.load_state_dict(saved["student"])
        opt.load_state_dict(saved["optimizer"])
        if sched is not None and saved["scheduler"] is not None:
            sched.load_state_dict(saved["scheduler"])
        admm.load_state_dict(saved["admm"])
        gen.set_state(saved["gen"])
        mix_gen.set_state(saved["mix_gen"])
        torch.random.set_rng_state(saved["rng"])

    def _training_state(done: int) -> dict:
        """Everything a resumed run needs after `done` completed epochs (opt / sched as they are now)."""
        return {"done": done, "history": history, "train_seconds": train_seconds,
                "masks": current_masks(student) if is_masked(student) else None,
                "student": student.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict() if sched is not None else None, "admm": admm.state_dict(),
                "gen": gen.get_state(), "mix_gen": mix_gen.get_state(), "rng": torch.random.get_rng_state()}

    for step, (phase, epoch) in enumerate(schedule):
        if step < done:
            continue
        if phase == "retrain" and epoch == 1:  # hard prune to the ADMM support (or global magnitude)
            masks = admm.masks() if config.mode == "layer" else \
                magnitude_masks(student, config.rate, config.scope, "global")
            apply_masks(student, masks)
            opt = make_optimizer(student.parameters(), config, config.lr_retrain)
            sched = make_scheduler(opt, config, config.retrain_epochs)
        if phase == "admm":
            run_epoch("admm", epoch, opt, admm, use_hsic=config.hsic_phase == "both",
                      last=epoch == config.admm_epochs)
            if epoch % config.admm_every == 0:
                admm.update()
        else:
            run_epoch("retrain", config.admm_epochs + epoch, opt, None, use_hsic=True,
                      last=epoch == config.retrain_epochs)
            if sched is not None:
                sched.step()
        if state_path is not None:
            try:
                _save_state(state_path, state_key, _training_state(step + 1))
            except OSError as err:  # a read-only or full folder must not stop the run
                warnings.warn(f"cannot save the training state to {state_path} ({err}); the run goes on without "
                              "resume points", stacklevel=2)
                state_path = None
    masks = remove_masks(student)
    student.eval()
    return PruneResult(student, masks, pd.DataFrame(history), config, train_seconds)
