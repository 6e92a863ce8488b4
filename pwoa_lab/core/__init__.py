"""The core: the paper's mathematics and what it runs on. The first layer above `pwoa_lab.utils`.

- `datasets`: one record per dataset (every fact the kit knows of it) and its registry; `data`: a dataset's splits
  as tensors in [0, 1]; `models`: the networks (`forward_features` gives the hidden layers HSIC uses);
- `attacks`: `fgsm`, `pgd_linf`, `cw_linf`, `autoattack` with one call shape, and the one rule of how robustness is
  measured (`attack_options`, `pgd_step_size`, `robust_accuracy`); `evaluation`: a model's test-set row,
  `outcomes`: its per-image bits, `worst_case`: the per-point worst case of PGD and AutoAttack (knowing nothing of
  how the model was made); `intervals`: how sure a number is;
- the losses: `distillation` (T^2 KL self-distillation), `hsic` (kernels, normalized HSIC, the HBaR loss),
  `trades` (HYDRA's TRADES objective), `adversarial_training` (the inner maximisation of a robust teacher).

Nothing here knows about pruning or training loops.
"""
