"""Where robustness is lost: which layers (`layer_sensitivity`), pruning or fine-tuning (`finetune_drift`), and
whether the fine-tuning loses it through more data or through more optimizer steps (`learning_curve`)."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import torch
import torch.nn as nn

from pwoa_lab import defaults
from pwoa_lab.core.data import TensorData, dataset_info, load_dataset
from pwoa_lab.core.evaluation import EVAL_SEED, EvalSettings, evaluate_row
from pwoa_lab.experiments.frontier import frontier  # noqa: F401  the trade-off over the fine-tuning budget
from pwoa_lab.experiments.batch import prune_rows
from pwoa_lab.experiments.runs import resolve_teacher
from pwoa_lab.pruning.masks import apply_masks, magnitude_masks, prunable_modules, remove_masks
from pwoa_lab.training.loop import validation_metrics
from pwoa_lab.training.methods import PruneConfig
from pwoa_lab.training.presets import preset_config
from pwoa_lab.training.registry import TEACHER, method_names, method_spec, method_with_role
from pwoa_lab.utils import check_rate, forked_rng, get_device


def one_shot(model: nn.Module, rate: float, scope: str = "all", mode: str = "layer") -> nn.Module:
    """A copy of `model` magnitude-pruned at `rate` (plain weights with exact zeros), no training."""
    pruned = copy.deepcopy(model)
    apply_masks(pruned, magnitude_masks(pruned, rate, scope, mode))
    remove_masks(pruned)
    return pruned


def layer_sensitivity(model: nn.Module, dataset: str, rate: float, n: int | None = 200, eps: float | None = None,
                      root=None) -> pd.DataFrame:
    """One-shot magnitude pruning at `rate`, no fine-tuning: which layers carry the robustness?

    Prunes (a copy of) `model` one layer at a time, then every layer (scope "all") and every layer but the first
    and the classifier (scope "hidden"), and evaluates natural and PGD accuracy (%) on the first `n` test images
    (the dataset's PGD; seeded like `evaluate_row`). Returns a DataFrame: pruned (layer name, "none", "all" or
    "hidden"), weights (how many were pruned), natural, pgd.
    """
    rate = check_rate(rate)
    info = dataset_info(dataset)
    eps = info.eps if eps is None else eps
    settings = EvalSettings(n=n, aa_n=0)
    full = magnitude_masks(model, rate, "all")
    hidden = set(prunable_modules(model, "hidden"))
    choices = {"none": {}, **{key: {key: mask} for key, mask in full.items()}, "all": full,
               "hidden": {k: m for k, m in full.items() if k in hidden}}
    rows = []
    for name, masks in choices.items():
        pruned = copy.deepcopy(model).eval()
        if masks:
            apply_masks(pruned, masks)
            remove_masks(pruned)
        row = evaluate_row(pruned, dataset, eps, settings, root)
        rows.append({"pruned": name, "weights": int(sum(int((~m).sum()) for m in masks.values())),
                     "natural": row["natural"], "pgd": row["pgd"]})
    return pd.DataFrame(rows)


def _check_fine_tuning(methods: Sequence[str]) -> None:
    """The analyses fine-tune a magnitude-pruned model on natural images: methods of the ADMM pipeline that train
    without adversarial batches."""
    fits = [m for m in method_names(PruneConfig)
            if method_spec(m).trains and method_spec(m).mix_ratio == 0]
    if not methods or not set(methods) <= set(fits):
        raise ValueError(f"methods must be some of {', '.join(fits)}; got {list(methods)!r}")


def finetune_drift(teacher: nn.Module, dataset: str = defaults.DATASET, rate: float = 8,
                   methods: Sequence[str] = defaults.LOSS_METHODS, lrs: Sequence[float] = (5e-4,),
                   epochs: int = 3, preset: str = defaults.PRESET, scope: str = "all", mode: str = "layer",
                   seed: int = defaults.SEED, settings: EvalSettings = EvalSettings(n=500, aa_n=0),
                   cache_dir: str | Path | None = None, use_cache: bool = True, root=None, device=None,
                   progress: bool = True, **overrides: Any) -> pd.DataFrame:
    """Where does robustness go: into the pruning, or into the fine-tuning after it?

    Prunes the teacher once by magnitude at `rate` (no ADMM: epoch 0), then fine-tunes the masked model on
    natural images for `epochs` epochs with each method's loss (`naive`: cross-entropy, `kd`, `pwoa`) at each
    Adam learning rate in `lrs` (constant; the rest of the schedule from `preset`). Validation natural and PGD
    accuracy (%) after every epoch. Each run is a cached `prune_row` (test-set natural / PGD of its final model
    by `settings`: the first 500 test images, all of them on smaller test sets, no AutoAttack). `overrides` go into every run config (e.g. lambda_x, temperature, batch_size).

    Returns a DataFrame: method ("teacher" for the dense model), lr, epoch (0: before any fine-tuning),
    train_seconds, val_natural, val_pgd. At epoch 0 every method and lr has the same (one-shot pruned) model.
    """
    rate = check_rate(rate)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a whole number >= 1; got {epochs!r}")
    lrs = [float(lr) for lr in lrs]
    if not lrs or not all(lr > 0 for lr in lrs):
        raise ValueError(f"lrs must be one or more learning rates > 0; got {lrs!r}")
    _check_fine_tuning(methods)
    device = get_device(device)
    teacher = resolve_teacher(dataset, teacher, device)
    configs = [preset_config(dataset, preset, method=m, rate=rate, scope=scope, mode=mode, admm_epochs=0,
                             retrain_epochs=epochs, lr_retrain=lr, lr_schedule="constant", eval_every=1, seed=seed,
                             device=str(device), **overrides)
               for m in methods for lr in lrs]
    base = configs[0]
    val = load_dataset(dataset, "val", root).head(base.val_n)
    val = TensorData(val.x.to(device), val.y.to(device), val.name, "val")
    start = {}
    for name, model in {"teacher": teacher, "pruned": one_shot(teacher, rate, scope, mode)}.items():
        with forked_rng():  # the PGD random start: the same numbers whatever ran before
            torch.manual_seed(EVAL_SEED)
            start[name] = validation_metrics(model.eval(), val, base.eps, base.val_pgd_steps)
    done, _ = prune_rows(teacher, configs, settings, cache_dir, use_cache, root, 1, progress,
                         desc=f"fine-tuning drift ({dataset}, {rate:g}x)")
    rows = [{"method": TEACHER, "lr": float("nan"), "epoch": 0, "train_seconds": 0.0, **start["teacher"]}]
    for config, (_, history) in zip(configs, done):
        rows.append({"method": config.method, "lr": config.lr_retrain, "epoch": 0, "train_seconds": 0.0,
                     **start["pruned"]})
        for r in history.itertuples():
            rows.append({"method": config.method, "lr": config.lr_retrain, "epoch": int(r.epoch),
                         "train_seconds": float(r.train_seconds), "val_natural": float(r.val_natural),
                         "val_pgd": float(r.val_pgd)})
    return pd.DataFrame(rows)


def learning_curve(teacher: nn.Module | None = None, dataset: str = defaults.DATASET, rates: Sequence[float] = (4, 8),
                   methods: Sequence[str] = defaults.FRONTIER_METHODS, sizes: Sequence[int] = (60, 600, 5000),
                   fixed_steps: int = 400, steps: Sequence[int] = (140, 420, 1170), fixed_size: int = 600,
                   preset: str = defaults.PRESET, seed: int = defaults.SEED,
                   settings: EvalSettings = EvalSettings(n=500, aa_n=0),
                   cache_dir: str | Path | None = None, use_cache: bool = True, root=None, device=None,
                   progress: bool = True, workers: int = 1, **overrides: Any) -> pd.DataFrame:
    """Where does the gap to the paper come from: the amount of data, or the number of optimizer steps?

    Every run prunes the teacher once by magnitude (no ADMM) and fine-tunes the masked model on natural images
    with each method's loss (the rest of the schedule from `preset`; the final epoch's model, no checkpoint
    selection). Two axes, each a table:
    - "data": `sizes` training images per class at about `fixed_steps` optimizer steps (whole epochs: the
      epochs are round(fixed_steps / batches per epoch), at least 1, so the real count is in `steps`);
    - "steps": about `steps` optimizer steps on `fixed_size` images per class.
    The one-shot control (pruned, never trained) is one row per rate with steps 0. Test-set natural and PGD
    accuracy (%) by `settings`. Returns a DataFrame: axis, method, rate, n_per_class, images, epochs, steps,
    natural, pgd, train_seconds.
    """
    rates = [check_rate(r) for r in rates]
    _check_fine_tuning(methods)
    for name, values in (("sizes", list(sizes) + [fixed_size]), ("steps", list(steps) + [fixed_steps])):
        if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
            raise ValueError(f"{name} must be whole numbers >= 1; got {values!r}")
    device = get_device(device)
    teacher = resolve_teacher(dataset, teacher, device)
    base = preset_config(dataset, preset, method=method_with_role("baseline"), seed=seed, **overrides)
    classes = dataset_info(dataset).num_classes
    plan = [("data", n, fixed_steps) for n in sizes] + [("steps", fixed_size, s) for s in steps]
    runs, configs = [], []
    for axis, n, target in plan:
        batches = -(-classes * n // base.batch_size)  # per epoch (class-balanced subset of n per class)
        epochs = max(1, round(target / batches))
        for method in methods:
            for rate in rates:
                runs.append({"axis": axis, "method": method, "rate": rate, "n_per_class": n, "images": classes * n,
                             "epochs": epochs, "steps": epochs * batches})
                configs.append(preset_config(dataset, preset, method=method, rate=rate, seed=seed, n_per_class=n,
                                             admm_epochs=0, retrain_epochs=epochs, eval_every=epochs,
                                             lr_schedule="constant", select="last", device=str(device), **overrides))
    control = method_with_role("control")
    for rate in rates:
        runs.append({"axis": "control", "method": control, "rate": rate, "n_per_class": 0, "images": 0,
                     "epochs": 0, "steps": 0})
        configs.append(preset_config(dataset, preset, method=control, rate=rate, seed=seed, device=str(device),
                                     **overrides))
    done, _ = prune_rows(teacher, configs, settings, cache_dir, use_cache, root, workers, progress,
                         desc=f"learning curve ({dataset})")
    rows = [{**run, "natural": row["natural"], "pgd": row["pgd"], "train_seconds": row["train_seconds"]}
            for run, (row, _) in zip(runs, done)]
    return pd.DataFrame(rows)
