"""Is it pruning, or size? The weight count of a pruned network, and the width of a dense network of that size.

A network pruned at rate R keeps 1/R of every weight tensor its scope prunes (`keep_count`); everything else (the
layers outside the scope, biases, BatchNorm) stays. `pruned_weight_count` counts what is left: the nonzero
parameters of the pruned network. `capacity_scale` finds the width multiplier of the same family
(`build_model(..., scale=s)`: every hidden width times s) whose dense parameter count is closest to it: the
capacity control, a dense network of (about) the pruned network's size.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from pwoa_lab.core.models import build_model, count_parameters
from pwoa_lab.pruning.masks import keep_count, prunable_weights
from pwoa_lab.utils import check_rate

TOLERANCE = 0.05  # the control's weight count is within 5% of the pruned network's


def pruned_weight_count(model: nn.Module, rate: float, scope: str = "all") -> int:
    """The parameters of `model` left nonzero by pruning `scope` at `rate` (each pruned tensor keeps
    max(1, round(numel / rate)) weights; every other parameter stays)."""
    rate = check_rate(rate)
    removed = sum(w.numel() - keep_count(w.numel(), rate) for w in prunable_weights(model, scope).values())
    return count_parameters(model) - removed


@dataclass(frozen=True)
class CapacityScale:
    """The width multiplier of the capacity control: `scale`, its dense parameter count `weights` and the pruned
    network's count `target` it matches (`error`: weights / target - 1)."""
    scale: float
    weights: int
    target: int

    @property
    def error(self) -> float:
        return self.weights / self.target - 1


def dense_weights(model_name: str, dataset: str, scale: float) -> int:
    """The parameter count of `build_model(model_name, dataset, scale=scale)`, built on the meta device (no
    memory, no initialisation)."""
    with torch.device("meta"):
        return count_parameters(build_model(model_name, dataset, scale=scale))


def _shapes(model_name: str, dataset: str, scale: float) -> list[tuple[int, ...]]:
    with torch.device("meta"):
        return [tuple(p.shape) for p in build_model(model_name, dataset, scale=scale).parameters()]


@functools.lru_cache(maxsize=256)  # a pure function of its arguments, asked again on every explorer redraw
def capacity_scale(model_name: str, dataset: str, target: int) -> CapacityScale:
    """The width multiplier in (0, 1] whose dense network has the parameter count closest to `target`.

    The count grows with the scale in steps (widths are whole numbers): a bisection finds where it crosses the
    target, and the closer of the two neighbouring widths wins. A ValueError when even the narrowest or the full
    network is more than `TOLERANCE` away (a target below what one unit per layer needs, or above the model)."""
    if target < 1:
        raise ValueError(f"target must be a positive number of weights; got {target}")
    low, high = 1e-3, 1.0
    if dense_weights(model_name, dataset, high) <= target:
        low = high
    else:
        for _ in range(40):  # the count is monotone in the scale: bisect to the crossing
            mid = (low + high) / 2
            if dense_weights(model_name, dataset, mid) <= target:
                low = mid
            else:
                high = mid
    candidates = [CapacityScale(float(s), dense_weights(model_name, dataset, s), int(target))
                  for s in np.unique([low, high])]
    best = min(candidates, key=lambda c: abs(c.weights - target))
    shapes = _shapes(model_name, dataset, best.scale)
    # the shortest scale that builds the same network (for tables and keys); the bisection ends on a step's edge,
    # so the shorter number may lie above it as well as below
    shorter = (s for digits in (2, 3, 4, 5, 6)
               for s in (np.floor(best.scale * 10 ** digits) / 10 ** digits,
                         np.ceil(best.scale * 10 ** digits) / 10 ** digits))
    for short in shorter:
        if 0 < short <= 1 and _shapes(model_name, dataset, float(short)) == shapes:
            best = CapacityScale(round(float(short), 6), best.weights, best.target)
            break
    if abs(best.error) > TOLERANCE:
        raise ValueError(f"no width of {model_name} has about {target:,} weights (closest: {best.weights:,} at "
                         f"scale {best.scale:.3f}, {100 * best.error:+.1f}%): a capacity control needs a network "
                         "of the same family within 5% of the pruned network's size")
    return best
