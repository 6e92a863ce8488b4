"""Test-set evaluation of a model, whatever made it: natural, FGSM, PGD and AutoAttack accuracy as one row.

The `aa` column is the per-point worst case of PGD and AutoAttack on the first `aa_n` test images: AutoAttack
runs only on the points PGD did not break (a point PGD breaks is not robust whatever AutoAttack says), and a
point counts as robust only if neither attack broke it. That is cheaper than AutoAttack on every point and the
stricter number; `aa_points` says on how many points AutoAttack ran. When aa_n <= n, the PGD run of the `pgd`
column is the one whose survivors AutoAttack attacks (PGD runs once, not twice; same numbers).

`evaluate_row(model, dataset, eps, settings)` seeds the attacks' random starts itself (`EVAL_SEED`, in a forked
RNG), so the same model gives the same numbers whatever ran before, and the caller's random stream is untouched.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn as nn

from .attacks import default_attack_options, evaluate, kept_rng, point_masks, worst_case_robust
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
    n = len(test) if settings.n is None else min(settings.n, len(test))
    if settings.aa_n and settings.aa_n <= n:
        return _evaluate_row_shared(model, test, eps, settings, options, n)
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


def _percent(mask: torch.Tensor) -> float:
    """Accuracy (%) of a per-point mask, with the same float operations as `attacks.evaluate`'s rows."""
    return 100.0 * (int(mask.sum()) / max(len(mask), 1))


def _evaluate_row_shared(model: nn.Module, test, eps: float, settings: EvalSettings, options: dict,
                         n: int) -> dict[str, float]:
    """`_evaluate_row` when the AutoAttack points are among the natural / PGD points (aa_n <= n): one PGD run
    on the first n test images gives the "pgd" accuracy and, on its first aa_n points, the points AutoAttack
    runs on. Before, the first aa_n points were attacked by PGD a second time, from the same random start (the
    same RNG state, the same first aa_n rows of the start); the numbers are the same (on the CPU, per-point
    results do not depend on the batch they are computed in), without that second PGD run."""
    device = next(model.parameters()).device
    x, y = test.x[:n].to(device), test.y[:n].to(device)
    with kept_rng():  # PGD starts from the caller's RNG state, as `evaluate` does; the stream is left untouched
        natural, pgd = point_masks(model, x, y, eps, options["pgd"])
    others = [a for a in settings.attacks() if a not in ("natural", "pgd")]  # fgsm: no random start
    table = evaluate(model, (x, y), others, eps=eps, attack_options=options, progress=False) if others else None
    measured = {"natural": _percent(natural), "pgd": _percent(pgd),
                **({r.attack: r.accuracy for r in table.itertuples()} if table is not None else {})}
    row = {a: measured[a] for a in settings.attacks()}
    k = settings.aa_n
    worst = worst_case_robust(model, x[:k], y[:k], eps, options["pgd"], {"version": settings.aa_version},
                              known=(natural[:k], pgd[:k]))
    row["aa"], row["aa_points"] = worst.worst_accuracy, worst.aa_points
    return row


def natural_and_pgd(model: nn.Module, dataset: str, eps: float, settings: EvalSettings, root=None) -> dict[str, float]:
    """natural and pgd accuracy (%) only, seeded like `evaluate_row` (for a second model of the same run)."""
    with forked_rng():
        torch.manual_seed(EVAL_SEED)
        table = evaluate(model, load_dataset(dataset, "test", root), ["natural", "pgd"], eps=eps, n=settings.n,
                         attack_options=default_attack_options(dataset, eps), progress=False)
    return {r.attack: r.accuracy for r in table.itertuples()}
