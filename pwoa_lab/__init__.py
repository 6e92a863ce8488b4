"""pwoa-lab: a study kit for pruning adversarially robust networks without adversarial examples (PwoA).

Modules, one concept each: `data`, `models`, `checkpoint`, `attacks`, `adversarial_training`, `hsic`,
`distillation`, `pruning`, `engine` (prune-and-finetune), `hydra`, `experiments`, `plots`, `widgets`, `cli`.
"""
__version__ = "0.1.0"
