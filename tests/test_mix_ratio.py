"""The mix ratio r (ADMM methods and HYDRA): each batch is adversarial with probability r, checked statistically."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from pwoa_lab.core.data import load_dataset, subset_per_class
from pwoa_lab.training.methods import HydraConfig
from pwoa_lab.core.models import build_model
from pwoa_lab.training.presets import preset_config
from pwoa_lab.experiments.runs import run_config

RATIOS = (0.0, 0.3, 1.0)
INVALID = (-0.1, 1.5, float("nan"), "a")


@pytest.fixture(scope="module")
def teacher() -> nn.Module:
    torch.manual_seed(0)
    return build_model(None, "digits").eval()


@pytest.fixture(scope="module")
def data():
    """A 400-image training subset (25 batches of 16 per epoch) and 20 validation images."""
    train = subset_per_class(load_dataset("digits", "train"), 40, seed=0)
    return train, load_dataset("digits", "val").head(20)


def n_batches(n_images: int, batch_size: int) -> int:
    return -(-n_images // batch_size)


def check_fraction(fractions, per_epoch: int, r: float) -> None:
    """Overall fraction of adversarial batches: exactly 0 / 1 at the ends, else within 4 binomial sigmas."""
    counts = [f * per_epoch for f in fractions]
    assert all(abs(c - round(c)) < 1e-9 for c in counts)  # per-epoch fractions count whole batches
    n, k = per_epoch * len(fractions), round(sum(counts))
    if r in (0.0, 1.0):
        assert k == r * n
    else:
        assert abs(k - r * n) <= 4 * math.sqrt(n * r * (1 - r)), (k, n, r)
        assert 0 < k < n


@pytest.mark.parametrize("r", RATIOS)
def test_engine_adversarial_batch_fraction(teacher, data, r):
    train, val = data
    config = preset_config("digits", "smoke", method="pwoa", mix_ratio=r, batch_size=16, adv_steps=1,
                           val_n=20, val_pgd_steps=2, device="cpu", seed=7)
    history = run_config(teacher, config, train=train, val=val, progress=False).history
    assert len(history) == config.admm_epochs + config.retrain_epochs
    check_fraction(history.adv_batch_fraction, n_batches(len(train), 16), r)


@pytest.mark.parametrize("r", RATIOS)
def test_hydra_adversarial_batch_fraction(teacher, data, r):
    train, val = data
    config = preset_config("digits", "smoke", method="hydra", mix_ratio=r, batch_size=16, score_epochs=2,
                           finetune_epochs=2, adv_steps=1, val_n=20, val_pgd_steps=2, device="cpu", seed=7)
    history = run_config(teacher, config, train=train, val=val, progress=False).history
    assert len(history) == 4
    check_fraction(history.adv_batch_fraction, n_batches(len(train), 16), r)
    assert ("loss_kl" in history.columns) == (r > 0)  # the TRADES term appears only with TRADES batches


@pytest.mark.parametrize("bad", INVALID)
def test_engine_rejects_invalid_mix_ratio(teacher, bad):
    with pytest.raises(ValueError, match="mix_ratio"):
        preset_config("digits", "smoke", mix_ratio=bad).resolved()
    with pytest.raises(ValueError, match="mix_ratio"):
        run_config(teacher, preset_config("digits", "smoke", mix_ratio=bad), progress=False)


@pytest.mark.parametrize("bad", INVALID)
def test_hydra_rejects_invalid_mix_ratio(teacher, bad):
    with pytest.raises(ValueError, match="mix_ratio"):
        HydraConfig(mix_ratio=bad).resolved()
    with pytest.raises(ValueError, match="mix_ratio"):
        run_config(teacher, preset_config("digits", "smoke", method="hydra", mix_ratio=bad), progress=False)
