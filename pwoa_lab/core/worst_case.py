"""The per-point worst case of PGD and AutoAttack (`worst_case_robust`, `WorstCase`, `point_masks`).

AutoAttack runs only on the points that are naturally correct and that PGD did not break, and a point counts as
robust only if neither attack broke it: cheaper than AutoAttack on every point, and the stricter number.
`pwoa_lab.core.evaluation.evaluate` reports it as the attack "worst" and `evaluate_points` as the column `aa`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Mapping

import pandas as pd
import torch
import torch.nn as nn

from pwoa_lab.core.attacks import autoattack, check_images, eval_mode, kept_rng, pgd_linf
from pwoa_lab.utils import check_eps


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
            e.g. ``attack_options(dataset, eps)["pgd"]``. (Default: None = pgd_linf's defaults)
        aa_options (dict): keyword arguments of `autoattack` (version, seed), e.g. ``{"version": "fast"}``.
            (Default: None = AutoAttack "standard")
        batch_size (int): images per forward / PGD batch / AutoAttack batch. (Default: 500)
        known (tuple): the (natural, pgd) per-point masks [N] of these very points, already measured (e.g. the
            first N points of a larger `point_masks` run, as `evaluation.evaluate_points` does): only AutoAttack
            runs. (Default: None = measure natural and PGD here)

    Shape:
        - x: :math:`(N, C, H, W)`, float, in [0, 1].
        - y: :math:`(N)`, integer, each :math:`0 \leq y_i <` number of classes.
        - output: `WorstCase` with bool masks of shape :math:`(N)` on the CPU and accuracies in %.

    Examples::
        >>> wc = worst_case_robust(model, x, y, eps=0.3, pgd_options=attack_options("mnist")["pgd"],
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
