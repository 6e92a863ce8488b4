"""L-inf attacks with one call shape, and `evaluate`, which turns them into a table.

    x_adv = attack(model, x, y, eps=..., **options)

`x` [B, C, H, W] images in [0, 1] (checked), `y` [B] int labels, `eps` the L-inf radius in the same units.
Every attack runs the model in eval mode, restores the caller's train/eval mode, and returns a detached
`x_adv` in [0, 1] with ||x_adv - x||_inf <= eps.

- `fgsm`:       one signed-gradient step of size eps on the cross-entropy (Goodfellow et al.).
- `pgd_linf`:   projected gradient ascent on the cross-entropy, random start (Madry et al.).
- `cw_linf`:    the same PGD on the Carlini-Wagner margin loss (max_{j != y} z_j - z_y).
- `autoattack`: AutoAttack through `pyautoattack`: `standard` (APGD-CE, APGD-T, FAB-T, Square) or `fast`
                (APGD-CE + APGD-T over 3 target classes; a teaching shortcut, report `standard` in papers).

`worst_case_robust` combines PGD and AutoAttack per point: AutoAttack runs only on the points that are
naturally correct and that PGD did not break, and a point counts as robust only if both fail on it.
`evaluate` reports it as the attack "worst".
"""
from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping, Sequence

import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from .utils import check_choice, check_eps

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
    alpha = 2.5 * eps / steps if alpha is None else alpha
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


# ----------------------------------------------------------------------------------------------- worst case


@dataclass(frozen=True)
class WorstCase:
    """Per-point outcome of `worst_case_robust`. Every mask is a bool tensor [N] on the CPU, in input order.

    natural: the clean image is classified correctly.
    pgd:     the PGD example is classified correctly (scored on its own, as `evaluate`'s "pgd" row does).
    aa_run:  AutoAttack was run on the point: exactly natural & pgd.
    aa:      AutoAttack ran on the point AND its example is still classified correctly. False wherever AA
             was not run, because natural or PGD had already broken the point (it is not "unknown").
    worst:   pgd & aa: robust to both attacks (a property; equals `aa`, since aa implies aa_run implies pgd).
    Accuracies are in % of the N points; `seconds` holds the wall time of "natural", "pgd" and "aa".
    """
    eps: float
    natural: torch.Tensor
    pgd: torch.Tensor
    aa_run: torch.Tensor
    aa: torch.Tensor
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def worst(self) -> torch.Tensor:
        return self.pgd & self.aa

    @property
    def n(self) -> int:
        return int(self.natural.numel())

    @property
    def aa_points(self) -> int:
        """How many points AutoAttack was run on (the naturally correct ones PGD did not break)."""
        return int(self.aa_run.sum())

    def _percent(self, mask: torch.Tensor) -> float:
        return 100.0 * float(mask.sum()) / max(self.n, 1)

    @property
    def natural_accuracy(self) -> float:
        return self._percent(self.natural)

    @property
    def pgd_accuracy(self) -> float:
        return self._percent(self.pgd)

    @property
    def worst_accuracy(self) -> float:
        """Robust accuracy (%) under the per-point worst case of PGD and AutoAttack."""
        return self._percent(self.worst)

    def to_frame(self) -> pd.DataFrame:
        """One row per point (index = position in x): natural, pgd, aa_run, aa, worst (bool)."""
        return pd.DataFrame({name: getattr(self, name).numpy()
                             for name in ("natural", "pgd", "aa_run", "aa", "worst")})

    def summary(self) -> dict[str, float]:
        """eps, n, natural / pgd / worst accuracy (%), aa_points and total seconds, for a table row."""
        return {"eps": self.eps, "n": self.n, "natural": self.natural_accuracy, "pgd": self.pgd_accuracy,
                "worst": self.worst_accuracy, "aa_points": self.aa_points, "seconds": sum(self.seconds.values())}


def _check_options(options: Mapping | None, what: str, reserved: tuple[str, ...]) -> dict:
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise ValueError(f"{what} must be a dict of keyword arguments; got {type(options).__name__}")
    clash = sorted(set(options) & set(reserved))
    if clash:
        raise ValueError(f"{what} must not set {', '.join(clash)}: pass it as an argument of worst_case_robust")
    return dict(options)


@torch.no_grad()
def _correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Bool [N]: model(x).argmax(1) == y, batch by batch (model already in eval mode)."""
    out = torch.zeros(len(y), dtype=torch.bool, device=y.device)
    for i in range(0, len(y), batch_size):
        out[i:i + batch_size] = model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]
    return out


def _pgd_correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, pgd_opts: Mapping,
                 batch_size: int) -> torch.Tensor:
    """Bool [N]: the PGD example of each point is classified correctly; PGD batch by batch exactly as `evaluate`
    runs it (model already in eval mode)."""
    out = torch.zeros(len(y), dtype=torch.bool, device=y.device)
    for i in range(0, len(y), batch_size):
        xb, yb = x[i:i + batch_size], y[i:i + batch_size]
        x_adv = pgd_linf(model, xb, yb, eps=eps, **pgd_opts)
        out[i:i + batch_size] = _correct(model, x_adv, yb, batch_size)
    return out


def point_masks(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, pgd_options: Mapping | None = None,
                batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-point (natural, pgd) correctness, bool [N] on x's device: the first two steps of `worst_case_robust`,
    computed exactly as it (and `evaluate`'s "natural" and "pgd" rows) computes them. The model runs in eval mode
    and PGD draws its random start from torch's global RNG, which the caller seeds (and restores) as it wants."""
    eps = check_eps(eps)
    pgd_opts = _check_options(pgd_options, "pgd_options", ("eps",))
    with eval_mode(model):
        return _correct(model, x, y, batch_size), _pgd_correct(model, x, y, eps, pgd_opts, batch_size)


def worst_case_robust(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
                      pgd_options: Mapping | None = None, aa_options: Mapping | None = None,
                      batch_size: int = 500, known: tuple[torch.Tensor, torch.Tensor] | None = None) -> WorstCase:
    r"""Per-point worst case of PGD and AutoAttack; AutoAttack runs only where PGD did not break the point.

    PGD in 'Towards Deep Learning Models Resistant to Adversarial Attacks' (Madry et al., ICLR 2018)
    [https://arxiv.org/abs/1706.06083]; AutoAttack in 'Reliable evaluation of adversarial robustness with
    an ensemble of diverse parameter-free attacks' (Croce & Hein, ICML 2020) [https://arxiv.org/abs/2003.01690].

    Distance Measure : Linf

    Steps: natural correctness of every point; PGD on every point (`pgd_linf`, batch by batch exactly as
    `evaluate` runs it, so the same RNG state gives the same PGD numbers); AutoAttack (`autoattack`) only
    on the points that are naturally correct and that PGD did not break. A point is robust (``worst``) only
    if neither attack broke it. This costs AutoAttack on the PGD survivors instead of all N points, and its
    accuracy is never above PGD's. The model runs in eval mode (the caller's mode is restored) and torch's
    global RNG state is restored afterwards (AutoAttack reseeds it).

    Arguments:
        model (nn.Module): classifier returning logits [B, num_classes] for images in [0, 1].
        x (torch.Tensor): images; moved to the model's device.
        y (torch.Tensor): integer labels.
        eps (float): L-inf radius in image units, in [0, 1] (MNIST 0.3, CIFAR 8/255).
        pgd_options (dict): keyword arguments of `pgd_linf` (steps, alpha, random_start, loss, generator),
            e.g. ``default_attack_options(dataset, eps)["pgd"]``. (Default: None = pgd_linf's defaults)
        aa_options (dict): keyword arguments of `autoattack` (version, seed), e.g. ``{"version": "fast"}``.
            (Default: None = AutoAttack "standard")
        batch_size (int): images per forward / PGD batch / AutoAttack batch. (Default: 500)
        known (tuple): the (natural, pgd) per-point masks [N] of these very points, already measured (e.g. the
            first N points of a larger `point_masks` run, as `evaluation.evaluate_row` does): only AutoAttack
            runs. (Default: None = measure natural and PGD here)

    Shape:
        - x: :math:`(N, C, H, W)`, float, in [0, 1].
        - y: :math:`(N)`, integer, each :math:`0 \leq y_i <` number of classes.
        - output: `WorstCase` with bool masks of shape :math:`(N)` on the CPU and accuracies in %.

    Examples::
        >>> wc = worst_case_robust(model, x, y, eps=0.3, pgd_options=default_attack_options("mnist")["pgd"],
        ...                        aa_options={"version": "standard"})
        >>> wc.natural_accuracy, wc.pgd_accuracy, wc.worst_accuracy, wc.aa_points
    """
    eps = check_eps(eps)
    pgd_opts = _check_options(pgd_options, "pgd_options", ("eps",))
    aa_opts = _check_options(aa_options, "aa_options", ("eps", "batch_size"))
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1; got {batch_size!r}")
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise ValueError(f"x must be a batch of images [N, C, H, W]; got shape {tuple(getattr(x, 'shape', ()))}")
    if not isinstance(y, torch.Tensor) or y.dim() != 1 or torch.is_floating_point(y) or y.dtype == torch.bool:
        raise ValueError(f"y must be a 1-d tensor of integer labels [N]; got {getattr(y, 'dtype', type(y))} "
                         f"of shape {tuple(getattr(y, 'shape', ()))}")
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} images but y has {len(y)} labels")
    if len(y) == 0:
        raise ValueError("no images to evaluate (x is empty)")
    check_images(x)
    param = next(model.parameters(), None)
    device = param.device if param is not None else x.device
    x, y = x.detach().to(device), y.to(device=device, dtype=torch.long)
    seconds: dict[str, float] = {}
    with kept_rng(), eval_mode(model):
        start = time.perf_counter()
        with torch.no_grad():
            num_classes = model(x[:1]).shape[1]
        if y.min() < 0 or y.max() >= num_classes:
            raise ValueError(f"labels must lie in [0, {num_classes}) for this model; "
                             f"got min {int(y.min())}, max {int(y.max())}")
        if known is None:
            natural = _correct(model, x, y, batch_size)
            seconds["natural"] = time.perf_counter() - start
            start = time.perf_counter()
            pgd = _pgd_correct(model, x, y, eps, pgd_opts, batch_size)
            seconds["pgd"] = time.perf_counter() - start
        else:
            natural, pgd = (m.to(device=device, dtype=torch.bool) for m in known)
            if natural.shape != y.shape or pgd.shape != y.shape:
                raise ValueError(f"known masks must have one entry per point ({len(y)}); got "
                                 f"{tuple(natural.shape)} and {tuple(pgd.shape)}")
            seconds["natural"] = seconds["pgd"] = 0.0

        start = time.perf_counter()
        aa_run = natural & pgd
        aa = torch.zeros_like(natural)
        idx = aa_run.nonzero().flatten()
        if len(idx):
            x_aa = autoattack(model, x[idx], y[idx], eps, batch_size=batch_size, **aa_opts)
            aa[idx] = _correct(model, x_aa, y[idx], batch_size)
        seconds["aa"] = time.perf_counter() - start
    return WorstCase(eps=eps, natural=natural.cpu(), pgd=pgd.cpu(), aa_run=aa_run.cpu(), aa=aa.cpu(),
                     seconds=seconds)


def evaluate(model: nn.Module, dataset, attacks: str | Sequence[str] = ("natural", "fgsm", "pgd"),
             eps: float = 0.3, n: int | None = None, batch_size: int = 500, attack_options: dict | None = None,
             device: str | torch.device | None = None, progress: bool = True) -> pd.DataFrame:
    """Accuracy of `model` under each attack on the first `n` examples of `dataset` (a TensorData or (x, y)).

    Returns one row per attack: attack, eps, n, accuracy (in %), seconds. `attack_options` maps an attack
    name to keyword arguments (e.g. {"pgd": {"steps": 40, "alpha": 0.01}}). The model runs in eval mode;
    its mode and torch's global RNG state are restored afterwards.

    "worst" is the per-point worst case of PGD and AutoAttack (`worst_case_robust`, with the "pgd" and "aa"
    options); its row adds the column aa_points (how many points AutoAttack ran on; NaN in other rows) and
    its seconds are natural + PGD + AutoAttack. When "worst" is asked for, the "pgd" row reuses the PGD run
    of "worst" (same numbers as without "worst", from the same RNG state), so worst <= pgd always holds.
    """
    eps = check_eps(eps)
    names = parse_attacks(attacks)
    x, y = (dataset.x, dataset.y) if hasattr(dataset, "x") else dataset
    if n is not None:
        x, y = x[:n], y[:n]
    check_images(x)
    if device is None:
        device = next(model.parameters()).device
    x, y = x.to(device), y.to(device)
    options = attack_options or {}
    rows = []
    worst: WorstCase | None = None
    with kept_rng():
        with eval_mode(model):
            for name in tqdm(names, desc="evaluate", disable=not progress, leave=False):
                start = time.perf_counter()
                if name == "worst" or (name == "pgd" and "worst" in names):
                    if worst is None:
                        worst = worst_case_robust(model, x, y, eps, options.get("pgd"), options.get("aa"),
                                                  batch_size)
                    row = {"attack": name, "eps": eps, "n": len(y), "accuracy": worst.pgd_accuracy,
                           "seconds": worst.seconds["pgd"]}
                    if name == "worst":
                        row.update(accuracy=worst.worst_accuracy, seconds=sum(worst.seconds.values()),
                                   aa_points=worst.aa_points)
                    rows.append(row)
                    continue
                if name == "natural":
                    acc = accuracy(model, x, y, batch_size)
                elif name == "aa":
                    x_adv = autoattack(model, x, y, eps, batch_size=batch_size, **options.get("aa", {}))
                    acc = accuracy(model, x_adv, y, batch_size)
                else:
                    attack = ATTACKS[name]
                    correct = 0
                    for i in range(0, len(y), batch_size):
                        xb, yb = x[i:i + batch_size], y[i:i + batch_size]
                        x_adv = attack(model, xb, yb, eps=eps, **options.get(name, {}))
                        with torch.no_grad():
                            correct += (model(x_adv).argmax(1) == yb).sum().item()
                    acc = correct / max(len(y), 1)
                rows.append({"attack": name, "eps": eps, "n": len(y), "accuracy": 100.0 * acc,
                             "seconds": time.perf_counter() - start})
    return pd.DataFrame(rows)


def default_attack_options(dataset: str, eps: float | None = None) -> dict[str, dict]:
    """The evaluation strengths of the kit for a dataset (the method doc's threat model): PGD / CW steps
    and step size (the dataset's fixed step, else 2.5 eps / steps for the given or default eps)."""
    from .data import dataset_info
    info = dataset_info(dataset)
    eps = info.eps if eps is None else eps
    alpha = info.pgd_step if info.pgd_step is not None else 2.5 * eps / info.pgd_steps
    return {"pgd": {"steps": info.pgd_steps, "alpha": alpha}, "cw": {"steps": info.pgd_steps, "alpha": alpha}}
