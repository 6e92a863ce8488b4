"""Adversarial training of robust teachers (the expensive step PwoA wants to avoid repeating).

    min_theta E_(x,y) max_{||delta||_inf <= eps} CE(f_theta(x + delta), y)

- `pgd`: the inner max by PGD-k with random start (Madry et al. 2018).
- `fgsm_rs`: one FGSM step of 1.25 eps from a random start ("fast" AT, Wong et al. 2020): cheap, but on
  LeNet-3/MNIST it plateaus far below PGD-AT (see the method doc), so the shipped teachers use `pgd`.
- `none`: plain cross-entropy on natural images (the undefended model of the sanity checks).

eps ramps up linearly over the first `eps_ramp_epochs` epochs. After every epoch, natural and PGD accuracy
on the validation split are recorded; the weights with the best validation PGD accuracy are kept.
"""
from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field

import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from .attacks import accuracy, eval_mode, pgd_linf
from .data import dataset_info, iterate_batches, load_dataset
from .models import build_model
from .utils import check_choice, check_eps, get_device, set_seed

AT_METHODS = ("pgd", "fgsm_rs", "none")


@dataclass
class TeacherConfig:
    """Everything that determines a teacher run."""
    dataset: str = "digits"
    model: str | None = None          # None: the dataset's default model
    method: str = "pgd"               # pgd | fgsm_rs | none
    eps: float | None = None          # None: the dataset's default eps
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3                  # Adam
    lr_schedule: str = "constant"     # constant | cosine (per step, to 0 at the end)
    weight_decay: float = 0.0
    pgd_steps: int = 10               # inner PGD steps while training
    pgd_alpha: float | None = None    # None: 2.5 eps / steps
    eps_ramp_epochs: float = 2.0
    n_per_class: int | None = None    # training subset (None: all)
    val_n: int | None = 1000          # validation images used for model selection
    val_pgd_steps: int = 20
    seed: int = 0
    device: str | None = None
    root: str | None = None
    extra: dict = field(default_factory=dict)


def fgsm_rs(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """FGSM from a random start with step 1.25 eps, projected back on the eps-ball and [0, 1]."""
    with eval_mode(model):
        delta = (torch.rand_like(x) * 2 - 1) * eps
        x_adv = (x + delta).clamp(0, 1).requires_grad_(True)
        grad, = torch.autograd.grad(F.cross_entropy(model(x_adv), y), x_adv)
        x_adv = x_adv.detach() + 1.25 * eps * grad.sign()
        return torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)


def adversarial_batch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, method: str, eps: float,
                      steps: int = 10, alpha: float | None = None) -> torch.Tensor:
    """The training inputs of one batch for an AT method (natural inputs for `none` or eps = 0)."""
    if method == "none" or eps == 0:
        return x
    if method == "fgsm_rs":
        return fgsm_rs(model, x, y, eps)
    return pgd_linf(model, x, y, eps, alpha=alpha if alpha is not None else 2.5 * eps / steps, steps=steps)


def train_teacher(config: TeacherConfig, progress: bool = True) -> tuple[nn.Module, pd.DataFrame, dict]:
    """Train a (robust) model; returns (best model in eval mode, per-epoch history, final val metrics)."""
    check_choice(config.method, AT_METHODS, "training method")
    info = dataset_info(config.dataset)
    eps = check_eps(info.eps if config.eps is None else config.eps)
    set_seed(config.seed)
    device = get_device(config.device)
    train = load_dataset(config.dataset, "train", config.root, n_per_class=config.n_per_class, seed=config.seed)
    val = load_dataset(config.dataset, "val", config.root).head(config.val_n)
    xv, yv = val.x.to(device), val.y.to(device)
    model = build_model(config.model, config.dataset).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    gen = torch.Generator().manual_seed(config.seed)
    steps_per_epoch = -(-len(train) // config.batch_size)
    check_choice(config.lr_schedule, ("constant", "cosine"), "lr schedule")
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.epochs * steps_per_epoch) \
        if config.lr_schedule == "cosine" else None
    ramp_steps = max(1, int(config.eps_ramp_epochs * steps_per_epoch))
    history, best, best_state, step, start = [], -1.0, None, 0, time.perf_counter()
    val_alpha = 2.5 * eps / config.val_pgd_steps
    for epoch in range(1, config.epochs + 1):
        model.train()
        total, correct, loss_sum = 0, 0, 0.0
        bar = tqdm(iterate_batches(train, config.batch_size, generator=gen, augment=info.augment),
                   total=steps_per_epoch, desc=f"epoch {epoch}/{config.epochs}", disable=not progress, leave=False)
        for x, y in bar:
            x, y = x.to(device), y.to(device)
            eps_now = eps * min(1.0, (step + 1) / ramp_steps) if config.eps_ramp_epochs > 0 else eps
            x_in = adversarial_batch(model, x, y, config.method, eps_now, config.pgd_steps, config.pgd_alpha)
            logits = model(x_in)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            step += 1
            total += len(y)
            correct += (logits.argmax(1) == y).sum().item()
            loss_sum += loss.item() * len(y)
            bar.set_postfix(loss=f"{loss_sum / total:.3f}", eps=f"{eps_now:.3f}")
        nat = accuracy(model, xv, yv)
        rob = accuracy(model, pgd_linf(model, xv, yv, eps, alpha=val_alpha, steps=config.val_pgd_steps), yv)
        history.append({"epoch": epoch, "train_loss": loss_sum / total, "train_acc": 100 * correct / total,
                        "val_natural": 100 * nat, "val_pgd": 100 * rob, "seconds": time.perf_counter() - start})
        if progress:
            tqdm.write(f"epoch {epoch}: loss {loss_sum / total:.3f} val natural {100 * nat:.1f}% "
                       f"val PGD-{config.val_pgd_steps} {100 * rob:.1f}% ({history[-1]['seconds']:.0f} s)")
        score = rob if config.method != "none" else nat
        if score >= best:  # ties go to the later epoch; best_row describes exactly the weights kept
            best, best_state, best_row = score, copy.deepcopy(model.state_dict()), history[-1]
    model.load_state_dict(best_state)
    model.eval()
    metrics = {"val_natural": best_row["val_natural"], "val_pgd": best_row["val_pgd"], "best_epoch": best_row["epoch"],
               "train_seconds": history[-1]["seconds"], "eps": eps}
    return model, pd.DataFrame(history), metrics


def config_dict(config: TeacherConfig) -> dict:
    return asdict(config)
