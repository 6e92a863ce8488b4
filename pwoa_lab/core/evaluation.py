"""Test-set evaluation of a model, whatever made it: natural, FGSM, PGD and AutoAttack accuracy as one row.

The `aa` column is the per-point worst case of PGD and AutoAttack on the first `aa_n` test images: AutoAttack
runs only on the points PGD did not break (a point PGD breaks is not robust whatever AutoAttack says), and a
point counts as robust only if neither attack broke it. That is cheaper than AutoAttack on every point and the
stricter number; `aa_points` says on how many points AutoAttack ran. When aa_n <= n, the PGD run of the `pgd`
column is the one whose survivors AutoAttack attacks (PGD runs once, not twice; same numbers).

`evaluate_points` also returns the per-image outcomes behind the row (`PointOutcomes`, in `core.outcomes`: which
test images were scored, and per image whether it was right naturally, under PGD and under the worst case): the
record every interval of the kit (`core.intervals`) is computed from. The per-point worst case itself
(`worst_case_robust`, `WorstCase`, `point_masks`) lives in `core.worst_case`; every name stays importable from here.
The attack options (PGD / CW steps and step size) come from `attacks.attack_options`.

`evaluate_row(model, dataset, eps, settings)` seeds the attacks' random starts itself (`EVAL_SEED`, in a forked
RNG), so the same model gives the same numbers whatever ran before, and the caller's random stream is untouched.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from pwoa_lab import defaults
from pwoa_lab.core.attacks import (
    ATTACKS,
    accuracy,
    attack_options,
    autoattack,
    check_images,
    eval_mode,
    kept_rng,
    parse_attacks,
)
from pwoa_lab.core.data import load_dataset
from pwoa_lab.core.outcomes import PointOutcomes
from pwoa_lab.core.worst_case import WorstCase, point_masks, worst_case_robust
from pwoa_lab.utils import check_eps, forked_rng

__all__ = ["EVAL_SEED", "METRIC_WORDS", "EvalSettings", "PointOutcomes", "WorstCase", "evaluate", "evaluate_points", "evaluate_row",
           "natural_and_pgd", "point_masks", "worst_case_robust"]

EVAL_SEED = 0  # the attacks' random starts in evaluate_row
# what each metric column of a row measures, in words (tables, verdicts and plot axes say it the same way)
METRIC_WORDS = {"natural": "natural", "fgsm": "FGSM", "pgd": "PGD", "cw": "CW", "aa": "PGD + AutoAttack (worst case)"}


@dataclass(frozen=True)
class EvalSettings:
    """How models are evaluated on the test split."""
    n: int | None = None          # first n test images for natural / FGSM / PGD (None: all)
    aa_n: int | None = 100        # first n test images for the PGD + AutoAttack worst case (None: all; 0: skip)
    aa_version: str = defaults.AA_VERSION  # fast (APGD-CE + APGD-T) | standard

    def attacks(self) -> list[str]:
        return ["natural", "fgsm", "pgd"]


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
    """Accuracy (%) of a per-point mask, with the same float operations as `evaluate`'s rows."""
    return 100.0 * (int(mask.sum()) / max(len(mask), 1))


def _evaluate_points(model: nn.Module, dataset: str, eps: float, settings: EvalSettings, root=None
                     ) -> tuple[dict[str, float], PointOutcomes]:
    """One PGD run on the first n test images gives the "pgd" accuracy and its per-image outcomes. Where the
    AutoAttack points are among them (aa_n <= n) its first aa_n points are the ones AutoAttack runs on; else natural
    and PGD run again on the first aa_n, from the same random start (the RNG state is kept around each step, and on
    the CPU a point's result does not depend on the batch it is computed in)."""
    test = load_dataset(dataset, "test", root)
    options = attack_options(dataset, eps)
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
                         attack_options=attack_options(dataset, eps), progress=False)
    return {r.attack: r.accuracy for r in table.itertuples()}


# ----------------------------------------------------------------------------------------------- the table


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
