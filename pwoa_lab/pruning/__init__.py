"""Pruning: which weights, masks, ADMM, the hard prune, export, importances, structured pruning, schedules.

The third layer: uses `pwoa_lab.core` (models, data) and knows no training loop; a training loop calls it
(the hard prune between phases, ADMM's penalty in the loss, its update after an epoch).

A pruning rate R keeps 1/R of each pruned weight tensor: k = max(1, round(numel / R)) entries survive,
so each pruned layer ends at sparsity 1 - 1/R (exactly so when numel is divisible by R).

Read top to bottom:

1. Which weights are pruned (``SCOPES``):

   - ``"all"`` (the default): every ``nn.Conv2d`` / ``nn.Linear`` ``.weight``.
   - ``"hidden"``: all but the first layer and the last linear layer (a common convention: those two are
     the smallest layers, 288 and 1,280 weights in the digits CNN, and at 8x they alone cost most of the
     robustness).
   - ``"convs"``: ``nn.Conv2d`` weights only.
   - ``"reference"``: the PwoA reference code's rule: a weight is pruned if it is a conv weight or its
     name contains ``"fc.weight"``. The rule depends on layer names: on LeNet-3 (``fc1``, ``fc2``) it
     selects the two convs only (52,000 of 3,273,504 weights, so at 4x the network is 1.2% sparse); on
     ResNet-18 and WRN (classifier named ``fc``) it selects every conv, shortcuts included, plus ``fc``.

   The rate R applies to the selected layers only; ``network_sparsity`` gives the fraction of zeros over
   every conv and linear weight, whatever the scope, and ``rate_label`` puts both in one label.
   Biases are never pruned. Weights are named like parameters, e.g. ``"conv1.weight"`` or
   ``"module.features.0.weight"``.
   (``masks``)
2. Masks: ``project_topk`` (projection onto the sparsity set) and ``magnitude_masks`` (per layer, as in
   the paper, or with one global threshold).
3. ``ADMM`` (``admm``): the auxiliary variables Z, U and penalty weights rho used while the network is pushed
   towards the sparsity set; ``ADMM.masks()`` gives the masks for the hard prune that follows.
4. Hard prune + masked fine-tuning with ``torch.nn.utils.prune``: ``apply_masks`` turns ``weight`` into
   ``weight_orig * weight_mask`` so pruned weights stay exactly 0 whatever the optimizer (momentum,
   weight decay, Adam) does to ``weight_orig``. ``remove_masks`` makes it permanent.
5. ``sparsity_report``: a table of per-layer sparsity; ``network_sparsity`` and ``rate_label`` (``masks``).
6. Export (``export``): ``dense_state_dict`` (a plain state dict) and ``save_sparse`` / ``load_sparse`` (a compact
   file: packed bitmask + surviving values for each pruned weight).
7. Other importances and schedules (``importance``): ``gradient_importance`` (|w * dL/dw|, first-order Taylor / SNIP),
   ``importance_masks`` (top-k of any score, per layer or global), ``cubic_sparsity`` (gradual pruning).
8. ``structured``: channel pruning with Torch-Pruning (a physically smaller model); ``schedules``: the design
   space of a pruning run (structure, importance, schedule); ``scores``: HYDRA's learned importance scores;
   ``footprint``: parameters, file sizes and CPU latency of a model.

The names of 1-7 are importable from ``pwoa_lab.pruning`` itself; the modules of 8 by their own path.

Optimizer caveat: ``apply_masks`` re-registers the existing ``weight`` Parameter object as
``weight_orig`` (and ``remove_masks`` puts the same object back as ``weight``), so an optimizer built
before still updates the right tensors. Still, build the optimizer *after* ``apply_masks`` for the
fine-tuning phase (fresh momentum / Adam moments); ``check_optimizer`` tells you if one misses a parameter.
"""

from pwoa_lab.pruning.admm import ADMM
from pwoa_lab.pruning.export import (
                                     dense_state_dict,
                                     load_sparse,
                                     plain_state_dict,
                                     save_sparse,
                                     sparse_payload,
                                     write_sparse,
)
from pwoa_lab.pruning.importance import cubic_sparsity, gradient_importance, importance_masks
from pwoa_lab.pruning.masks import (
                                     MODES,
                                     SCOPES,
                                     apply_masks,
                                     check_optimizer,
                                     current_masks,
                                     effective_weight,
                                     is_masked,
                                     keep_count,
                                     magnitude_masks,
                                     network_sparsity,
                                     project_topk,
                                     prunable_modules,
                                     prunable_weights,
                                     prune_by_magnitude,
                                     rate_label,
                                     remove_masks,
                                     sparsity_report,
                                     topk_mask,
)

__all__ = [
    "SCOPES", "MODES", "keep_count", "prunable_modules", "effective_weight", "prunable_weights",
    "project_topk", "topk_mask", "magnitude_masks", "ADMM",
    "apply_masks", "prune_by_magnitude", "remove_masks", "is_masked", "current_masks", "check_optimizer",
    "sparsity_report", "network_sparsity", "rate_label",
    "plain_state_dict", "dense_state_dict", "sparse_payload", "write_sparse", "save_sparse", "load_sparse",
    "gradient_importance", "importance_masks", "cubic_sparsity",
]
