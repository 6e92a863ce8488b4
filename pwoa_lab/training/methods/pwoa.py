"""pwoa: the paper's method, self-distillation plus the HSIC bottleneck (HBaR) on every hidden layer.

    L = L_D + L_H,   L_H = sum_j lambda_x nHSIC(X, Z_j) - lambda_y nHSIC(Y, Z_j)
"""
from __future__ import annotations

import torch.nn as nn

from pwoa_lab.core.distillation import kd_loss
from pwoa_lab.core.hsic import hbar_loss
from pwoa_lab.core.models import logits_and_hiddens
from pwoa_lab.training.loop import Batch, Phase
from pwoa_lab.training.methods.admm import LossContext, PruneConfig
from pwoa_lab.training.methods.kd import distillation_loss
from pwoa_lab.training.registry import MethodSpec, register


def pwoa_loss(student: nn.Module, batch: Batch, phase: Phase, ctx: LossContext):
    """L_D + L_H (HBaR over every hidden layer; in the retraining phase, or in both with hsic_phase="both")."""
    c = ctx.config
    if phase.name != "retrain" and c.hsic_phase != "both":
        return distillation_loss(student, batch, phase, ctx)
    x = batch.inputs
    logits, hiddens = logits_and_hiddens(student, x)
    loss = kd_loss(logits, ctx.teacher_logits(batch), c.temperature)
    terms = {"kd": loss.item()}
    h, _ = hbar_loss(x, batch.y, hiddens, ctx.num_classes, c.lambda_x, c.lambda_y, c.sigma, c.centering)
    terms["hsic"] = h.item()
    return loss + h, terms


register(MethodSpec("pwoa", PruneConfig, loss=pwoa_loss, uses_teacher=True, order=40, cost=3, role="proposed",
                    label="PwoA (L_D + L_H)", color="tab:blue", marker="D", help="L_D + HBaR (the paper's method)"),
         replace=True)
