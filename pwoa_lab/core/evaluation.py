"""Test-set evaluation of a model, whatever made it: natural, FGSM, PGD and AutoAttack accuracy as one row.

The `aa` column is the per-point worst case of PGD and AutoAttack on the first `aa_n` test images: AutoAttack
runs only on the points PGD did not break (a point PGD breaks is not robust whatever AutoAttack says), and a
point counts as robust only if neither attack broke it. That is cheaper than AutoAttack on every point and the
stricter number; `aa_points` says on how many points AutoAttack ran. When aa_n <= n, the PGD run of the `pgd`
column is the one whose survivors AutoAttack attacks (PGD runs once, not twice; same numbers).

`evaluate_points` also returns the per-image outcomes behind the row (`PointOutcomes`: which test images were
scored, and per image whether it was right naturally, under PGD and under the worst case): the record every
interval of the kit (`core.intervals`) is computed from.

`evaluate_row(model, dataset, eps, settings)` seeds the attacks' random starts itself (`EVAL_SEED`, in a forked
RNG), so the same model gives the same numbers whatever ran before, and the caller's random stream is untouched.
"""
from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from pwoa_lab.core.attacks import (
    ATTACKS,
    accuracy,
    autoattack,
    check_images,
    default_attack_options,
    eval_mode,
    kept_rng,
    parse_attacks,
    pgd_linf,
)
from pwoa_lab.core.data import load_dataset
from pwoa_lab.utils import check_eps, forked_rng

EVAL_SEED = 0  # the attacks' random starts in evaluate_row


@dataclass(frozen=True)
class EvalSettings:
    """How models are evaluated on the test split."""
    n: int | None = None          # first n test images for natural / FGSM / PGD (None: all)
    aa_n: int | None = 100        # first n test images for the PGD + AutoAttack worst case (None: all; 0: skip)
    aa_version: str = "fast"      # fast (APGD-CE + APGD-T) | standard

    def attacks(self) -> list[str]:
        return ["natural", "fgsm", "pgd"]


@dataclass(frozen=True)
class PointOutcomes:
    """Which test images a model got right, per image: the record every interval of the kit is computed from.

    index:       int [n], the test images scored naturally and by PGD (positions in the test split).
    natural:     bool [n], the clean image is classified correctly.
    pgd:         bool [n], the PGD example is classified correctly.
    worst_index: int [k], the images of the per-image worst case of PGD and AutoAttack (empty: not run).
    worst:       bool [k], neither PGD nor AutoAttack broke the image.
    `to_record()` packs it into a few bytes per image for the run store; `from_record` unpacks it.
    """
    index: np.ndarray
    natural: np.ndarray
    pgd: np.ndarray
    worst_index: np.ndarray
    worst: np.ndarray

    def metric(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(image indices, bool outcomes) of "natural", "pgd" or "aa" (the worst case)."""
        if name in ("natural", "pgd"):
            return self.index, getattr(self, name)
        if name in ("aa", "worst"):
            return self.worst_index, self.worst
        raise ValueError(f"per-image outcomes exist for natural, pgd and aa; got {name!r}")

    def to_record(self) -> dict[str, Any]:
        return {"index": _ranges(self.index), "natural": _bits(self.natural), "pgd": _bits(self.pgd),
                "worst_index": _ranges(self.worst_index), "worst": _bits(self.worst)}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> "PointOutcomes":
        index, worst_index = _unranges(record["index"]), _unranges(record["worst_index"])
        return cls(index, _unbits(record["natural"], len(index)), _unbits(record["pgd"], len(index)),
                   worst_index, _unbits(record["worst"], len(worst_index)))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PointOutcomes) and all(
            np.array_equal(getattr(self, f), getattr(other, f))
            for f in ("index", "natural", "pgd", "worst_index", "worst"))


def _ranges(index: np.ndarray) -> list[list[int]]:
    """Indices as runs [[start, stop], ...] of consecutive values (the first n images: one run)."""
    index = np.asarray(index, dtype=np.int64)
    if not len(index):
        return []
    breaks = np.flatnonzero(np.diff(index) != 1) + 1
    return [[int(part[0]), int(part[-1]) + 1] for part in np.split(index, breaks)]


def _unranges(runs: list) -> np.ndarray:
    return np.concatenate([np.arange(a, b) for a, b in runs]).astype(np.int64) if runs else np.zeros(0, np.int64)


def _bits(mask: np.ndarray) -> str:
    return base64.b64encode(np.packbits(np.asarray(mask, dtype=bool)).tobytes()).decode("ascii")


def _unbits(text: str, n: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(base64.b64decode(text), dtype=np.uint8))[:n].astype(bool)


def evaluate_row(model: nn.Module, dataset: str, eps: float, settings: EvalSettings, root=None) -> dict[str, float]:
    """natural / fgsm / pgd / aa accuracy (%) of a model on the test split, and the evaluation seconds."""
    return evaluate_points(model, dataset, eps, settings, root)[0]


def evaluate_points(model: nn.Module, dataset: str, eps: float, settings: EvalSettings, root=None
                    ) -> tuple[dict[str, float], PointOutcomes]:
    """`evaluate_row`'s row and the per-image outcomes behind it (`PointOutcomes`): natural and PGD on the first
    `n` test images, the PGD + AutoAttack worst case on the first `aa_n`."""
    start = time.perf_counter()
    with forked_rng():  # same model -> same numbers, whatever ran before
        torch.manual_seed(EVAL_SEED)
        row, points = _evaluate_points(model, dataset, eps, settings, root)
    row["eval_seconds"] = time.perf_counter() - start
    return row, points


def _percent(mask: torch.Tensor) -> float:
    """Accuracy (%) of a per-point mask, with the same float operations as `attacks.evaluate`'s rows."""
    return 100.0 * (int(mask.sum()) / max(len(mask), 1))


def _evaluate_points(model: nn.Module, dataset: str, eps: float, settings: EvalSettings, root=None
                     ) -> tuple[dict[str, float], PointOutcomes]:
    """One PGD run on the first n test images gives the "pgd" accuracy and its per-image outcomes. Where the
    AutoAttack points are among them (aa_n <= n) its first aa_n points are the ones AutoAttack runs on; else natural
    and PGD run again on the first aa_n, from the same random start (the RNG state is kept around each step, and on
    the CPU a point's result does not depend on the batch it is computed in)."""
    test = load_dataset(dataset, "test", root)
    options = default_attack_options(dataset, eps)
    n = len(test) if settings.n is None else min(settings.n, len(test))
    device = next(model.parameters()).device
    x, y = test.x[:n].to(device), test.y[:n].to(device)
    with kept_rng():  # PGD starts from the caller's RNG state, as `evaluate` does; the stream is left untouched
        natural, pgd = point_masks(model, x, y, eps, options["pgd"])
    others = [a for a in settings.attacks() if a not in ("natural", "pgd")]  # fgsm: no random start
    table = evaluate(model, (x, y), others, eps=eps, attack_options=options, progress=False) if others else None
    measured = {"natural": _percent(natural), "pgd": _percent(pgd),
                **({r.attack: r.accuracy for r in table.itertuples()} if table is not None else {})}
    row = {a: measured[a] for a in settings.attacks()}
    k = len(test) if settings.aa_n is None else min(settings.aa_n, len(test))
    worst = np.zeros(0, dtype=bool)
    if k:
        aa_options = {"version": settings.aa_version}
        known = (natural[:k], pgd[:k]) if k <= n else None
        xs, ys = (x[:k], y[:k]) if k <= n else (test.x[:k], test.y[:k])
        wc = worst_case_robust(model, xs, ys, eps, options["pgd"], aa_options, known=known)
        row["aa"], row["aa_points"] = wc.worst_accuracy, wc.aa_points
        worst = wc.worst.numpy()
    else:
        row["aa"], row["aa_points"] = float("nan"), 0
    return row, PointOutcomes(np.arange(n), natural.cpu().numpy(), pgd.cpu().numpy(), np.arange(k), worst)


def natural_and_pgd(model: nn.Module, dataset: str, eps: float, settings: EvalSettings, root=None) -> dict[str, float]:
    """natural and pgd accuracy (%) only, seeded like `evaluate_row` (for a second model of the same run)."""
    with forked_rng():
        torch.manual_seed(EVAL_SEED)
        table = evaluate(model, load_dataset(dataset, "test", root), ["natural", "pgd"], eps=eps, n=settings.n,
                         attack_options=default_attack_options(dataset, eps), progress=False)
    return {r.attack: r.accuracy for r in table.itertuples()}


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


