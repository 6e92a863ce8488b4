"""HYDRA (Sehwag et al., NeurIPS 2020): robust pruning by learning which weights to keep, the paper's baseline.

    student <- copy of the robust teacher
    phase 1, score (score_epochs):  every pruned layer computes with W * m(s), m(s) = top-k(|s|) (exactly
                                    k = keep_count(numel, rate) ones per layer); W is frozen, only the
                                    importance scores s train, through a straight-through gradient
                                    (d loss / d s := d loss / d m); s starts at sqrt(6 / fan_in) W / max|W|;
                                    biases and BatchNorm affine parameters are frozen too (BatchNorm
                                    running statistics still update)
    hard prune to m(s) (pruning.apply_masks: pruned weights are exactly 0 from here on)
    phase 2, finetune (finetune_epochs): the kept weights train with the mask frozen; then remove_masks

Loss in both phases: TRADES (Zhang et al. 2019), an adversarial-example loss,

    L = CE(f(x), y) + beta * KL( softmax(f(x)) || softmax(f(x_adv)) ),   beta = 6,

x_adv from PGD-k on that KL, started at x + 0.001 N(0, 1), model in eval mode while attacking.
Mix ratio r: per batch, with probability r the batch uses TRADES, else plain CE on natural images
(r = 1 is standard HYDRA). The history follows the engine's row conventions (phases "score", "finetune").
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Callable, ClassVar

import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from .attacks import check_images, eval_mode
from .data import TensorData, augment_batch, dataset_info, load_dataset
from .distillation import frozen_teacher
from .engine import PruneResult, check_finite, make_optimizer, make_scheduler, validation_metrics
from .pruning import SCOPES, apply_masks, keep_count, prunable_modules, remove_masks, topk_mask
from .utils import check_choice, check_eps, check_mix_ratio, check_rate, get_device, set_seed

# PGD steps of the TRADES inner maximisation while training (the dataset's evaluation steps are larger)
TRAIN_PGD_STEPS = {"digits": 10, "mnist": 10, "fashion_mnist": 10, "cifar10": 10, "cifar100": 10}


# ----------------------------------------------------------------------------------------------- TRADES


def trades_adversarial(model: nn.Module, x: torch.Tensor, eps: float, alpha: float, steps: int,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """TRADES inner max: PGD-`steps` (step `alpha`) on KL(softmax(f(x)) || softmax(f(x_adv))).

    x [B, C, H, W] in [0, 1]; starts at x + 0.001 N(0, 1); every iterate is projected on the eps-ball
    and [0, 1]. The model runs in eval mode (its mode is restored). Returns a detached x_adv [B, C, H, W].
    """
    eps = check_eps(eps)
    check_images(x)
    if steps < 1:
        raise ValueError(f"steps must be >= 1; got {steps}")
    x = x.detach()
    with eval_mode(model):
        with torch.no_grad():
            p_clean = F.softmax(model(x), dim=1)
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        x_adv = _project(x + 0.001 * noise, x, eps)
        for _ in range(steps):
            x_adv.requires_grad_(True)
            kl = F.kl_div(F.log_softmax(model(x_adv), dim=1), p_clean, reduction="sum")
            grad, = torch.autograd.grad(kl, x_adv)
            x_adv = _project(x_adv.detach() + alpha * grad.sign(), x, eps)
    return x_adv.detach()


def _project(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Clip x_adv to the L-inf eps-ball around x and to [0, 1]."""
    return torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)


def trades_objective(logits: torch.Tensor, logits_adv: torch.Tensor, y: torch.Tensor,
                     beta: float = 6.0) -> tuple[torch.Tensor, dict[str, float]]:
    """CE(logits, y) + beta * KL(softmax(logits) || softmax(logits_adv)), KL averaged over the batch.

    logits, logits_adv [B, C]; y [B]. Returns (scalar loss, {"ce", "kl"} as floats).
    """
    ce = F.cross_entropy(logits, y)
    kl = F.kl_div(F.log_softmax(logits_adv, dim=1), F.log_softmax(logits, dim=1), reduction="batchmean",
                  log_target=True)
    return ce + beta * kl, {"ce": ce.item(), "kl": kl.item()}


def trades_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, alpha: float, steps: int,
                beta: float = 6.0) -> tuple[torch.Tensor, dict[str, float]]:
    """The TRADES loss of one batch: x_adv by `trades_adversarial`, then `trades_objective` (model as given,
    usually train mode). Returns (scalar loss, {"ce", "kl"})."""
    x_adv = trades_adversarial(model, x, eps, alpha, steps)
    return trades_objective(model(x), model(x_adv), y, beta)


# ----------------------------------------------------------------------------------------------- scores


def initial_scores(weight: torch.Tensor) -> torch.Tensor:
    """HYDRA's score init sqrt(6 / fan_in) * W / max|W| (same shape as W; fan_in = W[0].numel())."""
    w = weight.detach()
    scale = w.abs().max().clamp_min(1e-12)
    return (6.0 / w[0].numel()) ** 0.5 * w / scale


class TopKStraightThrough(torch.autograd.Function):
    """Forward: the 0/1 mask of the k largest |scores| (float, scores' shape). Backward: identity."""

    @staticmethod
    def forward(ctx, scores: torch.Tensor, k: int) -> torch.Tensor:
        return topk_mask(scores, k).to(scores.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad, None


class ScoredLayer(nn.Module):
    """A conv/linear layer that computes with W * top-k(|scores|); holds the original `layer` and `scores`."""

    def __init__(self, layer: nn.Module, k: int) -> None:
        super().__init__()
        self.layer = layer
        self.k = k
        self.scores = nn.Parameter(initial_scores(layer.weight))

    def mask(self) -> torch.Tensor:
        """The current mask (0/1, the weight's shape), with the straight-through gradient to `scores`."""
        return TopKStraightThrough.apply(self.scores, self.k)

    def masked_weight(self) -> torch.Tensor:
        return self.layer.weight * self.mask()


class ScoredConv2d(ScoredLayer):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer._conv_forward(x, self.masked_weight(), self.layer.bias)  # handles padding modes


class ScoredLinear(ScoredLayer):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.masked_weight(), self.layer.bias)


def add_scores(model: nn.Module, rate: float, scope: str = "all") -> dict[str, ScoredLayer]:
    """In place: freeze every parameter of `model`, then replace each prunable layer by a Scored layer
    keeping k = keep_count(numel, rate) weights. Returns {weight name ("conv1.weight"): scored layer}."""
    rate = check_rate(rate)
    for p in model.parameters():
        p.requires_grad_(False)
    layers = prunable_modules(model, scope)
    if not layers:
        raise ValueError(f"the model has no prunable layers for scope={scope!r}")
    scored = {}
    for key, layer in layers.items():
        cls = ScoredConv2d if isinstance(layer, nn.Conv2d) else ScoredLinear
        scored[key] = cls(layer, keep_count(layer.weight.numel(), rate))
        _replace_module(model, key[: -len(".weight")], scored[key])
    return scored


def score_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """{weight name: BoolTensor}, the top-k(|scores|) mask of every Scored layer (exactly k True each)."""
    return {f"{name}.weight": topk_mask(m.scores, m.k) for name, m in model.named_modules()
            if isinstance(m, ScoredLayer)}


def remove_scores(model: nn.Module) -> dict[str, torch.Tensor]:
    """In place: put the plain layers back (weights unchanged, all parameters trainable); returns
    `score_masks` for `pruning.apply_masks`."""
    masks = score_masks(model)
    for key in masks:
        name = key[: -len(".weight")]
        _replace_module(model, name, model.get_submodule(name).layer)
    for p in model.parameters():
        p.requires_grad_(True)
    return masks


def _replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """model.<name> = new, for dotted names ("blocks.0.conv1")."""
    if not name:
        raise ValueError("the model itself is a single layer; wrap it in an nn.Sequential")
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent), child, new)


# ----------------------------------------------------------------------------------------------- config


@dataclass
class HydraConfig:
    """Everything that determines a HYDRA run (its cache key)."""
    method: ClassVar[str] = "hydra"    # for tables that mix HYDRA rows with engine rows
    dataset: str = "digits"
    rate: float = 4.0
    scope: str = "all"                 # all: every conv + linear weight; convs: conv weights only
    score_epochs: int = 20
    finetune_epochs: int = 100
    batch_size: int = 128
    optimizer: str = "sgd"             # sgd (paper) | adam
    lr_score: float = 0.1
    lr_finetune: float = 0.01
    lr_schedule: str = "cosine"        # per epoch, in both phases: cosine | multistep | constant
    momentum: float = 0.9
    weight_decay: float = 1e-4
    beta: float = 6.0                  # TRADES weight of the KL term
    pgd_steps: int | None = None       # None: TRAIN_PGD_STEPS of the dataset
    pgd_alpha: float | None = None     # None: 2.5 eps / pgd_steps
    eps: float | None = None           # None: the dataset's eps
    mix_ratio: float = 1.0             # probability that a batch uses TRADES (else CE on natural images)
    n_per_class: int | None = None     # training subset (quick presets)
    val_n: int = 500
    val_pgd_steps: int = 10
    eval_every: int = 1                # validate every k epochs (and at the end of each phase)
    sigma: float = 5.0                 # nHSIC monitoring in the history (as in PruneConfig)
    centering: str = "hkh"
    seed: int = 1234
    device: str | None = None
    extra: dict = field(default_factory=dict)

    def resolved(self) -> "HydraConfig":
        """Validated copy with the dataset defaults filled in."""
        check_choice(self.scope, SCOPES, "scope")
        check_choice(self.optimizer, ("adam", "sgd"), "optimizer")
        check_choice(self.lr_schedule, ("multistep", "cosine", "constant"), "lr schedule")
        info = dataset_info(self.dataset)
        eps = check_eps(info.eps if self.eps is None else self.eps)
        steps = TRAIN_PGD_STEPS.get(self.dataset, info.pgd_steps) if self.pgd_steps is None else self.pgd_steps
        if steps < 1:
            raise ValueError(f"pgd_steps must be >= 1; got {steps}")
        alpha = 2.5 * eps / steps if self.pgd_alpha is None else self.pgd_alpha
        return replace(self, rate=check_rate(self.rate), mix_ratio=check_mix_ratio(self.mix_ratio), eps=eps,
                       pgd_steps=steps, pgd_alpha=alpha)

    def to_dict(self) -> dict[str, Any]:
        d = {"method": self.method, **asdict(self)}
        d.pop("device")  # where a run happens does not change what it computes
        return d


# Schedules. quick: CPU minutes; paper: HYDRA's schedule (20 score + 100 finetune epochs); smoke: seconds.
HYDRA_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "smoke": {
        "digits": dict(score_epochs=1, finetune_epochs=1, pgd_steps=3, val_n=100, val_pgd_steps=5,
                       lr_schedule="constant"),
        "mnist": dict(score_epochs=1, finetune_epochs=1, pgd_steps=3, n_per_class=50, val_n=100,
                      val_pgd_steps=5, lr_schedule="constant"),
    },
    "quick": {
        "digits": dict(score_epochs=2, finetune_epochs=4, batch_size=64, pgd_steps=5, val_n=180,
                       val_pgd_steps=10),
        # validation as in the engine's MNIST quick preset (PGD-5): Figure 3 compares HYDRA's validation PGD with
        # PwoA's
        "mnist": dict(score_epochs=2, finetune_epochs=3, n_per_class=600, val_n=500, val_pgd_steps=5),
    },
    "paper": {
        "digits": dict(score_epochs=20, finetune_epochs=100),
        "mnist": dict(score_epochs=20, finetune_epochs=100, val_n=5000, val_pgd_steps=40),
        "cifar10": dict(score_epochs=20, finetune_epochs=100, val_n=1000),
        "cifar100": dict(score_epochs=20, finetune_epochs=100, val_n=1000),
    },
}


def hydra_config(dataset: str, preset: str = "quick", **overrides: Any) -> HydraConfig:
    """The HydraConfig of a preset for a dataset, with `overrides` (rate, mix_ratio, seed, ...) applied."""
    check_choice(preset, HYDRA_PRESETS, "preset")
    dataset_info(dataset)
    if dataset not in HYDRA_PRESETS[preset]:
        raise ValueError(f"HYDRA preset {preset!r} has no schedule for {dataset!r}; it has: "
                         f"{', '.join(HYDRA_PRESETS[preset])}")
    valid = [f.name for f in fields(HydraConfig)]
    unknown = set(overrides) - set(valid)
    if unknown:
        raise ValueError(f"unknown HydraConfig fields {sorted(unknown)}; valid: {', '.join(valid)}")
    return HydraConfig(dataset=dataset, **{**HYDRA_PRESETS[preset][dataset], **overrides})


# ----------------------------------------------------------------------------------------------- training


def _train_epoch(model: nn.Module, train: TensorData, opt: torch.optim.Optimizer, config: HydraConfig,
                 gen: torch.Generator, mix_gen: torch.Generator, device: torch.device, augment: bool,
                 phase: str, epoch: int, progress: bool) -> dict[str, float]:
    """One epoch of (mixed) TRADES; returns adv_batch_fraction and loss_* (each term averaged over the
    batches that computed it: loss_kl over the TRADES batches only)."""
    model.train()
    order = torch.randperm(len(train), generator=gen)
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    n_batches = n_adv = 0
    bar = tqdm(range(0, len(train), config.batch_size), desc=f"hydra {config.rate:g}x {phase} {epoch}",
               disable=not progress, leave=False)
    for i in bar:
        index = order[i:i + config.batch_size]
        x, y = train.x[index], train.y[index]
        if augment:
            x = augment_batch(x, gen)
        x, y = x.to(device), y.to(device)
        adversarial = config.mix_ratio > 0 and torch.rand((), generator=mix_gen).item() < config.mix_ratio
        if adversarial:
            loss, terms = trades_loss(model, x, y, config.eps, config.pgd_alpha, config.pgd_steps, config.beta)
            n_adv += 1
        else:
            loss = F.cross_entropy(model(x), y)
            terms = {"ce": loss.item()}
        check_finite(terms, phase, epoch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        n_batches += 1
        for k, v in terms.items():
            sums[k], counts[k] = sums.get(k, 0.0) + v, counts.get(k, 0) + 1
    return {"adv_batch_fraction": n_adv / max(n_batches, 1), **{f"loss_{k}": sums[k] / counts[k] for k in sums}}


def hydra_prune(teacher: nn.Module, config: HydraConfig, train: TensorData | None = None,
                val: TensorData | None = None, root: str | None = None, progress: bool = True,
                on_epoch: Callable[[dict], None] | None = None) -> PruneResult:
    """Prune a copy of `teacher` with HYDRA (see the module docstring); returns a PruneResult whose
    `config` is the resolved HydraConfig and whose model is plain (exact zeros, eval mode).

    `train`/`val` default to the dataset's train (subset per `n_per_class`) and validation splits.
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

    student = frozen_teacher(teacher).to(device)
    gen = torch.Generator().manual_seed(config.seed)           # batch order, augmentation
    mix_gen = torch.Generator().manual_seed(config.seed + 1)   # which batches use TRADES
    history: list[dict] = []
    train_seconds = 0.0

    def run_phase(phase: str, epochs: int, lr: float, first_epoch: int) -> None:
        nonlocal train_seconds
        opt = make_optimizer([p for p in student.parameters() if p.requires_grad], config, lr)
        sched = make_scheduler(opt, config, epochs)
        for epoch in range(first_epoch, first_epoch + epochs):
            start = time.perf_counter()
            terms = _train_epoch(student, train, opt, config, gen, mix_gen, device, info.augment, phase, epoch,
                                 progress)
            if sched is not None:
                sched.step()
            train_seconds += time.perf_counter() - start
            row = {"phase": phase, "epoch": epoch, "train_seconds": train_seconds, **terms}
            if epoch == first_epoch + epochs - 1 or epoch % max(config.eval_every, 1) == 0:
                row.update(validation_metrics(student, val, config.eps, config.val_pgd_steps, hsic_batch,
                                              info.num_classes, config))
            history.append(row)
            if on_epoch is not None:
                on_epoch(row)

    # phase 1: scores (weights frozen)
    add_scores(student, config.rate, config.scope)
    run_phase("score", config.score_epochs, config.lr_score, 1)

    # hard prune to top-k(|scores|), then fine-tune the kept weights
    apply_masks(student, remove_scores(student))
    run_phase("finetune", config.finetune_epochs, config.lr_finetune, config.score_epochs + 1)
    masks = remove_masks(student)
    student.eval()
    return PruneResult(student, masks, pd.DataFrame(history), config, train_seconds)
