"""kd: self-distillation from the frozen dense teacher, the L_D term of PwoA alone.

    L_D = T^2 KL(f_teacher(x)/T || f(x)/T)
"""
from __future__ import annotations

import torch.nn as nn

from pwoa_lab.core.distillation import kd_loss
from pwoa_lab.training.loop import Batch, Phase
from pwoa_lab.training.methods.admm import LOSS_FIELDS, LossContext, PruneConfig
from pwoa_lab.training.registry import MethodSpec, register


def distillation_loss(student: nn.Module, batch: Batch, phase: Phase, ctx: LossContext):
    """L_D: T^2 KL from the frozen dense teacher."""
    loss = kd_loss(student(batch.inputs), ctx.teacher_logits(batch), ctx.config.temperature)
    return loss, {"kd": loss.item()}


register(MethodSpec("kd", PruneConfig, loss=distillation_loss, uses_teacher=True, ignores=LOSS_FIELDS[1:], order=30,
                    cost=3, role="distillation", label="L_D (distillation)", color="tab:orange", marker="s",
                    help="self-distillation from the dense teacher (L_D)"), replace=True)
