"""Validation while training: natural and PGD accuracy and nHSIC per layer of an epoch, and checkpoint selection.

`validation_metrics` is what the training loop records after an epoch (its PGD accuracy: `attacks.robust_accuracy`,
step `attacks.pgd_step_size(eps, steps)`); `select_epoch` is the rule that picks the epoch whose weights a run
returns, from validation columns only (the test split plays no part).
"""
from __future__ import annotations

from typing import Sequence

import pandas as pd
import torch
import torch.nn as nn

from pwoa_lab.core.attacks import accuracy, robust_accuracy
from pwoa_lab.core.data import TensorData
from pwoa_lab.core.hsic import hsic_xz_yz
from pwoa_lab.core.models import logits_and_hiddens
from pwoa_lab.utils import check_choice, forked_rng

SELECT_RULES = ("last", "best_val_pgd", "best_val_natural")


def validation_metrics(model: nn.Module, val: TensorData, eps: float, steps: int,
                       hsic_batch: tuple[torch.Tensor, torch.Tensor] | None = None, num_classes: int = 10,
                       sigma: float = 5.0, centering: str = "hkh") -> dict[str, float]:
    """Natural and PGD-`steps` accuracy (%) on `val` (`attacks.robust_accuracy`: step `pgd_step_size(eps, steps)`),
    and nHSIC(X, Z_j), nHSIC(Y, Z_j) per layer on a fixed batch (when `hsic_batch` is given and the model has
    `forward_features`).

    The PGD random start draws from a forked RNG: validating more or less often never changes the training."""
    with forked_rng():
        row = {"val_natural": 100 * accuracy(model, val.x, val.y),
               "val_pgd": robust_accuracy(model, val.x, val.y, eps, steps)}
    if hsic_batch is not None and hasattr(getattr(model, "module", model), "forward_features"):
        model.eval()
        with torch.no_grad():
            xb, yb = hsic_batch
            _, hiddens = logits_and_hiddens(model, xb)
            terms = hsic_xz_yz(xb, yb, hiddens, num_classes, sigma, centering)
        for j, (hx, hy) in enumerate(zip(terms.hsic_xz, terms.hsic_yz), 1):
            row[f"hsic_xz_{j}"], row[f"hsic_yz_{j}"] = hx, hy
    return row


def select_epoch(history: pd.DataFrame, select: str, selectable: Sequence[str]) -> int:
    """The epoch a selection rule keeps, from a history (one row per epoch: phase, epoch, val_* columns).

    "last": the final epoch. "best_val_pgd" / "best_val_natural": among the validated epochs of the `selectable`
    phases, the one with the highest validation accuracy, ties to the later epoch; the final epoch when none
    was validated. Only validation columns are read: the test split plays no part."""
    check_choice(select, SELECT_RULES, "checkpoint selection")
    if not len(history):
        return 0
    last = int(history.epoch.iloc[-1])
    metric = select[len("best_"):]
    if select == "last" or metric not in history.columns:
        return last
    pool = history[history.phase.isin(selectable) & history[metric].notna()]
    if not len(pool):
        return last
    best = pool[pool[metric] == pool[metric].max()]
    return int(best.epoch.iloc[-1])
