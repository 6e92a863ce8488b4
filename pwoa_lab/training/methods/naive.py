"""naive: the paper's L_CE, cross-entropy on natural images while pruning (pruning destroys robustness).

    L_CE = CE(f(x), y)
"""
from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F

from pwoa_lab.training.loop import Batch, Phase
from pwoa_lab.training.methods.admm import LOSS_FIELDS, LossContext, PruneConfig
from pwoa_lab.training.registry import MethodSpec, register


def ce_loss(student: nn.Module, batch: Batch, phase: Phase, ctx: LossContext):
    """L_CE on the batch the mix ratio gave (natural for naive, PGD for advprune)."""
    loss = F.cross_entropy(student(batch.inputs), batch.y)
    return loss, {"ce": loss.item()}


register(MethodSpec("naive", PruneConfig, loss=ce_loss, ignores=LOSS_FIELDS, order=20, cost=2, role="baseline",
                    label="naive (L_CE)", color="tab:red", marker="o",
                    help="CE on natural images (the paper's L_CE)"), replace=True)
