"""The one training loop: every run of the kit (a teacher, a pruned student, HYDRA) is `fit`.

    for phase in phases:                              # phases are data, e.g. [admm(6), retrain(12)]
        method.begin_phase(phase, student)            # e.g. the hard prune before masked retraining
        for epoch in phase:
            for x, y in batches:                      # seeded order (and augmentation)
                with probability mix_ratio:  x_adv = method.adversarial(student, x, y)
                loss, terms = method.loss(student, Batch(x, y, index, x_adv), phase)
                loss.backward(); method.before_step(student); opt.step()
            method.end_epoch(phase, epoch)            # e.g. ADMM's Z / U / rho update
            validate (natural, PGD, nHSIC per layer); save the resume state
    method.finish(student)                            # e.g. make the masks permanent

A *method* (`pwoa_lab.training.methods`) is a loss plus these small hooks; the loop owns what every run shares: batch
order, the mix ratio, timing (training only, evaluation excluded), validation history, the NaN stop, the
progress bar, checkpoint selection, and resume after an interrupt.

Mix ratio r (one meaning everywhere): per batch, with probability r the batch gets an adversarial counterpart
made against the current student (`method.adversarial`: PGD for most methods, TRADES' KL-PGD for HYDRA,
PGD or FGSM-RS with an eps ramp for teachers); the method's loss decides how it uses it (most feed it to every
loss term instead of the natural batch).

Resume: with `state_path`, after every completed epoch the whole training state is written there atomically and a
rerun continues from it (`pwoa_lab.training.resume`). Validation and checkpoint selection: `validation_metrics`
and `select_epoch` (`pwoa_lab.training.validation`); every name stays importable from here.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Protocol, Sequence

import pandas as pd
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from pwoa_lab import defaults
from pwoa_lab.core.data import TensorData, augment_batch, check_n_per_class, dataset_info
from pwoa_lab.pruning.masks import sparsity_report
from pwoa_lab.training.resume import STATE_FORMAT, load_state, restore, run_state, save_or_warn, save_state
from pwoa_lab.training.validation import SELECT_RULES, select_epoch, validation_metrics
from pwoa_lab.utils import check_budget_factor, check_choice, check_eps, check_mix_ratio, get_device

__all__ = ["LR_SCHEDULES", "SELECT_RULES", "STATE_FORMAT", "Batch", "FitResult", "Method", "NonFiniteLoss", "Phase",
           "RunConfig", "check_finite", "fit", "load_state", "make_optimizer", "make_scheduler", "save_state",
           "select_epoch", "validation_metrics"]

LR_SCHEDULES = ("constant", "multistep", "cosine")


@dataclass
class RunConfig:
    """The fields every run has (teachers, pruning methods, HYDRA); methods add their own on top.

    Everything here is part of a run's cache key except `device` (where a run happens does not change what it
    computes)."""
    dataset: str = defaults.DATASET
    batch_size: int = 128
    optimizer: str = "adam"            # adam | sgd
    momentum: float = 0.9              # sgd only
    weight_decay: float = 0.0
    lr_schedule: str = "constant"      # per phase: constant | multistep (x0.1 at 75% and 90%) | cosine
    mix_ratio: float | None = None     # probability of an adversarial batch; None: the method's default
    eps: float | None = None           # L-inf radius on [0, 1] inputs; None: the dataset's
    n_per_class: int | None = None     # training subset (quick presets); None: the whole training split
    val_n: int = 500                   # validation images for the per-epoch history
    val_pgd_steps: int = 10            # PGD steps of that validation (step 2.5 eps / steps)
    eval_every: int = 1                # validate every k epochs (and at the end of each phase)
    sigma: float = 5.0                 # Gaussian kernel width of the nHSIC terms (loss and history)
    centering: str = "hkh"             # kernel centering of nHSIC: hkh | kh
    select: str | None = None          # which epoch's weights a run returns (SELECT_RULES); None: the method's
    #                                    (pruning: best_val_pgd among the epochs after the hard prune)
    lr_factor: float = 1.0             # the fine-tuning budget: every learning rate of the run times this,
    epoch_factor: float = 1.0          # and every phase's epochs times this (rounded, at least 1)
    seed: int = defaults.SEED
    device: str | None = None

    # the fields the budget scales, per config class (see `budget_applied`)
    BUDGET_LRS: ClassVar[tuple[str, ...]] = ()
    BUDGET_EPOCHS: ClassVar[tuple[str, ...]] = ()

    def check(self) -> None:
        """Validate the shared fields (a ValueError that says what is valid)."""
        dataset_info(self.dataset)
        check_choice(self.optimizer, ("adam", "sgd"), "optimizer")
        check_choice(self.lr_schedule, LR_SCHEDULES, "lr schedule")
        check_choice(self.centering, ("hkh", "kh"), "centering")
        if self.select is not None:
            check_choice(self.select, SELECT_RULES, "checkpoint selection")
        if self.n_per_class is not None:
            check_n_per_class(self.n_per_class)
        for name in ("batch_size", "val_n", "val_pgd_steps", "eval_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number >= 1; got {value!r}")

    def budget_applied(self) -> dict[str, Any]:
        """The learning rates and epochs of the config scaled by lr_factor and epoch_factor, with both factors back
        at 1: a budget written as factors and the same budget written out as rates and epochs are one run."""
        lr = check_budget_factor(self.lr_factor, "lr_factor")
        ep = check_budget_factor(self.epoch_factor, "epoch_factor")
        out = {name: getattr(self, name) * lr for name in self.BUDGET_LRS}
        for name in self.BUDGET_EPOCHS:
            epochs = getattr(self, name)
            out[name] = max(1, round(epochs * ep)) if epochs > 0 else 0
        return {**out, "lr_factor": 1.0, "epoch_factor": 1.0}

    def is_resolved(self) -> bool:
        """True for the copy `resolved()` returned: validated, every default filled in, only to be read."""
        return getattr(self, "_resolved", False)

    def _mark_resolved(self) -> "RunConfig":
        object.__setattr__(self, "_resolved", True)  # not a field: `replace` (a new, unchecked config) drops it
        return self

    def resolved_eps(self) -> float:
        return check_eps(dataset_info(self.dataset).eps if self.eps is None else self.eps)

    def resolved_mix(self, default: float) -> float:
        return check_mix_ratio(default if self.mix_ratio is None else self.mix_ratio)

    def to_dict(self) -> dict[str, Any]:
        d = {"kind": type(self).__name__, **asdict(self)}
        d.pop("device")
        return d


@dataclass(frozen=True)
class Phase:
    """One phase of a run: `epochs` epochs at learning rate `lr` with a fresh optimizer.

    `name` is what the history's `phase` column says and what the method's hooks see; `schedule` is the LR
    schedule over the phase (stepped per epoch, or per batch with `schedule_per_batch`); `selectable`: its
    epochs may be chosen by `select="best_val_pgd"` (the sparse phases of a pruning run, every epoch of a
    teacher run)."""
    name: str
    epochs: int
    lr: float
    schedule: str = "constant"
    schedule_per_batch: bool = False
    selectable: bool = True


@dataclass
class Batch:
    """One training batch: natural inputs x [B, C, H, W] in [0, 1], labels y [B], their indices in the training
    set, and x_adv (same shape) when the mix ratio drew this batch adversarial, else None."""
    x: torch.Tensor
    y: torch.Tensor
    index: torch.Tensor
    x_adv: torch.Tensor | None = None

    @property
    def inputs(self) -> torch.Tensor:
        """What the loss terms see under the mix ratio: the adversarial batch if there is one."""
        return self.x if self.x_adv is None else self.x_adv


class Method(Protocol):
    """What `fit` asks of a method. `pwoa_lab.training.methods.MethodBase` gives do-nothing defaults for every hook."""
    name: str

    def begin_phase(self, phase: Phase, student: nn.Module) -> None: ...
    def adversarial(self, student: nn.Module, x: torch.Tensor, y: torch.Tensor, step: int) -> torch.Tensor: ...
    def loss(self, student: nn.Module, batch: Batch, phase: Phase) -> tuple[torch.Tensor, dict[str, float]]: ...
    def before_step(self, student: nn.Module) -> None: ...
    def end_epoch(self, phase: Phase, epoch_in_phase: int) -> dict[str, float]: ...
    def finish(self, student: nn.Module) -> dict[str, torch.Tensor]: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class FitResult:
    """A trained model (plain weights, exact zeros where pruned, eval mode) and how it was made.

    `history`: one row per epoch (phase, epoch, train_seconds, adv_batch_fraction, loss_*, val_*, hsic_*);
    `selected_epoch`: the epoch whose weights `model` holds (0: no epoch was trained); `masks`: {weight name:
    BoolTensor} of a pruned run; `last_model`: the final epoch's model when selection chose another one, else
    None."""
    model: nn.Module
    masks: dict[str, torch.Tensor]
    history: pd.DataFrame
    config: RunConfig
    train_seconds: float
    selected_epoch: int
    last_model: nn.Module | None = None

    def sparsity(self) -> pd.DataFrame:
        """Per-layer sparsity of the pruned layers (`pruning.sparsity_report`; every layer for a teacher)."""
        return sparsity_report(self.model, getattr(self.config, "scope", "all"))


class NonFiniteLoss(FloatingPointError):
    """A loss term became NaN or inf."""


# ----------------------------------------------------------------------------------------------- pieces

def make_optimizer(params, config: RunConfig, lr: float) -> torch.optim.Optimizer:
    """Adam or SGD (momentum, weight decay) over `params` at `lr`."""
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=config.momentum, weight_decay=config.weight_decay)
    return torch.optim.Adam(params, lr=lr, weight_decay=config.weight_decay)


def make_scheduler(opt: torch.optim.Optimizer, schedule: str, steps: int):
    """The LR schedule over `steps` scheduler steps (epochs or batches), or None for a constant LR."""
    check_choice(schedule, LR_SCHEDULES, "lr schedule")
    if schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1))
    if schedule == "multistep":
        milestones = sorted({max(1, round(f * steps)) for f in (0.75, 0.9)})
        return torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=0.1)
    return None


def check_finite(terms: dict[str, float], phase: str, epoch: int) -> None:
    """NonFiniteLoss naming the term, phase and epoch when a loss term is NaN or inf."""
    for name, value in terms.items():
        if not math.isfinite(value):
            raise NonFiniteLoss(f"loss term {name!r} became {value} in the {phase} phase, epoch {epoch}; lower "
                                "the learning rate or the lambdas (with a state_path, as in the cached "
                                "experiments, the last completed epoch is kept there)")


# ----------------------------------------------------------------------------------------------- the loop

@dataclass
class _Run:
    """What `fit` carries from epoch to epoch (and what the resume state holds)."""
    student: nn.Module
    method: Method
    config: RunConfig
    train: TensorData
    val: TensorData
    device: torch.device
    mix_ratio: float
    eps: float
    gens: dict[str, torch.Generator]
    progress: bool
    history: list
    train_seconds: float = 0.0
    step: int = 0                      # batches trained so far (e.g. for an eps ramp)
    best: tuple[float, int] | None = None
    best_state: dict | None = None


def _train_epoch(run: _Run, phase: Phase, epoch: int, opt, sched) -> dict[str, float]:
    """One epoch over the training set; returns adv_batch_fraction and loss_* (each term averaged over the
    batches that computed it)."""
    student, config, method, info = run.student, run.config, run.method, dataset_info(run.config.dataset)
    student.train()
    order = torch.randperm(len(run.train), generator=run.gens["order"])
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    n_batches = n_adv = 0
    bar = tqdm(range(0, len(run.train), config.batch_size), desc=f"{method.name} {phase.name} {epoch}",
               disable=not run.progress, leave=False)
    for i in bar:
        index = order[i:i + config.batch_size]
        x, y = run.train.x[index], run.train.y[index]
        if info.augment:
            x = augment_batch(x, run.gens["order"])
        batch = Batch(x.to(run.device), y.to(run.device), index)
        if run.mix_ratio > 0 and torch.rand((), generator=run.gens["mix"]).item() < run.mix_ratio:
            batch.x_adv = method.adversarial(student, batch.x, batch.y, run.step)
            student.train()
            n_adv += 1
        loss, terms = method.loss(student, batch, phase)
        check_finite(terms, phase.name, epoch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        method.before_step(student)
        opt.step()
        if sched is not None and phase.schedule_per_batch:
            sched.step()
        run.step += 1
        n_batches += 1
        for k, v in terms.items():
            sums[k], counts[k] = sums.get(k, 0.0) + v, counts.get(k, 0) + 1
    return {"adv_batch_fraction": n_adv / max(n_batches, 1), **{f"loss_{k}": sums[k] / counts[k] for k in sums}}


def _validate(run: _Run, hsic_batch) -> dict[str, float]:
    info = dataset_info(run.config.dataset)
    return validation_metrics(run.student, run.val, run.eps, run.config.val_pgd_steps, hsic_batch,
                              info.num_classes, run.config.sigma, run.config.centering)


def _select(run: _Run, phase: Phase, row: dict, select: str) -> None:
    """Keep the weights of the best validated epoch so far (the rule of `select_epoch`, applied as epochs end)."""
    metric = select[len("best_"):]
    if select == "last" or not phase.selectable or row.get(metric) is None or math.isnan(row[metric]):
        return
    score = row[metric]
    if run.best is None or score >= run.best[0]:
        run.best = (score, row["epoch"])
        run.best_state = copy.deepcopy(run.student.state_dict())


def _epoch_schedule(phases: Sequence[Phase]) -> list[tuple[int, int, int]]:
    """(phase index, epoch within the phase, global epoch) of every epoch, in order."""
    out, epoch = [], 0
    for p, phase in enumerate(phases):
        for e in range(1, phase.epochs + 1):
            epoch += 1
            out.append((p, e, epoch))
    return out


def fit(student: nn.Module, phases: Sequence[Phase], method: Method, config: RunConfig, train: TensorData,
        val: TensorData, *, state_path: str | Path | None = None,
        state_key: str = "", hsic_monitor: bool = True, progress: bool = True,
        on_epoch: Callable[[dict], None] | None = None) -> FitResult:
    """Train `student` (in place) through `phases` with `method`; returns a FitResult.

    `config` is a resolved run config (`config.resolved()`), only read here: its `mix_ratio` is the probability of
    an adversarial batch, its `select` which weights come back ("last": the final ones; "best_val_pgd": those of
    the selectable epoch with the best validation PGD accuracy; the test split is never looked at), its `seed`
    the batch order. `train` / `val`: tensors in [0, 1] (val is used for the history and for `select`);
    `state_path` / `state_key`: resume points (see the module docstring); `hsic_monitor`: record per-layer
    nHSIC on a fixed validation batch; `on_epoch(row)` is called after every epoch (after its state is saved).
    """
    if not config.is_resolved():
        raise ValueError(f"fit takes a resolved config: pass {type(config).__name__}(...).resolved(), which "
                         "checks every field and fills in the method's defaults (mix ratio, selection, eps)")
    select = config.select
    device = get_device(config.device)
    val = TensorData(val.x[:config.val_n].to(device), val.y[:config.val_n].to(device), val.name, "val")
    hsic_batch = (val.x[:128], val.y[:128]) if hsic_monitor and len(val) >= 2 else None
    gens = {"order": torch.Generator().manual_seed(config.seed),        # batch order, augmentation
            "mix": torch.Generator().manual_seed(config.seed + 1)}      # which batches become adversarial
    run = _Run(student, method, config, train, val, device, config.mix_ratio, config.eps, gens, progress, [])
    schedule = _epoch_schedule(phases)
    saved = load_state(state_path, state_key) if state_path is not None else None
    done = 0
    opt = sched = None
    if saved is not None:
        done = saved["done"]
        for phase in phases[:schedule[done - 1][0] + 1]:   # rebuild the structure (masks, scores) the state fits
            method.begin_phase(phase, student)
        opt, sched = _phase_optimizer(run, phases[schedule[done - 1][0]])
        restore(run, saved, opt, sched)
    for n, (p, e, epoch) in enumerate(schedule):
        if n < done:
            continue
        phase = phases[p]
        if e == 1:
            method.begin_phase(phase, student)
            opt, sched = _phase_optimizer(run, phase)
        start = time.perf_counter()
        terms = _train_epoch(run, phase, epoch, opt, sched)
        run.train_seconds += time.perf_counter() - start
        row = {"phase": phase.name, "epoch": epoch, "train_seconds": run.train_seconds, **terms,
               **method.end_epoch(phase, e)}
        if sched is not None and not phase.schedule_per_batch:
            sched.step()
        if e == phase.epochs or epoch % config.eval_every == 0:
            row.update(_validate(run, hsic_batch))
        run.history.append(row)
        _select(run, phase, row, select)
        if state_path is not None:  # before on_epoch: a stop or Ctrl-C there keeps the epoch just finished
            state_path = save_or_warn(state_path, state_key, run_state(run, n + 1, opt, sched))
        if on_epoch is not None:
            on_epoch(row)
    return _finish(run, select)


def _phase_optimizer(run: _Run, phase: Phase):
    opt = make_optimizer([p for p in run.student.parameters() if p.requires_grad], run.config, phase.lr)
    steps = phase.epochs * -(-len(run.train) // run.config.batch_size) if phase.schedule_per_batch else phase.epochs
    return opt, make_scheduler(opt, phase.schedule, steps)


def _finish(run: _Run, select: str) -> FitResult:
    last = selected = run.history[-1]["epoch"] if run.history else 0
    last_model = None
    if select != "last" and run.best_state is not None and run.best[1] != last:
        last_model = copy.deepcopy(run.student)
        run.method.finish(last_model)
        last_model.eval()
        run.student.load_state_dict(run.best_state)
        selected = run.best[1]
    masks = run.method.finish(run.student)
    run.student.eval()
    return FitResult(run.student, masks, pd.DataFrame(run.history), run.config, run.train_seconds, selected,
                     last_model)
