"""Test-set evaluation of a model, whatever made it: natural, FGSM, PGD and AutoAttack accuracy as one row.

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
    aa_n: int = 100               # first n test images for AutoAttack (0: skip)
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
        aa = evaluate(model, test, ["aa"], eps=eps, n=settings.aa_n, attack_options=options, progress=False)
        row["aa"] = float(aa.accuracy.iloc[0])
    else:
        row["aa"] = float("nan")
    return row
