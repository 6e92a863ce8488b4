"""Self-distillation from the dense robust teacher (the L_D term of PwoA).

    L_D = T^2 * KL( softmax(f_teacher(x) / T) || softmax(f_student(x) / T) ),  mean over the batch

A high temperature (T = 30 in the paper) softens both distributions so that the student matches the
teacher's whole logit geometry, not only its top class; the T^2 factor keeps gradient sizes comparable
across temperatures (Hinton et al. 2015). The teacher is a frozen copy in eval mode.
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 30.0) -> torch.Tensor:
    """T^2 * KL(teacher || student) on softened logits [B, C]; a scalar (batch mean)."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0; got {temperature}")
    log_p_student = F.log_softmax(student_logits / temperature, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits.detach() / temperature, dim=1)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    return temperature ** 2 * kl


def soft_labels(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """softmax(logits / T) [B, C]: the teacher's 'dark knowledge' at temperature T."""
    return F.softmax(logits / temperature, dim=1)


def frozen_teacher(model: nn.Module) -> nn.Module:
    """A deep copy of `model` in eval mode with gradients switched off."""
    teacher = copy.deepcopy(model).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher
