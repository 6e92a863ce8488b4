"""The CIFAR path end to end at smoke size on a CPU: a ResNet-18 teacher trained by the kit, pruned with PwoA at
4x (smoke preset: SGD, cosine schedule, augmentation, HSIC over the 10 ResNet layers) and evaluated; the same
teacher exported into the public layouts and imported back (identical outputs), one of them as a RobustBench
model that normalizes its inputs, which is then pruned and evaluated too; the full-size WRN-34-10 through every
public layout. Needs CIFAR-10 under $PWOA_DATA_ROOT (skips with the reason otherwise), except the WRN test.
"""
from __future__ import annotations

import pytest
import torch

from pwoa_lab.io.checkpoint import load_checkpoint, save_checkpoint
from pwoa_lab.core.data import dataset_info, load_dataset
from pwoa_lab.core.evaluation import EvalSettings, evaluate_row
from pwoa_lab.io.teacher_import import import_teacher, load_public_weights, to_public_layout
from pwoa_lab.training.methods import TeacherConfig
from pwoa_lab.core.models import Normalized, ResNet18, build_model
from pwoa_lab.training.presets import preset_config
from pwoa_lab.pruning import prunable_weights
from pwoa_lab.experiments.runs import run_config
from pwoa_lab.utils import model_fingerprint

pytestmark = pytest.mark.slow

RATE = 4


@pytest.fixture(scope="module")
def cifar(cifar10_root):
    """The smoke preset's training subset (10 per class, its seed) and the validation split, loaded once."""
    config = preset_config("cifar10", "smoke", method="pwoa", rate=RATE)
    train = load_dataset("cifar10", "train", cifar10_root, n_per_class=config.n_per_class, seed=config.seed)
    return cifar10_root, train, load_dataset("cifar10", "val", cifar10_root)


@pytest.fixture(scope="module")
def teacher(cifar):
    """A ResNet-18 adversarially trained by the kit for one epoch (PGD-1) on 100 CIFAR-10 images."""
    _, train, val = cifar
    config = TeacherConfig(dataset="cifar10", model="resnet18", epochs=1, batch_size=50, adv_steps=1, val_n=20,
                           val_pgd_steps=1, seed=0).resolved()
    result = run_config(None, config, train=train, val=val, progress=False)
    assert result.history.val_natural.notna().all()
    model = result.model.eval()
    assert isinstance(model, ResNet18) and model.kit_name == "resnet18"
    return model


def _check_pruned(result, n_layers: int = 10) -> None:
    """Every conv/linear weight keeps 1/RATE; HSIC was monitored over every hidden layer; losses finite."""
    for name, w in prunable_weights(result.model, "all").items():
        kept = int((w != 0).sum())
        assert kept == max(1, round(w.numel() / RATE)), name
    history = result.history
    assert list(history.phase) == ["admm", "retrain"]
    hsic = [c for c in history.columns if c.startswith("hsic_xz_")]
    assert len(hsic) == n_layers and history[hsic].notna().all().all()
    assert history.loss_hsic.dropna().size == 1 and torch.isfinite(torch.tensor(history.loss_kd.values)).all()


def _check_row(row: dict, n: int) -> None:
    for attack in ("natural", "fgsm", "pgd"):
        assert 0 <= row[attack] <= 100 and (row[attack] * n / 100) == pytest.approx(round(row[attack] * n / 100))


def test_kit_teacher_pruned_with_pwoa_on_cifar(cifar, teacher):
    root, train, val = cifar
    config = preset_config("cifar10", "smoke", method="pwoa", rate=RATE)
    assert config.optimizer == "sgd" and config.lr_schedule == "cosine" and dataset_info("cifar10").augment
    result = run_config(teacher, config, train=train, val=val, progress=False)
    _check_pruned(result)
    assert model_fingerprint(result.model) != model_fingerprint(teacher)
    row = evaluate_row(result.model, "cifar10", result.config.eps, EvalSettings(n=8, aa_n=2), root)
    _check_row(row, 8)
    assert 0 <= row["aa"] <= 100


def test_teacher_round_trips_through_public_layouts(tmp_path, teacher):
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for fmt, dataparallel in (("plain", False), ("trades", True), ("robustbench", False), ("robustbench", True)):
        public = to_public_layout(teacher.state_dict(), "resnet18", fmt, dataparallel=dataparallel)
        path = tmp_path / f"{fmt}-{dataparallel}.pt"
        torch.save(public, path)
        model, report = load_public_weights(path, build_model("resnet18", "cifar10"), fmt)
        assert torch.equal(model(x), teacher(x)), (fmt, dataparallel)
        # same weights under the same names: the run store treats it as the same teacher (same cache key)
        assert model_fingerprint(model) == model_fingerprint(teacher)


def test_imported_normalizing_teacher_evaluates_prunes_and_saves(tmp_path, cifar, teacher):
    root, train, val = cifar
    mean, std = dataset_info("cifar10").stats
    published = Normalized(teacher, mean, std).eval()  # a public model that normalizes inside (RobustBench style)
    weights = tmp_path / "robustbench.pt"
    torch.save({"state_dict": to_public_layout(published.state_dict(), "resnet18", "robustbench",
                                               dataparallel=True)}, weights)
    out = tmp_path / "imported.pt"
    result = import_teacher("resnet18", "cifar10", weights, fmt="robustbench", eps="8/255", out=out, n=6, aa_n=2,
                            aa_version="fast", root=root, source="kit teacher, renamed", progress=False)
    table = result.evaluation.set_index("attack")
    assert list(table.index) == ["natural", "pgd", "aa"] and list(table.n) == [6, 6, 2]
    test = load_dataset("cifar10", "test", root).head(6)
    assert torch.equal(result.model(test.x), published(test.x))
    imported, meta = load_checkpoint(out)
    assert isinstance(imported, Normalized) and meta["import"]["source"] == "kit teacher, renamed"
    assert meta["metrics"]["test"]["natural"] == table.accuracy["natural"]
    # prune the imported (normalizing) teacher: the wrapper goes through ADMM, masks, HSIC and the checkpoint
    config = preset_config("cifar10", "smoke", method="pwoa", rate=RATE, admm_epochs=1, retrain_epochs=1)
    subset = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:40]
    pruned = run_config(imported, config, train=train.take(subset), val=val.head(20), progress=False)
    assert isinstance(pruned.model, Normalized)
    assert torch.equal(pruned.model.mean, imported.mean) and torch.equal(pruned.model.std, imported.std)
    _check_pruned(pruned)
    path = save_checkpoint(tmp_path / "pruned.pt", pruned.model, {"model": "resnet18", "dataset": "cifar10"})
    back, back_meta = load_checkpoint(path)
    assert back_meta["normalize"] == imported.normalization()
    assert torch.equal(back(test.x), pruned.model.eval()(test.x))


def test_wrn34_10_round_trips_through_every_public_layout(tmp_path):
    torch.manual_seed(0)
    original = build_model("wrn34_10", "cifar10").eval()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    expected = original(x)
    for fmt, dataparallel in (("trades", False), ("robustbench", True), ("plain", True)):
        public = to_public_layout(original.state_dict(), "wrn34_10", fmt, dataparallel=dataparallel)
        assert ("module.sub_block1.layer.4.conv2.weight" in public or "sub_block1.layer.4.conv2.weight" in public) \
            == (fmt == "trades")
        if fmt == "trades":  # through a file and the command's function
            path = tmp_path / "model_cifar_wrn.pt"
            torch.save(public, path)
            result = import_teacher("wrn34_10", "cifar10", path, fmt="trades", n=0, progress=False,
                                    out=tmp_path / "wrn.pt")
            model = result.model
            assert len(result.report.dropped) == sum(k.startswith("sub_block1.") for k in public)
        else:
            model, _ = load_public_weights(public, build_model("wrn34_10", "cifar10"), fmt)
        assert torch.equal(model(x), expected), fmt
