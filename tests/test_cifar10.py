"""The shipped CIFAR-10 teacher (VGG-small, FGSM-RS adversarial training by the kit's CLI) and the CIFAR-10 runs
on it, at smoke size, on the real CIFAR-10 files under $PWOA_DATA_ROOT (skipped with the reason where they are
absent). The full-size numbers are results, in docs/results.md, made by the commands written there.
"""
from __future__ import annotations

import pytest
import torch

from pwoa_lab.core.attacks import attack_options
from pwoa_lab.core.data import dataset_info, load_dataset
from pwoa_lab.core.evaluation import evaluate
from pwoa_lab.course import explorer
from pwoa_lab.experiments.figures import figure1
from pwoa_lab.io.checkpoint import shipped_teachers

pytestmark = pytest.mark.slow

N_CHECK = 200          # test images the recorded accuracy is checked on
TOLERANCE = 3.0        # points: what the first 200 of the 1,000 recorded images may differ by


def test_the_shipped_teacher_is_the_recorded_one(cifar10_teacher, cifar10_root):
    model, meta = cifar10_teacher
    assert meta["dataset"] == "cifar10" and meta["model"] == "vgg_small" and not model.training
    assert meta["eps"] == pytest.approx(dataset_info("cifar10").eps) == pytest.approx(8 / 255)
    assert "train-teacher --dataset cifar10" in meta["command"]
    assert shipped_teachers()["cifar10"].stat().st_size < 5e6  # a few MB at most in the repository
    recorded = meta["metrics"]["test"]  # train-teacher --test-n 1000: natural and the kit's PGD-10 (step 2/255)
    test = load_dataset("cifar10", "test", cifar10_root)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        table = evaluate(model, test, ["natural", "pgd"], eps=meta["eps"], n=N_CHECK,
                         attack_options=attack_options("cifar10"),
                         progress=False)
    now = {r.attack: r.accuracy for r in table.itertuples()}
    assert now["natural"] == pytest.approx(recorded["natural"], abs=TOLERANCE), (now, recorded)
    assert now["pgd"] == pytest.approx(recorded["pgd"], abs=TOLERANCE), (now, recorded)
    # robust, not just accurate: PGD leaves a good part of the natural accuracy
    assert now["pgd"] > 20 and now["natural"] > now["pgd"] + 10


def test_one_shot_naive_and_pwoa_runs_on_the_cifar10_teacher(cifar10_teacher, cifar10_root, tmp_path):
    table = figure1("cifar10", rates=(4,), methods=("oneshot", "naive", "pwoa"), preset="smoke", seeds=(0,),
                    root=cifar10_root, cache_dir=tmp_path, progress=False, device="cpu")
    rows = table.set_index("method")
    assert set(rows.index) == {"teacher", "oneshot", "naive", "pwoa"}
    # every layer of VGG-small pruned to a quarter, whatever the method
    for method in ("oneshot", "naive", "pwoa"):
        assert rows.loc[method, "sparsity"] == pytest.approx(0.75, abs=0.01), method
    teacher = rows.loc["teacher"]
    assert teacher["natural"] > 40 and teacher["pgd"] > 15  # 50 smoke test images: the shipped teacher is robust
    assert (table.pgd <= table.natural).all()


def test_the_explorer_offers_cifar10(cifar10_teacher):
    assert "cifar10" in explorer.available_datasets("quick")
