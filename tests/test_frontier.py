"""The frontier over the fine-tuning budget: Pareto fronts, verdicts from paired intervals, budgets tuned on
validation, and the CLI end to end on digits (smoke preset)."""
import pandas as pd
import pytest

from pwoa_lab.cli import main
from pwoa_lab.core.intervals import Interval
from pwoa_lab.experiments.frontier import (budget_grid, cached_frontier, compare_fronts, parse_budgets, pareto_flags,
                                           tune_budgets, validation_table)
from pwoa_lab.training.presets import preset_config


def front(points, tag):
    return pd.DataFrame([{"natural": n, "robust": r, "point": f"{tag}{i}"} for i, (n, r) in enumerate(points)])


def differences_of(points: dict, half_width: float):
    """Paired intervals of q - p on both axes, each the difference of the points' numbers +- half_width."""
    def differences(q, p):
        (nq, rq), (np_, rp) = points[q], points[p]
        return (Interval(nq - np_, nq - np_ - half_width, nq - np_ + half_width),
                Interval(rq - rp, rq - rp - half_width, rq - rp + half_width))
    return differences


def compare(a_pts, b_pts, half_width, names=("pwoa", "naive")):
    a, b = front(a_pts, "a"), front(b_pts, "b")
    points = {**dict(zip(a.point, a_pts)), **dict(zip(b.point, b_pts))}
    return compare_fronts(a, b, *names, differences_of(points, half_width))


def test_pareto_flags_keep_the_points_no_other_matches_and_beats():
    natural = [90, 92, 94, 91, 94]
    robust = [40, 30, 10, 29, 10]
    # (91, 29) is beaten by (92, 30); (90, 40), (92, 30) and both identical (94, 10) are on the front
    assert pareto_flags(natural, robust) == [True, True, True, False, True]
    assert pareto_flags([50], [50]) == [True]
    # a tie on one axis with a point better on the other is not on the front: (93, 28) beside (93, 38)
    assert pareto_flags([93, 93, 80], [28, 38, 50]) == [False, True, True]


def test_a_front_that_is_better_everywhere_dominates():
    v = compare([(90, 40), (94, 30)], [(89, 20), (93, 10)], 1.0)
    assert v.verdict == "pwoa dominates"
    assert compare([(89, 20), (93, 10)], [(90, 40), (94, 30)], 1.0, ("naive", "pwoa")).verdict == "pwoa dominates"


def test_fronts_that_cross_say_where():
    v = compare([(90, 40), (92, 35)], [(95, 20), (96, 10)], 1.0)
    assert v.verdict == "cross"
    # each side names the points the other front cannot match, with both accuracies
    assert "naive's front matches pwoa's points (natural 90.0%, robust 40.0%), (natural 92.0%, robust 35.0%)" \
        in v.text
    assert "pwoa's matches naive's points (natural 95.0%, robust 20.0%), (natural 96.0%, robust 10.0%)" in v.text


def test_fronts_inside_each_others_intervals_are_inconclusive():
    assert compare([(90, 40), (94, 30)], [(91, 39), (93, 31)], 3.0).verdict == "inconclusive"
    # the same fronts measured more sharply: each has a point the other cannot match
    assert compare([(90, 40), (94, 30)], [(91, 39), (93, 31)], 0.5).verdict == "cross"
    # no per-image outcomes: nothing is shown, nothing is claimed
    assert compare_fronts(front([(90, 40)], "a"), front([(10, 5)], "b")).verdict == "inconclusive"


def test_budget_factors_scale_the_presets_rates_and_epochs():
    base = preset_config("digits", "quick", method="pwoa").resolved()
    c = preset_config("digits", "quick", method="pwoa", lr_factor=0.1, epoch_factor=1 / 3).resolved()
    assert c.lr_admm == pytest.approx(base.lr_admm / 10) and c.lr_retrain == pytest.approx(base.lr_retrain / 10)
    assert (c.admm_epochs, c.retrain_epochs) == (round(base.admm_epochs / 3), round(base.retrain_epochs / 3))
    # the same budget written out is the same run (one cache key)
    same = preset_config("digits", "quick", method="pwoa", lr_admm=c.lr_admm, lr_retrain=c.lr_retrain,
                         admm_epochs=c.admm_epochs, retrain_epochs=c.retrain_epochs).resolved()
    assert same.to_dict() == c.to_dict()
    hydra = preset_config("digits", "quick", method="hydra", lr_factor=3).resolved()
    assert hydra.lr_finetune == pytest.approx(3 * preset_config("digits", "quick", method="hydra").lr_finetune)


@pytest.mark.parametrize("bad", [0, -1, float("nan"), "x"])
def test_bad_budget_factors_are_refused(bad):
    with pytest.raises(ValueError, match="must be"):
        preset_config("digits", "smoke", method="naive", lr_factor=bad).resolved()
    with pytest.raises(ValueError):
        budget_grid([1.0, bad])


def test_budgets_parse_fractions_and_refuse_nonsense():
    assert parse_budgets(["lr=0.1,1/3,1", "epochs=1/3,3"]) == ([0.1, 1 / 3, 1.0], [1 / 3, 3.0])
    assert parse_budgets(["lr=2"]) == ([2.0], [1.0])
    for bad in (["lr=0,1"], ["lr=-1"], ["steps=1"], ["lr=a"], ["lr=1,1"]):
        with pytest.raises(ValueError):
            parse_budgets(bad)


def _validation(rows):
    return pd.DataFrame([dict(zip(["method", "rate", "lr_factor", "epoch_factor", "seed", "val_natural", "val_pgd"],
                                  r)) for r in rows])


def test_tuning_takes_the_most_robust_budget_within_one_point_of_the_best_natural_accuracy():
    val = _validation([("naive", 8.0, 0.1, 1.0, 0, 95.5, 60.0), ("naive", 8.0, 0.1, 1.0, 1, 95.1, 62.0),
                       ("naive", 8.0, 1.0, 1.0, 0, 96.2, 20.0), ("naive", 8.0, 1.0, 1.0, 1, 96.0, 22.0),
                       ("naive", 8.0, 3.0, 1.0, 0, 90.0, 80.0), ("naive", 8.0, 3.0, 1.0, 1, 90.0, 80.0)])
    chosen = tune_budgets(val)
    # best natural 96.1 (lr x1); lr x0.1 is at 95.3 (within 1 point) and more robust; lr x3 is too inaccurate
    assert chosen.lr_factor.tolist() == [0.1] and chosen.val_pgd.tolist() == [61.0]
    assert tune_budgets(val, tolerance=0.5).lr_factor.tolist() == [1.0]


def test_tuning_reads_no_test_number():
    """Selection sees only the validation columns: scrambling every test-split column changes nothing, and the
    validation table built from a sweep's runs and histories carries no test column."""
    keys = ["method", "rate", "lr_factor", "epoch_factor", "seed"]
    runs = pd.DataFrame([{"method": "pwoa", "rate": 4.0, "lr_factor": lr, "epoch_factor": 1.0, "seed": s,
                          "selected_epoch": 2, "natural": 90.0 + lr, "pgd": 10 * lr, "aa": 5 * lr}
                         for lr in (0.1, 1.0) for s in (0, 1)])
    curves = pd.DataFrame([{**{k: r[k] for k in keys}, "epoch": e, "val_natural": 90.0 - e - 3 * r["lr_factor"],
                            "val_pgd": 50.0 - 10 * r["lr_factor"] + e, "pgd": 99.0}
                           for r in runs.to_dict("records") for e in (1, 2)])
    val = validation_table(runs, curves)
    assert list(val.columns) == keys + ["val_natural", "val_pgd"]
    chosen = tune_budgets(val)
    scrambled = runs.assign(natural=runs.natural[::-1].values, pgd=-runs.pgd, aa=0.0)
    assert tune_budgets(validation_table(scrambled, curves)).equals(chosen)
    assert chosen.lr_factor.tolist() == [0.1]  # val: lr x0.1 is both more accurate and more robust


@pytest.mark.slow
def test_frontier_and_tuned_figure1_from_the_cli(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PWOA_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "out"
    args = ["--dataset", "digits", "--preset", "smoke", "--rates", "4", "--budgets", "lr=0.1,1", "--seeds", "0",
            "--scope", "hidden", "--workers", "1", "--out", str(out)]
    assert main(["frontier", *args]) == 0
    text = capsys.readouterr().out
    assert "PwoA's front against naive's, per rate" in text
    assert "- [smoke check (a few batches), not a result] 4x: " in text
    points = pd.read_csv(out / "frontier_digits_smoke.csv")
    assert set(points.kind) == {"teacher", "method", "control"}
    assert len(points[points.kind == "method"]) >= 4 and points.on_front.any()
    assert (out / "frontier_digits_smoke.png").stat().st_size > 0
    if len(points[points.kind == "method"]) > 4:  # the grid was extended past an edge: the output says where
        assert "The grid extended where a best validation point lay on its edge" in text
    # what the explorer shows: the same points read back from the cache, nothing trained
    factors = sorted(points.lr_factor.dropna().unique())
    cached = cached_frontier("digits", [4], ["naive", "pwoa"], [0], preset="smoke", lr_factors=factors,
                             scope="hidden")
    order = ["method", "lr_factor"]
    body = points[points.kind != "teacher"].sort_values(order).reset_index(drop=True)
    cached = cached.sort_values(order).reset_index(drop=True)
    assert len(cached) == len(body)
    assert cached.natural.tolist() == pytest.approx(body.natural.tolist())
    assert cached.robust.tolist() == pytest.approx(body.robust.tolist())
    # the tuned Figure 1 reads the same runs from the cache and says which budget each method got
    assert main(["figure1", *[a for a in args if a != "--budgets" and a != "lr=0.1,1"], "--methods",
                 "oneshot,naive,pwoa", "--tune", "budget", "--budgets", "lr=0.1,1"]) == 0
    text = capsys.readouterr().out
    assert "budgets chosen on validation" in text
    table = pd.read_csv(out / "figure1_digits_smoke_tuned.csv")
    assert set(table.method) == {"teacher", "oneshot", "naive", "pwoa"}
    assert table.loc[table.method == "naive", "budget"].iloc[0].startswith("lr x")
    assert table.cached.all()


def test_bad_budgets_and_methods_fail_before_any_run(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PWOA_CACHE_DIR", str(tmp_path / "cache"))
    assert main(["frontier", "--preset", "smoke", "--budgets", "lr=0,1", "--out", str(tmp_path)]) != 0
    assert main(["frontier", "--preset", "smoke", "--methods", "naive,nope", "--out", str(tmp_path)]) != 0
    err = capsys.readouterr().err
    assert "lr_factor must be a number > 0" in err and "unknown method 'nope'" in err
    assert not (tmp_path / "cache").exists()
