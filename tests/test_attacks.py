"""pwoa_lab.core.attacks on real models: bounds, argument checks, attack strength order, and `evaluate`.

Models: a plain-CE SmallCNN trained here on digits (no files needed), the shipped robust digits teacher
(skips while it is not trained yet) and a plain-CE LeNet-3 trained here on an MNIST subset (needs
PWOA_DATA_ROOT).
"""
from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
import torch.nn as nn

from pwoa_lab.training.methods import TeacherConfig
from pwoa_lab.experiments.runs import train_teacher
from pwoa_lab.core.attacks import (ATTACK_NAMES, ATTACKS, accuracy, attack_options, autoattack, cw_linf,
                                   cw_margin_loss, default_attack_options, fgsm, get_attack, parse_attacks, pgd_linf,
                                   pgd_step_size, robust_accuracy)
from pwoa_lab.core.evaluation import evaluate
from pwoa_lab.core.data import load_dataset
from pwoa_lab.core.models import HiddenModel

EPS = 0.1  # the radius for the plain models (the digits teacher's own eps is read from its metadata)
# the four attacks with small, explicit options (AutoAttack: the fast version)
ATTACK_CALLS = {
    "fgsm": lambda m, x, y, eps: fgsm(m, x, y, eps=eps),
    "pgd": lambda m, x, y, eps: pgd_linf(m, x, y, eps=eps, steps=10),
    "cw": lambda m, x, y, eps: cw_linf(m, x, y, eps=eps, steps=10),
    "aa": lambda m, x, y, eps: autoattack(m, x, y, eps=eps, version="fast"),
}


def acc(model, x, y) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


# ----------------------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="session")
def plain_digits():
    """An undefended SmallCNN: plain cross-entropy on natural digits (a few seconds of CPU)."""
    config = TeacherConfig(dataset="digits", method="none", epochs=4, batch_size=64, lr=3e-3, val_n=100,
                           val_pgd_steps=1, seed=0)
    model, history, metrics = train_teacher(config, progress=False)
    assert metrics["val_natural"] > 90, history
    return model


@pytest.fixture(scope="session")
def digits_batch(digits_test):
    return digits_test.x[:200], digits_test.y[:200]


class DropoutNet(HiddenModel):
    """A tiny net whose output depends on train/eval mode (dropout, batch norm)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3)
        self.bn = nn.BatchNorm2d(8)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(8 * 14 * 14, 10)

    def forward_features(self, x):
        h = self.drop(torch.relu(self.bn(self.conv(x))))
        return self.fc(h.flatten(1)), [h]


@pytest.fixture
def dropout_net():
    torch.manual_seed(0)
    net = DropoutNet()
    with torch.no_grad():  # non-trivial running statistics
        net.bn.running_mean.uniform_(-0.1, 0.1)
        net.bn.running_var.uniform_(0.5, 1.5)
    return net


# ----------------------------------------------------------------------------------------------- call shape & bounds

def test_registry_and_names():
    assert set(ATTACKS) == {"fgsm", "pgd", "cw", "aa"}
    assert ATTACK_NAMES[0] == "natural" and set(ATTACK_NAMES) == {"natural", *ATTACKS}
    assert get_attack("pgd") is pgd_linf and get_attack("cw") is cw_linf
    assert parse_attacks(" natural, pgd ,aa") == ["natural", "pgd", "aa"]
    with pytest.raises(ValueError) as info:
        parse_attacks("natural,pgd40")
    for name in ("aa", "cw", "fgsm", "natural", "pgd"):
        assert name in str(info.value)
    with pytest.raises(ValueError, match="'deepfool'"):
        get_attack("deepfool")
    # the paper's MNIST and CIFAR threat models: PGD-40 with step 0.01, PGD-10 with step 2/255
    assert attack_options("mnist")["pgd"] == {"steps": 40, "alpha": 0.01}
    assert attack_options("cifar10")["cw"] == {"steps": 10, "alpha": 2 / 255}


def test_one_pgd_step_rule_and_the_evaluation_options():
    assert pgd_step_size(0.3, 40) == 2.5 * 0.3 / 40 and pgd_step_size(0.0, 20) == 0.0
    with pytest.raises(ValueError, match=">= 1"):
        pgd_step_size(0.1, 0)
    # a dataset without a fixed step: 2.5 eps / steps, for the given or the dataset's eps and steps
    assert attack_options("digits") == {"pgd": {"steps": 20, "alpha": pgd_step_size(0.2, 20)},
                                        "cw": {"steps": 20, "alpha": pgd_step_size(0.2, 20)}}
    assert attack_options("digits", 0.1, 5)["pgd"] == {"steps": 5, "alpha": pgd_step_size(0.1, 5)}
    # a dataset with a fixed step keeps it whatever the steps; CW keeps the dataset's strength
    assert attack_options("cifar10", 8 / 255, 20) == {"pgd": {"steps": 20, "alpha": 2 / 255},
                                                      "cw": {"steps": 10, "alpha": 2 / 255}}
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="PGD steps"):
            attack_options("digits", 0.1, bad)
    with pytest.deprecated_call():  # the old name: the same options
        assert default_attack_options("mnist", 0.2) == attack_options("mnist", 0.2)


def test_robust_accuracy_is_pgd_then_accuracy(plain_digits, digits_batch):
    x, y = digits_batch[0][:64], digits_batch[1][:64]
    torch.manual_seed(0)
    expected = 100 * accuracy(plain_digits, pgd_linf(plain_digits, x, y, EPS, alpha=pgd_step_size(EPS, 5), steps=5), y)
    torch.manual_seed(0)
    assert robust_accuracy(plain_digits, x, y, EPS, 5) == expected  # bit for bit: the same random start and steps
    gen = torch.Generator().manual_seed(1)
    with_gen = robust_accuracy(plain_digits, x, y, EPS, 5, alpha=0.01, generator=gen)
    gen = torch.Generator().manual_seed(1)
    assert with_gen == 100 * accuracy(plain_digits, pgd_linf(plain_digits, x, y, EPS, alpha=0.01, steps=5,
                                                             generator=gen), y)
    assert 0 <= robust_accuracy(plain_digits, x, y, 0.0, 3) == 100 * accuracy(plain_digits, x, y) <= 100


@pytest.mark.parametrize("name", list(ATTACKS))
def test_one_call_shape_for_every_attack(name, plain_digits, digits_batch):
    x, y = digits_batch[0][:8], digits_batch[1][:8]
    x_copy = x.clone()
    options = {"aa": {"version": "fast"}}.get(name, {})  # (standard AutoAttack adds FAB-T and Square: slow)
    x_adv = ATTACKS[name](plain_digits, x, y, eps=EPS, **options)  # the documented call shape
    assert isinstance(x_adv, torch.Tensor)
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype and not x_adv.requires_grad
    assert torch.equal(x, x_copy), "the attack changed its input"


@pytest.mark.parametrize("name", list(ATTACK_CALLS))
def test_perturbation_stays_in_the_eps_ball_and_the_image_range(name, plain_digits, digits_batch):
    x, y = digits_batch[0][:32], digits_batch[1][:32]
    assert (x == 0).any() and (x == 1).any()  # the clipping at both ends is exercised
    torch.manual_seed(0)
    x_adv = ATTACK_CALLS[name](plain_digits, x, y, EPS)
    assert (x_adv - x).abs().max() <= EPS + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    # and it is a real attack on this undefended model
    assert (x_adv - x).abs().max() > EPS / 2
    assert acc(plain_digits, x_adv, y) < acc(plain_digits, x, y) - 0.2


def test_fgsm_moves_every_pixel_by_eps_unless_clipped(plain_digits, digits_batch):
    x, y = digits_batch[0][:32], digits_batch[1][:32]
    x_adv = fgsm(plain_digits, x, y, eps=EPS)
    d = x_adv - x
    exact = (d.abs() - EPS).abs() < 1e-6
    clipped = (x_adv == 0) | (x_adv == 1)
    assert (exact | clipped | (d == 0)).all()
    assert exact.float().mean() > 0.5


@pytest.mark.parametrize("name", list(ATTACK_CALLS))
@pytest.mark.parametrize("bad", ["above_one", "below_zero", "normalized", "nan", "uint8"])
def test_images_outside_unit_interval_are_rejected(name, bad, plain_digits, digits_batch):
    x, y = digits_batch[0][:4], digits_batch[1][:4]
    x_bad = {"above_one": x * 1.5, "below_zero": x - 0.2, "normalized": (x - 0.1307) / 0.3081,
             "nan": x.clone().index_put_((torch.tensor([0]),), torch.tensor(float("nan"))),
             "uint8": (x * 255).to(torch.uint8)}[bad]
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ATTACK_CALLS[name](plain_digits, x_bad, y, EPS)


@pytest.mark.parametrize("name", list(ATTACK_CALLS))
@pytest.mark.parametrize("eps", [-0.1, float("nan"), 1.5, float("inf"), "0.1", True, torch.tensor(0.1)])
def test_bad_eps_is_rejected(name, eps, plain_digits, digits_batch):
    x, y = digits_batch[0][:4], digits_batch[1][:4]
    with pytest.raises(ValueError, match="eps"):
        ATTACK_CALLS[name](plain_digits, x, y, eps)


def test_evaluate_rejects_bad_eps_images_and_attack_names(plain_digits, digits_batch):
    x, y = digits_batch[0][:4], digits_batch[1][:4]
    with pytest.raises(ValueError, match="eps must lie in"):
        evaluate(plain_digits, (x, y), ["natural"], eps=-0.01, progress=False)
    with pytest.raises(ValueError, match="eps must be a finite number"):
        evaluate(plain_digits, (x, y), ["natural"], eps=math.nan, progress=False)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        evaluate(plain_digits, (x * 255, y), ["natural"], eps=EPS, progress=False)
    with pytest.raises(ValueError, match="valid: aa, cw, fgsm, natural, pgd"):
        evaluate(plain_digits, (x, y), "natural,apgd", eps=EPS, progress=False)


# ----------------------------------------------------------------------------------------------- modes

@pytest.mark.parametrize("name", list(ATTACK_CALLS))
def test_attacks_run_in_eval_mode_and_restore_the_callers_mode(name, dropout_net, digits_batch):
    x, y = digits_batch[0][:8], digits_batch[1][:8]
    stats = {k: v.clone() for k, v in dropout_net.bn.state_dict().items()}
    dropout_net.eval()
    torch.manual_seed(3)
    ref = ATTACK_CALLS[name](dropout_net, x, y, EPS)
    assert not dropout_net.training
    dropout_net.train()
    torch.manual_seed(3)
    out = ATTACK_CALLS[name](dropout_net, x, y, EPS)
    assert dropout_net.training and all(m.training for m in dropout_net.modules())
    # in train mode dropout would make the gradients random: equal results mean the attack ran in eval mode
    assert torch.equal(out, ref)
    for k, v in dropout_net.bn.state_dict().items():  # batch-norm statistics untouched
        assert torch.equal(v, stats[k]), k


@pytest.mark.parametrize("name", list(ATTACK_CALLS))
def test_attacks_work_inside_no_grad(name, plain_digits, digits_batch):
    """Evaluation code often runs under torch.no_grad(); the attacks need gradients all the same."""
    x, y = digits_batch[0][:8], digits_batch[1][:8]
    torch.manual_seed(0)
    ref = ATTACK_CALLS[name](plain_digits, x, y, EPS)
    torch.manual_seed(0)
    with torch.no_grad():
        out = ATTACK_CALLS[name](plain_digits, x, y, EPS)
    assert torch.equal(out, ref)
    assert not torch.equal(out, x)


def test_mode_is_restored_when_an_attack_fails(dropout_net, digits_batch):
    x = digits_batch[0][:4]
    dropout_net.train()
    with pytest.raises((IndexError, RuntimeError)):
        pgd_linf(dropout_net, x, torch.tensor([0, 1, 2, 99]), eps=EPS)  # label 99 of 10 classes
    assert dropout_net.training


def test_cw_margin_loss_values():
    logits = torch.tensor([[3.0, 1.0, 0.5], [0.0, 2.0, 5.0]])
    y = torch.tensor([0, 1])
    assert torch.equal(cw_margin_loss(logits, y), torch.tensor([1.0 - 3.0, 5.0 - 2.0]))


# ----------------------------------------------------------------------------------------------- evaluate

def test_evaluate_table_and_mode(dropout_net, digits_batch):
    x, y = digits_batch[0][:40], digits_batch[1][:40]
    attacks = ["natural", "fgsm", "pgd", "cw"]
    options = {"pgd": {"steps": 3}, "cw": {"steps": 3}}
    dropout_net.train()
    table = evaluate(dropout_net, (x, y), attacks, eps=EPS, attack_options=options, progress=False)

    assert isinstance(table, pd.DataFrame)
    assert list(table.columns) == ["attack", "eps", "n", "accuracy", "seconds"]
    assert table["attack"].tolist() == attacks
    assert (table["eps"] == EPS).all() and (table["n"] == 40).all()
    assert table["accuracy"].between(0, 100).all() and (table["seconds"] >= 0).all()
    assert dropout_net.training and all(m.training for m in dropout_net.modules())  # mode restored

    # the natural row is the accuracy in eval mode, in percent
    dropout_net.eval()
    assert table.set_index("attack").loc["natural", "accuracy"] == pytest.approx(100 * accuracy(dropout_net, x, y))
    # FGSM is deterministic: the same number again, whatever the batch size
    again = evaluate(dropout_net, (x, y), ["natural", "fgsm"], eps=EPS, batch_size=7, progress=False)
    assert again["accuracy"].tolist() == table["accuracy"].tolist()[:2]


def test_evaluate_restores_the_global_rng(plain_digits, digits_batch):
    x, y = digits_batch[0][:16], digits_batch[1][:16]
    torch.manual_seed(123)
    expected = torch.rand(5)
    torch.manual_seed(123)
    table = evaluate(plain_digits, (x, y), ["natural", "pgd", "aa"], eps=EPS,
                     attack_options={"pgd": {"steps": 3}, "aa": {"version": "fast"}}, progress=False)
    after = torch.rand(5)
    acc_ = table.set_index("attack")["accuracy"]
    assert acc_["pgd"] < acc_["natural"] and acc_["aa"] < acc_["natural"]  # both attacks really ran
    assert torch.equal(after, expected), "evaluate changed torch's global RNG stream"


def test_without_the_restore_the_rng_would_change(plain_digits, digits_batch):
    """The check above can fail: PGD draws its random start from, and AutoAttack reseeds, the global RNG."""
    x, y = digits_batch[0][:8], digits_batch[1][:8]
    torch.manual_seed(123)
    expected = torch.rand(5)
    torch.manual_seed(123)
    pgd_linf(plain_digits, x, y, eps=EPS, steps=1)
    assert not torch.equal(torch.rand(5), expected)
    torch.manual_seed(123)
    autoattack(plain_digits, x, y, eps=EPS, version="fast")
    assert not torch.equal(torch.rand(5), expected)


def test_evaluate_takes_the_first_n_of_a_dataset(plain_digits, digits_test):
    table = evaluate(plain_digits, digits_test, ["natural"], eps=EPS, n=50, progress=False)
    assert table.loc[0, "n"] == 50
    assert table.loc[0, "accuracy"] == pytest.approx(100 * accuracy(plain_digits, digits_test.x[:50],
                                                                     digits_test.y[:50]))


# ----------------------------------------------------------------------------------------------- the teacher

@pytest.fixture(scope="module")
def teacher_strengths(digits_teacher, digits_batch):
    """Accuracy (in images) of the digits teacher under attacks of growing strength, on the same 200 images."""
    model, meta = digits_teacher
    eps = meta["eps"]
    x, y = digits_batch

    def correct(x_adv):
        with torch.no_grad():
            return int((model(x_adv).argmax(1) == y).sum())

    out = {"natural": correct(x), "fgsm": correct(fgsm(model, x, y, eps))}
    for steps in (1, 5, 20):  # default step 2.5 eps / steps; the same random start for each
        torch.manual_seed(0)
        out[f"pgd{steps}"] = correct(pgd_linf(model, x, y, eps, steps=steps))
    torch.manual_seed(0)
    out["pgd20_eval"] = correct(pgd_linf(model, x, y, eps, **attack_options("digits", eps)["pgd"]))
    return out


def test_eps_zero_gives_natural_accuracy_for_every_attack(digits_teacher, digits_batch):
    model, _ = digits_teacher
    x, y = digits_batch[0][:100], digits_batch[1][:100]
    for name, call in ATTACK_CALLS.items():
        assert torch.equal(call(model, x[:16], y[:16], 0.0), x[:16]), name
    table = evaluate(model, (x, y), list(ATTACK_NAMES), eps=0.0, attack_options={"aa": {"version": "fast"}},
                     progress=False)
    natural = table.set_index("attack").loc["natural", "accuracy"]
    assert natural > 80
    assert (table["accuracy"] == natural).all(), table


def test_pgd_is_never_weaker_than_fgsm_and_more_steps_never_help(teacher_strengths):
    # counts of correctly classified images among the same 200; no slack needed
    s = teacher_strengths
    assert s["natural"] > 0.8 * 200
    assert s["fgsm"] < s["natural"]
    # PGD (random start): at least as strong as FGSM once it has a few steps ...
    assert s["pgd5"] <= s["fgsm"] and s["pgd20"] <= s["fgsm"] and s["pgd20_eval"] <= s["fgsm"]
    # ... and more steps never help the model. (Beyond ~20 steps PGD has converged here and 50 steps land
    # within +-1 image of 20, because PGD returns its last iterate, not its best, so 50 is not compared.)
    assert s["pgd20"] <= s["pgd5"] <= s["pgd1"]
    assert s["pgd20"] < s["pgd1"]  # the ordering is not a flat line


def test_autoattack_fast_is_never_weaker_than_pgd(digits_teacher, digits_batch):
    model, meta = digits_teacher
    eps = meta["eps"]
    x, y = digits_batch[0][:100], digits_batch[1][:100]
    torch.manual_seed(0)
    x_pgd = pgd_linf(model, x, y, eps, **attack_options("digits", eps)["pgd"])
    x_aa = autoattack(model, x, y, eps, version="fast")
    assert (x_aa - x).abs().max() <= eps + 1e-6 and x_aa.min() >= 0 and x_aa.max() <= 1
    with torch.no_grad():
        aa_correct = int((model(x_aa).argmax(1) == y).sum())
        pgd_correct = int((model(x_pgd).argmax(1) == y).sum())
        natural = int((model(x).argmax(1) == y).sum())
    assert aa_correct <= pgd_correct < natural
    assert aa_correct > 0  # a robust model keeps some accuracy (AA is not an arbitrary image replacement)


def test_undefended_smallcnn_is_far_less_robust_than_the_teacher(digits_teacher, plain_digits, digits_batch,
                                                                 teacher_strengths):
    eps = digits_teacher[1]["eps"]
    x, y = digits_batch
    assert acc(plain_digits, x, y) > 0.9  # a good classifier on natural digits ...
    torch.manual_seed(0)
    plain_pgd = acc(plain_digits, pgd_linf(plain_digits, x, y, eps, **attack_options("digits", eps)["pgd"]),
                    y)
    teacher_pgd = teacher_strengths["pgd20_eval"] / 200
    assert plain_pgd < teacher_pgd - 0.25, (plain_pgd, teacher_pgd)  # ... but not a robust one


# ----------------------------------------------------------------------------------------------- MNIST

@pytest.fixture(scope="session")
def plain_lenet3(mnist_root):
    """LeNet-3 trained for one epoch with plain cross-entropy on 3,000 MNIST images (undefended)."""
    config = TeacherConfig(dataset="mnist", method="none", epochs=1, n_per_class=300, batch_size=64, val_n=200,
                           val_pgd_steps=1, seed=0)
    model, _, _ = train_teacher(config, root=str(mnist_root), progress=False)
    return model


def test_undefended_lenet3_collapses_under_pgd40(plain_lenet3, mnist_root):
    test = load_dataset("mnist", "test", mnist_root).head(200)
    natural = acc(plain_lenet3, test.x, test.y)
    torch.manual_seed(0)
    x_adv = pgd_linf(plain_lenet3, test.x, test.y, eps=0.3, alpha=0.01, steps=40, random_start=True)
    assert (x_adv - test.x).abs().max() <= 0.3 + 1e-6
    robust = acc(plain_lenet3, x_adv, test.y)
    assert natural > 0.9, natural
    assert robust < 0.05, robust


def test_images_on_another_device_than_the_model_get_a_clear_error(digits_batch):
    from pwoa_lab.core.models import build_model
    model = build_model(None, "digits").to("meta")  # any device but the images' (a GPU machine: cuda vs cpu)
    x, y = digits_batch[0][:4], digits_batch[1][:4]
    for name, attack in ATTACKS.items():
        with pytest.raises(ValueError, match=r"images are on cpu but the model is on meta.*x\.to\(device\)"):
            attack(model, x, y, eps=EPS)


def test_the_default_device_is_pwoa_device_when_set(monkeypatch):
    from pwoa_lab.utils import get_device
    monkeypatch.setenv("PWOA_DEVICE", "meta")
    assert get_device(None) == get_device("auto") == torch.device("meta")
    assert get_device("cpu") == torch.device("cpu")  # a device asked for by name wins
    monkeypatch.setenv("PWOA_DEVICE", "gpu")
    with pytest.raises(ValueError, match="PWOA_DEVICE is 'gpu', which is not a device: use cpu, cuda"):
        get_device(None)
    with pytest.raises(ValueError, match="the device asked for is 'tpu'"):
        get_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device here: use cpu"):
            get_device("cuda")
    monkeypatch.delenv("PWOA_DEVICE")
    assert get_device(None).type in ("cuda", "mps", "cpu")
