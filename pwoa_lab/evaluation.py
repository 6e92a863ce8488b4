"""Test-set evaluation of a model, whatever made it: natural, FGSM, PGD and AutoAttack accuracy as one row.

The `aa` column is the per-point worst case of PGD and AutoAttack on the first `aa_n` test images: AutoAttack
runs only on the points PGD did not break (a point PGD breaks is not robust whatever AutoAttack says), and a
point counts as robust only if neither attack broke it. That is cheaper than AutoAttack on every point and the
stricter number; `aa_points` says on how many points AutoAttack ran.

`evaluate_row(model, dataset, eps, settings)` seeds the attacks' random starts itself (`EVAL_SEED`, in a forked
RNG), so the same model gives the same numbers whatever ran before, and the caller's random stream is untouched.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn as nn

from .attacks import default_attack_options, evaluate
from .data import load_dataset
from .utils import forked_rng

EVAL_SEED = 0  # the attacks' random starts in evaluate_row


@dataclass(frozen=True)
class EvalSettings:
    """How models are evaluated on the test split."""
    n: int | None = None          # first n test images for natural / FGSM / PGD (None: all)
    aa_n: int = 100               # first n test images for the PGD + AutoAttack worst case (0: skip)
    aa_version: str = "fast"      # fast (APGD-CE + APGD-T) | standard

    def attacks(self) -> list[str]:
        return ["natural", "fgsm", "pgd"]


def evaluate_row(model: nn.Module, dataset: str, eps: float, settings: EvalSettings, root=None) -> dict[str, float]:
    """natural / fgsm / pgd / aa accuracy (%) of a model on the test split, and the evaluation seconds."""
    start = time.perf_counter()
    with forked_rng():  # same model -> same numbers, whatever ran before
        torch.manual_seed(EVAL_SEED)
        row = _evaluate_row(model, dataset, eps, settings, root)
    row["eval_seconds"] = time.perf_counter() - start
    return row


def _evaluate_row(model: nn.Module, dataset: str, eps: float, settings: EvalSettings, root=None) -> dict[str, float]:
    test = load_dataset(dataset, "test", root)
    options = default_attack_options(dataset, eps)
    table = evaluate(model, test, settings.attacks(), eps=eps, n=settings.n, attack_options=options,
                     progress=False)
    row = {r.attack: r.accuracy for r in table.itertuples()}
    if settings.aa_n:
        options["aa"] = {"version": settings.aa_version}
        worst = evaluate(model, test, ["worst"], eps=eps, n=settings.aa_n, attack_options=options, progress=False)
        row["aa"], row["aa_points"] = float(worst.accuracy.iloc[0]), int(worst.aa_points.iloc[0])
    else:
        row["aa"], row["aa_points"] = float("nan"), 0
    return row


def natural_and_pgd(model: nn.Module, dataset: str, eps: float, settings: EvalSettings, root=None) -> dict[str, float]:
    """natural and pgd accuracy (%) only, seeded like `evaluate_row` (for a second model of the same run)."""
    with forked_rng():
        torch.manual_seed(EVAL_SEED)
        table = evaluate(model, load_dataset(dataset, "test", root), ["natural", "pgd"], eps=eps, n=settings.n,
                         attack_options=default_attack_options(dataset, eps), progress=False)
    return {r.attack: r.accuracy for r in table.itertuples()}
