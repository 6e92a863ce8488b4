"""Every schedule of the kit in one table: one block per (preset, dataset).

- `smoke`: seconds (tests, CI); `quick`: CPU minutes (the course); `paper`: the reference schedules (GPU hours).
- A block holds `admm` (the ADMM pipeline: naive, kd, pwoa, advprune), `hydra` (HYDRA's schedule), `eval` (the
  test-set evaluation of Figure 1), `fig3` (the Figure 3 defaults) and, optionally, `capacity` (what changes in
  the teacher's recipe for the capacity control: the smoke preset's few batches). Values left out take the config
  classes' defaults (`pwoa_lab.training.methods`: short CPU schedules); the paper's schedules are the `paper`
  blocks.

`preset_config(dataset, preset, method=..., **overrides)` gives the run config of a method;
`eval_settings(dataset, preset)` and `fig3_defaults(dataset, preset)` the rest of a block; `add_preset_block`
gives a new dataset its schedules.
"""
from __future__ import annotations

from dataclasses import fields
from typing import Any

from pwoa_lab import defaults
from pwoa_lab.core.data import dataset_info
from pwoa_lab.core.evaluation import EvalSettings
from pwoa_lab.training.methods import HydraConfig, PruneConfig
from pwoa_lab.training.registry import method_spec
from pwoa_lab.utils import check_choice

PAPER_MIX_RATIOS = (0, 0.2, 0.4, 0.6, 0.8, 1)
QUICK_MIX_RATIOS = (0, 0.5, 1)

_PAPER_ADMM = dict(admm_epochs=50, admm_every=3, retrain_epochs=100, lr_admm=5e-4, lr_retrain=1e-3)
_PAPER_CIFAR = dict(admm_epochs=50, admm_every=3, retrain_epochs=100, optimizer="sgd", lr_admm=0.01, lr_retrain=5e-3,
                    lr_schedule="cosine", weight_decay=1e-4, val_n=1000)
_PAPER_HYDRA = dict(score_epochs=20, finetune_epochs=100)
_PAPER_EVAL = EvalSettings(n=None, aa_n=1000, aa_version="standard")

# the capacity control in smoke runs: the teacher's recipe cut to a few batches (other presets: the recipe itself)
_SMOKE_CAPACITY = dict(epochs=1, n_per_class=20, val_n=100, val_pgd_steps=2, adv_steps=2)

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "smoke": {
        "digits": dict(
            admm=dict(admm_epochs=2, admm_every=1, rho0=0.1, retrain_epochs=2, batch_size=64, lr_admm=5e-4,
                      lr_retrain=5e-4, lr_schedule="constant", val_n=100, val_pgd_steps=5, adv_steps=3),
            hydra=dict(score_epochs=1, finetune_epochs=1, adv_steps=3, val_n=100, val_pgd_steps=5,
                       lr_schedule="constant"),
            eval=EvalSettings(n=100, aa_n=0),
            fig3=dict(mix_ratios=QUICK_MIX_RATIOS, n_per_class=None, eval=EvalSettings(n=100, aa_n=0)),
            capacity=_SMOKE_CAPACITY),
        "mnist": dict(
            admm=dict(admm_epochs=1, admm_every=1, retrain_epochs=1, n_per_class=50, val_n=100, val_pgd_steps=5,
                      lr_schedule="constant"),
            hydra=dict(score_epochs=1, finetune_epochs=1, adv_steps=3, n_per_class=50, val_n=100, val_pgd_steps=5,
                       lr_schedule="constant"),
            eval=EvalSettings(n=100, aa_n=0),
            fig3=dict(mix_ratios=QUICK_MIX_RATIOS, n_per_class=None, eval=EvalSettings(n=100, aa_n=0)),
            capacity=_SMOKE_CAPACITY),
        # the CIFAR path end to end in seconds: ResNet-18 / WRN, augmentation, SGD, HSIC over every block
        "cifar10": dict(
            admm=dict(admm_epochs=1, admm_every=1, retrain_epochs=1, n_per_class=10, batch_size=32, optimizer="sgd",
                      lr_admm=0.01, lr_retrain=5e-3, lr_schedule="cosine", weight_decay=1e-4, lambda_x=2e-5,
                      lambda_y=1e-4, val_n=50, val_pgd_steps=2, adv_steps=2),
            hydra=dict(score_epochs=1, finetune_epochs=1, adv_steps=2, n_per_class=10, batch_size=32, val_n=50,
                       val_pgd_steps=2, lr_schedule="constant"),
            eval=EvalSettings(n=50, aa_n=0),
            fig3=dict(mix_ratios=QUICK_MIX_RATIOS, n_per_class=None, eval=EvalSettings(n=50, aa_n=0)),
            capacity=dict(_SMOKE_CAPACITY, n_per_class=10, batch_size=32, val_n=50)),
    },
    "quick": {
        "digits": dict(
            admm=dict(admm_epochs=6, admm_every=1, rho0=0.1, retrain_epochs=12, batch_size=32, lr_admm=5e-4,
                      lr_retrain=5e-4, lr_schedule="constant", val_n=179, val_pgd_steps=10, eval_every=3),
            hydra=dict(score_epochs=2, finetune_epochs=4, batch_size=64, adv_steps=5, val_n=180, val_pgd_steps=10),
            # every test image, AutoAttack too: digits has only 359, and a difference of a few points needs them all
            eval=EvalSettings(n=None, aa_n=None),
            fig3=dict(mix_ratios=QUICK_MIX_RATIOS, n_per_class=None, eval=EvalSettings(n=None, aa_n=100))),
        # admm: PGD-10 (step 2.5 eps / 10) instead of the paper's PGD-40 for mixed-in adversarial batches (CPU
        # minutes). rho0 is the paper's 0.01: with 0.1, PwoA's validation PGD at 8x fell from 91 to 5 in the 2 ADMM
        # epochs and ended at 46 (test PGD-40); with 0.01 it stays at 77-80 and ends at 77. Validation (every
        # epoch, 500 images) uses PGD-5: with PGD-10 it cost more than the test-set PGD-40. HYDRA validates the
        # same way, so that Figure 3 compares like with like. Figure 3 trains on half of Figure 1's subset.
        "mnist": dict(
            admm=dict(admm_epochs=2, admm_every=1, rho0=0.01, retrain_epochs=3, n_per_class=600, lr_admm=5e-4,
                      lr_retrain=5e-4, lr_schedule="constant", val_n=500, val_pgd_steps=5, adv_steps=10,
                      adv_alpha=0.075),
            hydra=dict(score_epochs=2, finetune_epochs=3, n_per_class=600, val_n=500, val_pgd_steps=5),
            # 1,000 test images: a paired difference of two methods to about +-3 points (95%), at twice the cost of
            # 500 (docs/results.md, "How sure are we")
            eval=EvalSettings(n=1000, aa_n=1000),
            fig3=dict(mix_ratios=QUICK_MIX_RATIOS, n_per_class=300, eval=EvalSettings(n=500, aa_n=100))),
        # sized for the shipped VGG-small teacher on one CPU thread: one PwoA run trains about 2 minutes (5
        # epochs of 5,000 images) and evaluates in about 1. Validation uses PGD-5 as MNIST's does; mixed-in
        # adversarial batches (AdvPrune, PwoA with r > 0) and HYDRA's TRADES use PGD-3 (step 2.5 eps / 3).
        "cifar10": dict(
            admm=dict(admm_epochs=2, admm_every=1, retrain_epochs=3, n_per_class=500, optimizer="sgd", lr_admm=0.01,
                      lr_retrain=5e-3, lr_schedule="cosine", weight_decay=1e-4, lambda_x=2e-5, lambda_y=1e-4,
                      val_n=500, val_pgd_steps=5, adv_steps=3, adv_alpha=2.5 * 8 / 255 / 3),
            hydra=dict(score_epochs=2, finetune_epochs=3, n_per_class=500, val_n=500, val_pgd_steps=5, adv_steps=3),
            eval=EvalSettings(n=1000, aa_n=1000),  # as MNIST's: a paired difference to about +-3 points
            fig3=dict(mix_ratios=QUICK_MIX_RATIOS, n_per_class=250, eval=EvalSettings(n=500, aa_n=100))),
    },
    "paper": {
        "digits": dict(admm=_PAPER_ADMM, hydra=_PAPER_HYDRA, eval=_PAPER_EVAL,
                       fig3=dict(mix_ratios=PAPER_MIX_RATIOS, n_per_class=None, eval=_PAPER_EVAL)),
        "mnist": dict(admm=dict(_PAPER_ADMM, val_n=5000, val_pgd_steps=40),
                      hydra=dict(_PAPER_HYDRA, val_n=5000, val_pgd_steps=40), eval=_PAPER_EVAL,
                      fig3=dict(mix_ratios=PAPER_MIX_RATIOS, n_per_class=None, eval=_PAPER_EVAL)),
        "fashion_mnist": dict(admm=_PAPER_ADMM, hydra=None, eval=_PAPER_EVAL,
                              fig3=dict(mix_ratios=PAPER_MIX_RATIOS, n_per_class=None, eval=_PAPER_EVAL)),
        "cifar10": dict(admm=dict(_PAPER_CIFAR, lambda_x=2e-5, lambda_y=1e-4), hydra=dict(_PAPER_HYDRA, val_n=1000),
                        eval=_PAPER_EVAL, fig3=dict(mix_ratios=PAPER_MIX_RATIOS, n_per_class=None, eval=_PAPER_EVAL)),
        "cifar100": dict(admm=dict(_PAPER_CIFAR, lambda_x=5e-7, lambda_y=2e-6), hydra=dict(_PAPER_HYDRA, val_n=1000),
                         eval=_PAPER_EVAL, fig3=dict(mix_ratios=PAPER_MIX_RATIOS, n_per_class=None, eval=_PAPER_EVAL)),
    },
}

def add_preset_block(preset: str, dataset: str, block: dict[str, Any], replace: bool = False) -> None:
    """The schedules of a (new) dataset under a preset: a block with `admm`, `hydra`, `eval` and `fig3` entries as
    above. A block already there is an error unless `replace=True`."""
    check_choice(preset, PRESETS, "preset")
    dataset_info(dataset)
    missing = {"admm", "hydra", "eval", "fig3"} - set(block)
    if missing:
        raise ValueError(f"a preset block needs the entries admm, hydra, eval and fig3; missing {sorted(missing)}")
    if dataset in PRESETS[preset] and not replace:
        raise ValueError(f"preset {preset!r} has a block for {dataset!r} already; pass replace=True to redefine it")
    PRESETS[preset][dataset] = block


def remove_preset_block(preset: str, dataset: str) -> None:
    """Remove a block `add_preset_block` added (e.g. a test's toy dataset)."""
    PRESETS.get(preset, {}).pop(dataset, None)


def preset_block(dataset: str, preset: str) -> dict[str, Any]:
    """The (preset, dataset) block, or a ValueError that lists what exists."""
    check_choice(preset, PRESETS, "preset")
    dataset_info(dataset)
    if dataset not in PRESETS[preset]:
        others = [name for name, blocks in PRESETS.items() if dataset in blocks]
        raise ValueError(f"the {preset} preset has no schedules for the dataset {dataset!r} (it has "
                         f"{', '.join(PRESETS[preset])}): pick one of those"
                         + (f", or the preset {' or '.join(others)}, which has {dataset!r}" if others else "")
                         + "; or give it schedules with pwoa_lab.training.presets.add_preset_block")
    return PRESETS[preset][dataset]


def preset_config(dataset: str, preset: str = defaults.PRESET, method: str = defaults.METHOD, **overrides: Any
                  ) -> PruneConfig | HydraConfig:
    """The run config of `method` with the preset's schedule for `dataset`, `overrides` applied, resolved (validated,
    every default filled in: what runs take; `dataclasses.replace` of it gives a new config to resolve again)."""
    cls = method_spec(method).config
    block = preset_block(dataset, preset)
    schedule = block[cls.PRESET_KEY]
    if schedule is None:
        raise ValueError(f"preset {preset!r} has no {method} schedule for {dataset!r}")
    valid = [f.name for f in fields(cls)]
    unknown = set(overrides) - set(valid)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields {sorted(unknown)}; valid: {', '.join(valid)}")
    if "method" in valid:
        overrides["method"] = method
    return cls(dataset=dataset, **{**schedule, **overrides}).resolved()


def eval_settings(dataset: str, preset: str) -> EvalSettings:
    """How Figure 1 evaluates on the test split with this preset."""
    return preset_block(dataset, preset)["eval"]


def capacity_overrides(dataset: str, preset: str) -> dict[str, Any]:
    """What the preset changes in the teacher's recipe for the capacity control ({}: the recipe as it is; the smoke
    preset: a few batches)."""
    return dict(preset_block(dataset, preset).get("capacity", {}))


def fig3_defaults(dataset: str, preset: str) -> dict[str, Any]:
    """Figure 3's defaults for the preset: mix_ratios, n_per_class (None: the preset's subset), eval."""
    return preset_block(dataset, preset)["fig3"]
