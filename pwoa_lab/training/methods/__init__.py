"""Every way the kit trains a model, each a config (what determines the run) plus a method (a loss and hooks).

| config | method | phases | loss |
| --- | --- | --- | --- |
| `PruneConfig` (the ADMM pipeline) | `AdmmPruning` | admm, retrain (global mode: retrain) | the method's loss |
| `HydraConfig` | `HydraPruning` | score, finetune | TRADES |
| `TeacherConfig` (pgd, fgsm_rs, none) | `AdversarialTraining` | train | CE |

One module per built-in method, each its loss and its one registration (`pwoa_lab.training.registry.register`):

    oneshot   no loss, no training: magnitude pruning of the teacher (the control "pruning without fine-tuning")
    naive     L_CE = CE(f(x), y)                         the paper's "L_CE": pruning destroys robustness
    kd        L_D  = T^2 KL(f_teacher(x)/T || f(x)/T)    self-distillation from the dense teacher
    pwoa      L_D + L_H,  L_H = sum_j lx nHSIC(X, Z_j) - ly nHSIC(Y, Z_j)   (HBaR)
    advprune  CE on PGD examples (Ye et al. 2019): mix ratio 1 by default
    hydra     learned scores + TRADES (Sehwag et al. 2020), its own config and phases

The pruning design space (`PruneConfig.structure`, `importance`, `schedule`; defaults: the ADMM pipeline) is
`pwoa_lab.pruning.schedules`; the losses are the same whatever the choice ("PwoA-S": pwoa, structured).

Adding a method is one registration: a loss `(student, batch, phase, ctx) -> (loss, terms)` with `PruneConfig`
when it fits the ADMM pipeline; otherwise a config class (fields, `phases()`, `make_method()`) and a `MethodBase`
subclass with the hooks it needs (see `pwoa_lab.training.loop` for when each hook runs). The loop does not change.
"""
from pwoa_lab.training.methods.base import MethodBase, trainable_copy  # noqa: F401
from pwoa_lab.training.methods.admm import LOSS_FIELDS, AdmmPruning, LossContext, PruneConfig  # noqa: F401
from pwoa_lab.training.methods.hydra import HydraConfig, HydraPruning  # noqa: F401
from pwoa_lab.training.methods.teacher import AdversarialTraining, TeacherConfig  # noqa: F401
# the built-in methods, one registration each (their order in tables is MethodSpec.order)
from pwoa_lab.training.methods.naive import ce_loss  # noqa: F401,E402
from pwoa_lab.training.methods.kd import distillation_loss  # noqa: F401,E402
from pwoa_lab.training.methods.pwoa import pwoa_loss  # noqa: F401,E402
from pwoa_lab.training.methods import advprune, oneshot  # noqa: F401,E402,I001
