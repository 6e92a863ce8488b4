"""oneshot: magnitude pruning of the teacher and no training at all, the control "pruning without fine-tuning"."""
from pwoa_lab.training.methods.admm import LOSS_FIELDS, PruneConfig
from pwoa_lab.training.registry import MethodSpec, register

register(MethodSpec("oneshot", PruneConfig, loss=None, trains=False, ignores=LOSS_FIELDS, order=10, cost=1,
                    role="control", label="one-shot, no training", color="tab:gray", marker="x",
                    help="magnitude pruning of the teacher, no training (the control)"), replace=True)
