"""The core: the paper's mathematics and what it runs on. The first layer above `pwoa_lab.utils`.

- `data`: datasets by name (`digits`, `mnist`, `fashion_mnist`, `cifar10`, `cifar100`) as tensors in [0, 1] with a
  held-out validation split; `models`: the networks (`forward_features` gives the hidden layers HSIC uses);
- `attacks`: `fgsm`, `pgd_linf`, `cw_linf`, `autoattack` with one call shape; `evaluation`: a model's test-set row
  and the per-point worst case of PGD and AutoAttack, knowing nothing of how the model was made;
- the losses: `distillation` (T^2 KL self-distillation), `hsic` (kernels, normalized HSIC, the HBaR loss),
  `trades` (HYDRA's TRADES objective), `adversarial_training` (the inner maximisation of a robust teacher).

Nothing here knows about pruning or training loops.
"""
