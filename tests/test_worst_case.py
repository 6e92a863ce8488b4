"""worst_case_robust: AutoAttack only where PGD did not break, and the per-point worst case.

Real computations: the shipped robust digits teacher (skips while it is not trained) on the first 60 test
digits at its own eps with the dataset's PGD settings and AutoAttack "fast", and an undefended SmallCNN
trained here with plain cross-entropy (a few seconds).
"""
from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from pwoa_lab.core.attacks import EVAL_NAMES, accuracy, attack_options, parse_attacks
from pwoa_lab.core.evaluation import WorstCase, evaluate, worst_case_robust
from pwoa_lab.core.data import load_dataset
from pwoa_lab.core.models import build_model

N = 60
AA = {"version": "fast"}


@pytest.fixture(scope="module")
def batch(digits_test):
    return digits_test.x[:N], digits_test.y[:N]


@pytest.fixture(scope="module")
def teacher_case(digits_teacher, batch):
    """(model, eps, PGD options, WorstCase) of the digits teacher on the first N test digits."""
    model, meta = digits_teacher
    eps = meta["eps"]
    pgd = attack_options("digits", eps)["pgd"]
    torch.manual_seed(0)
    return model, eps, pgd, worst_case_robust(model, *batch, eps, pgd, AA)


@pytest.fixture(scope="module")
def plain_cnn():
    """An undefended SmallCNN: 3 epochs of plain cross-entropy (Adam) on the digits training split."""
    torch.manual_seed(0)
    model = build_model("small_cnn", "digits")
    train = load_dataset("digits", "train")
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(3):
        for idx in torch.randperm(len(train.y)).split(64):
            loss = F.cross_entropy(model(train.x[idx]), train.y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


def check_consistent(wc: WorstCase) -> None:
    """The invariants that hold for any model: the per-point definitions and the accuracies."""
    assert all(m.dtype == torch.bool and m.shape == (wc.n,) for m in (wc.natural, wc.pgd, wc.aa_run, wc.aa))
    assert torch.equal(wc.aa_run, wc.natural & wc.pgd)             # AA ran exactly where PGD did not break
    assert not (wc.aa & ~wc.aa_run).any()                             # aa is False wherever AA did not run
    assert torch.equal(wc.worst, wc.pgd & wc.aa)
    assert not (wc.worst & ~wc.pgd).any() and not (wc.worst & ~wc.aa).any()  # per point: worst <= pgd, aa
    assert not (wc.worst & ~wc.natural).any()
    assert wc.aa_points == int((wc.natural & wc.pgd).sum())
    assert wc.worst_accuracy == pytest.approx(100 * wc.worst.float().mean().item())
    assert wc.pgd_accuracy == pytest.approx(100 * wc.pgd.float().mean().item())
    assert wc.worst_accuracy <= wc.pgd_accuracy and wc.worst_accuracy <= wc.natural_accuracy


# ----------------------------------------------------------------------------------------------- teacher


def test_teacher_worst_case_is_consistent_and_aa_adds_strength(teacher_case, batch):
    model, eps, pgd, wc = teacher_case
    x, y = batch
    check_consistent(wc)
    assert wc.n == N and wc.eps == eps
    assert wc.natural_accuracy == pytest.approx(100 * accuracy(model, x, y))
    assert wc.natural_accuracy > 80                   # a good classifier ...
    assert 0 < wc.aa_points < int(wc.natural.sum())   # ... PGD breaks some points, AA ran on the rest only
    assert 0 < wc.worst_accuracy < wc.pgd_accuracy    # AA breaks points PGD missed, but not all of them
    assert set(wc.seconds) == {"natural", "pgd", "aa"} and wc.seconds["aa"] > 0


def test_teacher_evaluate_worst_row_matches_and_is_below_pgd_and_aa_on_everything(teacher_case, batch):
    model, eps, pgd, wc = teacher_case
    torch.manual_seed(0)  # the same RNG state as the fixture: the same PGD run
    table = evaluate(model, batch, ["natural", "pgd", "aa", "worst"], eps=eps,
                     attack_options={"pgd": pgd, "aa": AA}, progress=False).set_index("attack")
    acc = table["accuracy"]
    assert acc["natural"] == pytest.approx(wc.natural_accuracy)
    assert acc["pgd"] == pytest.approx(wc.pgd_accuracy)
    assert acc["worst"] == pytest.approx(wc.worst_accuracy)
    assert table.loc["worst", "aa_points"] == wc.aa_points and math.isnan(table.loc["pgd", "aa_points"])
    # the worst case is never above PGD's accuracy nor above AutoAttack run on every point
    assert acc["worst"] <= acc["pgd"] and acc["worst"] <= acc["aa"]
    # without "worst", evaluate's PGD from the same RNG state gives the same number (the reuse changes nothing)
    torch.manual_seed(0)
    alone = evaluate(model, batch, ["pgd"], eps=eps, attack_options={"pgd": pgd}, progress=False)
    assert alone.loc[0, "accuracy"] == pytest.approx(wc.pgd_accuracy)
    assert list(alone.columns) == ["attack", "eps", "n", "accuracy", "seconds"]


def test_eps_zero_worst_case_is_natural_accuracy(digits_teacher, batch):
    model, _ = digits_teacher
    wc = worst_case_robust(model, *batch, 0.0, {"steps": 2}, AA)
    check_consistent(wc)
    assert torch.equal(wc.pgd, wc.natural) and torch.equal(wc.worst, wc.natural)
    assert wc.aa_points == int(wc.natural.sum())


def test_restores_mode_and_global_rng(digits_teacher, batch):
    model, meta = digits_teacher
    x, y = batch[0][:16], batch[1][:16]
    torch.manual_seed(123)
    expected = torch.rand(5)
    torch.manual_seed(123)
    model.train()
    try:
        wc = worst_case_robust(model, x, y, meta["eps"], {"steps": 3}, AA)
        assert model.training, "the caller's train mode was not restored"
    finally:
        model.eval()
    assert wc.aa_points > 0  # AutoAttack (which reseeds the global RNG) really ran
    assert torch.equal(torch.rand(5), expected), "worst_case_robust changed torch's global RNG stream"


# ----------------------------------------------------------------------------------------------- undefended


def test_undefended_model_pgd_breaks_nearly_everything_so_aa_runs_on_few(plain_cnn, batch, digits_teacher):
    x, y = batch
    eps = digits_teacher[1]["eps"]
    torch.manual_seed(0)
    wc = worst_case_robust(plain_cnn, x, y, eps, attack_options("digits", eps)["pgd"], AA)
    check_consistent(wc)
    assert wc.natural_accuracy > 85                      # accurate on clean digits ...
    assert wc.pgd_accuracy <= 5                          # ... but PGD breaks nearly every point
    assert wc.aa_points <= 0.05 * N and wc.aa_points == int(wc.pgd.sum())
    assert wc.worst_accuracy <= 5


def test_frame_and_summary(teacher_case):
    wc = teacher_case[3]
    frame = wc.to_frame()
    assert isinstance(frame, pd.DataFrame) and list(frame.columns) == ["natural", "pgd", "aa_run", "aa", "worst"]
    assert len(frame) == N and frame["worst"].tolist() == (wc.pgd & wc.aa).tolist()
    assert frame["aa_run"].sum() == wc.aa_points and frame["worst"].mean() * 100 == pytest.approx(wc.worst_accuracy)
    summary = wc.summary()
    assert summary["n"] == N and summary["aa_points"] == wc.aa_points and summary["natural"] == wc.natural_accuracy
    assert summary["worst"] == wc.worst_accuracy and summary["pgd"] == wc.pgd_accuracy


# ----------------------------------------------------------------------------------------------- arguments


def test_worst_is_an_evaluation_name():
    assert "worst" in EVAL_NAMES and parse_attacks("natural, pgd, worst") == ["natural", "pgd", "worst"]
    with pytest.raises(ValueError, match="worst"):
        parse_attacks("natural,worse")


@pytest.mark.parametrize("change, match", [
    (lambda x, y: (x[0], y), r"\[N, C, H, W\]"),
    (lambda x, y: (x, y.float()), "integer labels"),
    (lambda x, y: (x, y[:, None]), "integer labels"),
    (lambda x, y: (x, y[:-1]), "8 images but y has 7"),
    (lambda x, y: (x[:0], y[:0]), "no images"),
    (lambda x, y: (x * 2, y), r"\[0, 1\]"),
    (lambda x, y: (x, torch.full_like(y, 10)), r"labels must lie in \[0, 10\)"),
])
def test_bad_images_and_labels_raise(plain_cnn, batch, change, match):
    x, y = change(batch[0][:8], batch[1][:8])
    with pytest.raises(ValueError, match=match):
        worst_case_robust(plain_cnn, x, y, 0.1, {"steps": 1}, AA)


@pytest.mark.parametrize("kwargs, match", [
    ({"eps": 2.0}, "eps must lie in"),
    ({"pgd_options": {"eps": 0.1}}, "pgd_options must not set eps"),
    ({"aa_options": {"batch_size": 4}}, "aa_options must not set batch_size"),
    ({"aa_options": "fast"}, "aa_options must be a dict"),
    ({"batch_size": 0}, "batch_size must be an int >= 1"),
])
def test_bad_settings_raise(plain_cnn, batch, kwargs, match):
    args = {"eps": 0.1, "pgd_options": {"steps": 1}, "aa_options": AA, **kwargs}
    with pytest.raises(ValueError, match=match):
        worst_case_robust(plain_cnn, batch[0][:8], batch[1][:8], **args)


# ----------------------------------------------------------------------------------------------- one PGD run


def test_known_masks_skip_natural_and_pgd_and_give_the_same_worst_case(teacher_case, batch):
    model, eps, pgd, wc = teacher_case
    again = worst_case_robust(model, *batch, eps, pgd, AA, known=(wc.natural, wc.pgd))
    assert torch.equal(again.aa_run, wc.aa_run) and torch.equal(again.worst, wc.worst)
    assert again.seconds["natural"] == again.seconds["pgd"] == 0.0
    with pytest.raises(ValueError, match="one entry per point"):
        worst_case_robust(model, *batch, eps, pgd, AA, known=(wc.natural[:5], wc.pgd[:5]))


def test_evaluate_row_gives_the_numbers_of_two_separate_evaluations(digits_teacher):
    """evaluate_row runs PGD once on the first n test images and AutoAttack on the survivors among the first aa_n;
    the numbers equal those of the former two `evaluate` calls (natural / FGSM / PGD on n, then "worst" on aa_n,
    PGD again from the same RNG state)."""
    from pwoa_lab.core.evaluation import EVAL_SEED, EvalSettings, evaluate_row
    model, meta = digits_teacher
    eps, settings = meta["eps"], EvalSettings(n=90, aa_n=40)
    test = load_dataset("digits", "test")
    options = attack_options("digits", eps)
    torch.manual_seed(EVAL_SEED)
    table = evaluate(model, test, ["natural", "fgsm", "pgd"], eps=eps, n=settings.n, attack_options=options,
                     progress=False)
    torch.manual_seed(EVAL_SEED)
    worst = evaluate(model, test, ["worst"], eps=eps, n=settings.aa_n, attack_options={**options, "aa": AA},
                     progress=False)
    expected = {**{r.attack: r.accuracy for r in table.itertuples()}, "aa": float(worst.accuracy.iloc[0]),
                "aa_points": int(worst.aa_points.iloc[0])}
    row = evaluate_row(model, "digits", eps, settings)
    assert {k: row[k] for k in expected} == expected
    assert list(row)[:5] == ["natural", "fgsm", "pgd", "aa", "aa_points"]
