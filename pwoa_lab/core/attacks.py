"""L-inf attacks with one call shape, the kit's PGD step rule and attack options, and PGD robust accuracy.

    x_adv = attack(model, x, y, eps=..., **options)

`x` [B, C, H, W] images in [0, 1] (checked), `y` [B] int labels, `eps` the L-inf radius in the same units.
Every attack runs the model in eval mode, restores the caller's train/eval mode, and returns a detached
`x_adv` in [0, 1] with ||x_adv - x||_inf <= eps.

- `fgsm`:       one signed-gradient step of size eps on the cross-entropy (Goodfellow et al.).
- `pgd_linf`:   projected gradient ascent on the cross-entropy, random start (Madry et al.).
- `cw_linf`:    the same PGD on the Carlini-Wagner margin loss (max_{j != y} z_j - z_y).
- `autoattack`: AutoAttack through `pyautoattack`: `standard` (APGD-CE, APGD-T, FAB-T, Square) or `fast`
                (APGD-CE + APGD-T over 3 target classes; a teaching shortcut, report `standard` in papers).

The one home of robust accuracy's settings: `pgd_step_size(eps, steps)` is the kit's PGD step rule (2.5 eps / steps,
Madry et al.), `attack_options(dataset, eps, pgd_steps)` the evaluation's PGD / CW options for a dataset (its fixed
step where its record has one), and `robust_accuracy(model, x, y, eps, steps)` the PGD accuracy (%) of one batch,
used wherever a PGD accuracy is computed outside the tables of `pwoa_lab.core.evaluation` (validation while
training, the course's widgets).

`pwoa_lab.core.worst_case.worst_case_robust` combines PGD and AutoAttack per point: AutoAttack runs only on the
points that are naturally correct and that PGD did not break, and a point counts as robust only if both fail on it.
`pwoa_lab.core.evaluation.evaluate` reports it as the attack "worst".
"""
from __future__ import annotations

import contextlib
import logging
import warnings
from typing import Callable, Iterator, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from pwoa_lab.core.datasets import dataset_info
from pwoa_lab.utils import check_choice, check_eps

# ----------------------------------------------------------------------------------------------- helpers


def check_images(x: torch.Tensor) -> None:
    """Attacks work on images in [0, 1]; anything else is almost always a normalization mistake."""
    if not torch.is_floating_point(x):
        raise ValueError(f"images must be a float tensor in [0, 1]; got dtype {x.dtype}")
    if x.numel() and (x.min() < 0 or x.max() > 1 or torch.isnan(x).any()):
        raise ValueError(f"images must lie in [0, 1] (found min {x.min().item():.3f}, max {x.max().item():.3f}); "
                         "pass unnormalized images and normalize inside the model")


def check_device(model: nn.Module, x: torch.Tensor) -> None:
    """The images must be where the model is (on a GPU machine the kit's models come back on the GPU)."""
    param = next(model.parameters(), None)
    if param is not None and param.device != x.device:
        raise ValueError(f"the images are on {x.device} but the model is on {param.device}: move the images and "
                         f"labels with x.to(device), y.to(device), or the model with model.to(x.device)")


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put `model` in eval mode for the block and give back the caller's mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@contextlib.contextmanager
def kept_rng() -> Iterator[None]:
    """Restore torch's global RNG state (CPU and every CUDA device) after the block.

    PGD draws its random start from the global RNG and AutoAttack reseeds it; this keeps a caller's
    random stream unchanged by an evaluation.
    """
    rng_state = torch.random.get_rng_state()
    cuda_state = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        yield
    finally:
        torch.random.set_rng_state(rng_state)
        if cuda_state is not None:
            torch.cuda.set_rng_state_all(cuda_state)


def _project(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    return torch.min(torch.max(x_adv, x - eps), x + eps).clamp_(0, 1)


def cw_margin_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example CW margin: max_{j != y} z_j - z_y [B] (positive means misclassified)."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.clone()
    other.scatter_(1, y[:, None], float("-inf"))
    return other.max(1).values - true


def pgd_step_size(eps: float, steps: int) -> float:
    """The kit's PGD step size: 2.5 eps / steps (Madry et al. 2018), so that `steps` steps can walk 2.5 times the
    radius (across the eps-ball and back). `eps` in image units ([0, 1]); `steps` >= 1."""
    if steps < 1:
        raise ValueError(f"PGD steps must be >= 1; got {steps}")
    return 2.5 * eps / steps


# ----------------------------------------------------------------------------------------------- attacks


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """FGSM: x + eps * sign(grad_x CE(model(x), y)), clipped to [0, 1]."""
    eps = check_eps(eps)
    check_images(x)
    check_device(model, x)
    with eval_mode(model), torch.enable_grad():  # works inside a caller's torch.no_grad() too
        x_ = x.detach().clone().requires_grad_(True)
        loss = F.cross_entropy(model(x_), y)
        grad, = torch.autograd.grad(loss, x_)
    return (x + eps * grad.sign()).clamp(0, 1).detach()


def pgd_linf(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, alpha: float | None = None,
             steps: int = 10, random_start: bool = True, loss: str = "ce",
             generator: torch.Generator | None = None) -> torch.Tensor:
    """PGD-L-inf: `steps` signed-gradient steps of size `alpha` (default 2.5 eps / steps), projected on the
    eps-ball and [0, 1]; `random_start` draws the start uniformly in the ball; `loss` is "ce" or "cw"."""
    eps = check_eps(eps)
    check_images(x)
    check_device(model, x)
    check_choice(loss, ("ce", "cw"), "PGD loss")
    if steps < 1:
        raise ValueError(f"steps must be >= 1; got {steps}")
    alpha = pgd_step_size(eps, steps) if alpha is None else alpha
    x = x.detach()
    with eval_mode(model), torch.enable_grad():  # works inside a caller's torch.no_grad() too
        if random_start and eps > 0:
            noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x_adv = (x + (2 * noise - 1) * eps).clamp(0, 1)
        else:
            x_adv = x.clone()
        for _ in range(steps):
            x_adv.requires_grad_(True)
            logits = model(x_adv)
            objective = F.cross_entropy(logits, y, reduction="sum") if loss == "ce" else \
                cw_margin_loss(logits, y).clamp(max=50).sum()
            grad, = torch.autograd.grad(objective, x_adv)
            x_adv = _project(x_adv.detach() + alpha * grad.sign(), x, eps)
    return x_adv.detach()


def cw_linf(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, alpha: float | None = None,
            steps: int = 30, random_start: bool = True) -> torch.Tensor:
    """CW-L-inf: PGD on the CW margin loss (a check against attacks that only fool the cross-entropy)."""
    return pgd_linf(model, x, y, eps, alpha=alpha, steps=steps, random_start=random_start, loss="cw")


def autoattack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, version: str = "standard",
               batch_size: int = 500, seed: int = 0) -> torch.Tensor:
    """AutoAttack (Croce & Hein 2020) through `pyautoattack`: version "standard" or "fast".

    Note: AutoAttack reseeds torch's global RNG; `evaluate` restores it around the call.
    """
    eps = check_eps(eps)
    check_images(x)
    check_device(model, x)
    check_choice(version, ("standard", "fast"), "AutoAttack version")
    from pyautoattack import AutoAttack
    device = x.device
    logging.getLogger("auto-attack").setLevel(logging.WARNING)
    with eval_mode(model):
        if version == "standard":
            adversary = AutoAttack(model, eps=eps, norm="Linf", version="standard", device=device, seed=seed)
        else:
            adversary = AutoAttack(model, eps=eps, norm="Linf", version="custom", attacks=["apgd-ce", "apgd-t"],
                                   device=device, seed=seed)
            adversary.apgd.n_restarts = 1
            adversary.apgd_targeted.n_target_classes = 3
        adversary.verbose = False
        if eps == 0:
            return x.detach().clone()
        x_adv, _ = adversary.run_standard_evaluation(x, y, batch_size=batch_size)
    return x_adv.detach()


AttackFn = Callable[..., torch.Tensor]
ATTACKS: dict[str, AttackFn] = {"fgsm": fgsm, "pgd": pgd_linf, "cw": cw_linf, "aa": autoattack}
ATTACK_NAMES = ("natural",) + tuple(ATTACKS)
# what `evaluate` accepts: the attacks, plus "worst" (per-point worst case of PGD and AutoAttack)
EVAL_NAMES = ATTACK_NAMES + ("worst",)


def get_attack(name: str) -> AttackFn:
    """The attack function by name (fgsm, pgd, cw, aa)."""
    return ATTACKS[check_choice(name, ATTACKS, "attack")]


# ----------------------------------------------------------------------------------------------- evaluation


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> float:
    """Top-1 accuracy in [0, 1] of `model` (in eval mode) on tensors x, y (moved to the model's device batch by
    batch)."""
    param = next(model.parameters(), None)
    device = param.device if param is not None else x.device
    with eval_mode(model):
        correct = 0
        for i in range(0, len(y), batch_size):
            xb, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
            correct += (model(xb).argmax(1) == yb).sum().item()
    return correct / max(len(y), 1)


def parse_attacks(attacks: str | Sequence[str]) -> list[str]:
    """'natural,fgsm,pgd,worst' or a list -> validated list of names (those of EVAL_NAMES)."""
    names = [a.strip() for a in attacks.split(",")] if isinstance(attacks, str) else list(attacks)
    for name in names:
        check_choice(name, EVAL_NAMES, "attack")
    return names


def attack_options(dataset: str, eps: float | None = None, pgd_steps: int | None = None) -> dict[str, dict]:
    """The evaluation's attack options for a dataset (the method doc's threat model), as `evaluate`'s
    `attack_options` takes them: {"pgd": {"steps", "alpha"}, "cw": {"steps", "alpha"}}.

    `eps`: the L-inf radius (None: the dataset's). PGD runs `pgd_steps` steps (None: the record's `pgd_steps`); the
    step size is the record's fixed `pgd_step` where it has one (MNIST 0.01, CIFAR 2/255, whatever the steps), else
    `pgd_step_size(eps, steps)`. CW keeps the dataset's own steps and step size (`pgd_steps` sets PGD's only, as
    `pwoa-lab evaluate --pgd-steps` does)."""
    info = dataset_info(dataset)
    eps = info.eps if eps is None else eps
    if pgd_steps is not None and (isinstance(pgd_steps, bool) or not isinstance(pgd_steps, int) or pgd_steps < 1):
        raise ValueError(f"PGD steps must be a whole number >= 1; got {pgd_steps!r}")

    def strength(steps: int) -> dict:
        alpha = info.pgd_step if info.pgd_step is not None else pgd_step_size(eps, steps)
        return {"steps": steps, "alpha": alpha}
    return {"pgd": strength(info.pgd_steps if pgd_steps is None else pgd_steps), "cw": strength(info.pgd_steps)}


def default_attack_options(dataset: str, eps: float | None = None) -> dict[str, dict]:
    """Deprecated: `attack_options(dataset, eps)` (same result)."""
    warnings.warn("default_attack_options is deprecated; use attack_options(dataset, eps, pgd_steps)",
                  DeprecationWarning, stacklevel=2)
    return attack_options(dataset, eps)


def robust_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int,
                    alpha: float | None = None, generator: torch.Generator | None = None) -> float:
    """PGD accuracy in % (0 to 100): the share of `x` that `model` still classifies correctly after `pgd_linf` with
    `steps` steps of size `alpha` (None: `pgd_step_size(eps, steps)`) from a random start in the eps-ball.

    x [N, C, H, W] images in [0, 1] on the model's device (one PGD batch of all N: no batching), y [N] int labels,
    eps the L-inf radius in the same units. The random start draws from `generator` (None: torch's global RNG; a
    caller that wants its stream untouched forks it, e.g. `utils.forked_rng`). The model runs in eval mode and
    gets its own mode back."""
    x_adv = pgd_linf(model, x, y, eps, alpha=pgd_step_size(eps, steps) if alpha is None else alpha, steps=steps,
                     generator=generator)
    return 100 * accuracy(model, x_adv, y)
